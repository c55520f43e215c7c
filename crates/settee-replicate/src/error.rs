//! The replicator's error: which peer failed and how, and whether retrying may help.

use settee_wire::ErrorKind;

/// What stopped a replication (or one attempt of it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local store failed.
    #[error("local store {path}")]
    Store {
        /// The store's path.
        path: String,
        /// The store's error.
        #[source]
        source: settee_store::Error,
    },
    /// A remote peer failed. The client's error names what failed (the request's method
    /// and redacted URL, or the host it could not connect to), so it is shown as it is.
    #[error(transparent)]
    Couch(settee_couch::Error),
    /// A peer's database does not exist and the replication was not asked to create it.
    #[error("not_found: database {peer} does not exist; pass create_target (--create-target) to create it")]
    NoDatabase {
        /// The peer, described without credentials.
        peer: String,
    },
    /// The options cannot work together, or a filter cannot run on this source.
    #[error("bad_request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint could not be read or written.
    #[error("checkpoint_failure: {reason} on {peer}")]
    Checkpoint {
        /// The peer, described without credentials.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint document is not the one this replication last wrote or read: it is gone,
    /// or someone else wrote it. The database was deleted and recreated during the run, or
    /// another replication with the same id runs at the same time; what the session has done
    /// may not be there any more, so it restarts from the checkpoints both peers still share.
    #[error(
        "checkpoint_lost: {reason} on {peer}; restarting from the checkpoints both peers share"
    )]
    CheckpointLost {
        /// The peer, described without credentials.
        peer: String,
        /// What was found instead.
        reason: String,
    },
    /// The source's answer to a fetch is larger than the replication lets one fetch hold
    /// (its share of `max_bytes_in_flight`, or the client's largest response).
    #[error("response_too_large: a fetch from {peer} answered more than {limit} bytes")]
    FetchTooLarge {
        /// The peer, described without credentials.
        peer: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A remote target's `_bulk_docs` answer said nothing against revisions it then did
    /// not have (a result lost on the way: a refusal nobody heard). The batch is retried:
    /// writing again is a no-op for what was stored, and the target answers again for the
    /// rest.
    #[error("unconfirmed_write: {peer} does not have {count} revision(s) its _bulk_docs answer did not refuse (first: {first}); writing them again")]
    Unconfirmed {
        /// The peer, described without credentials.
        peer: String,
        /// How many revisions.
        count: usize,
        /// The first one: its document id and revision.
        first: String,
    },
    /// A background task failed to run to completion.
    #[error("internal task failed: {0}")]
    Task(String),
    /// An attachment's bytes stopped before their end while streamed from the source (its
    /// connection was cut); retried like the network's failures.
    #[error("attachment_interrupted: {what}")]
    AttachmentInterrupted {
        /// Which attachment of which document.
        what: String,
        /// The stream's failure.
        #[source]
        source: std::io::Error,
    },
    /// The replication was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The run's deadline ([`crate::ReplicateOptions::deadline`]) passed before it could
    /// start (the peers did not answer in time); nothing was replicated. A deadline reached
    /// after the start is not an error: the summary says so.
    #[error("deadline: the replication could not start within its deadline of {after:?}; nothing was replicated")]
    Deadline {
        /// The deadline.
        after: std::time::Duration,
    },
    /// A one-shot replication failed this many times in a row on transient errors (the
    /// retry policy's `attempts()`); the source is the last one.
    #[error("gave up after {attempts} attempts")]
    GaveUp {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// CouchDB-style name of the error ([`Error::GaveUp`] has its last failure's name; a
    /// server's error the name the server sent, see [`settee_couch::Error::name`]).
    pub fn name(&self) -> &str {
        match self {
            Error::Store { source, .. } => source.name(),
            Error::Couch(source) => source.name(),
            Error::NoDatabase { .. } => "not_found",
            Error::BadRequest { .. } => "bad_request",
            Error::Checkpoint { .. } => "checkpoint_failure",
            Error::CheckpointLost { .. } => "checkpoint_lost",
            Error::FetchTooLarge { .. } => "response_too_large",
            Error::Unconfirmed { .. } => "unconfirmed_write",
            Error::Task(_) => "internal_error",
            Error::AttachmentInterrupted { .. } => "attachment_interrupted",
            Error::Cancelled => "cancelled",
            Error::Deadline { .. } => "deadline",
            Error::GaveUp { source, .. } => source.name(),
        }
    }

    /// What kind of failure this is ([`ErrorKind`]): a peer's error keeps its own kind
    /// ([`Error::GaveUp`] its last failure's).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store { source, .. } => source.kind(),
            Error::Couch(source) => source.kind(),
            Error::NoDatabase { .. } => ErrorKind::NotFound,
            Error::BadRequest { .. } => ErrorKind::BadRequest,
            // Only a checkpoint that cannot be serialized is this error: a bug of ours.
            Error::Checkpoint { .. } | Error::Task(_) => ErrorKind::Internal,
            // Someone else wrote (or deleted) the checkpoint: a write conflict with them.
            Error::CheckpointLost { .. } => ErrorKind::Conflict,
            Error::FetchTooLarge { .. } => ErrorKind::TooLarge,
            // The target's answer said the revisions were written, and they were not.
            Error::Unconfirmed { .. } => ErrorKind::InvalidResponse,
            Error::Cancelled => ErrorKind::Cancelled,
            // The peers did not answer before the deadline.
            Error::Deadline { .. } | Error::AttachmentInterrupted { .. } => ErrorKind::Offline,
            Error::GaveUp { source, .. } => source.kind(),
        }
    }

    /// Whether retrying later may succeed: the network or the server failed, or the source
    /// changed under us. Authentication, missing databases and bad options are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Couch(source) => crate::peer_couch::is_transient(source),
            Error::Checkpoint { .. }
            | Error::CheckpointLost { .. }
            | Error::Deadline { .. }
            | Error::AttachmentInterrupted { .. }
            | Error::Unconfirmed { .. } => true,
            Error::GaveUp { source, .. } => source.is_transient(),
            Error::FetchTooLarge { .. }
            | Error::Store { .. }
            | Error::NoDatabase { .. }
            | Error::BadRequest { .. }
            | Error::Task(_)
            | Error::Cancelled => false,
        }
    }
}

/// Result with the replicator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Error>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> String {
        "http://127.0.0.1:5984/db".into()
    }

    #[test]
    fn a_peers_error_keeps_its_kind_and_name_and_giving_up_keeps_the_last() {
        let store = Error::Store {
            path: "/tmp/s".into(),
            source: settee_store::Error::Conflict { id: "a".into() },
        };
        assert_eq!(
            (store.kind(), store.name()),
            (ErrorKind::Conflict, "conflict")
        );
        let couch = Error::Couch(settee_couch::Error::InvalidArgument { reason: "x".into() });
        let gave_up = Error::GaveUp {
            attempts: 5,
            source: Box::new(couch),
        };
        assert_eq!(
            (gave_up.kind(), gave_up.name()),
            (ErrorKind::BadRequest, "invalid_argument")
        );
    }

    #[test]
    fn the_replicators_own_errors_have_their_kinds() {
        let cases = [
            (Error::NoDatabase { peer: peer() }, ErrorKind::NotFound),
            (
                Error::BadRequest { reason: "x".into() },
                ErrorKind::BadRequest,
            ),
            (
                Error::Checkpoint {
                    peer: peer(),
                    reason: "x".into(),
                },
                ErrorKind::Internal,
            ),
            (
                Error::CheckpointLost {
                    peer: peer(),
                    reason: "x".into(),
                },
                ErrorKind::Conflict,
            ),
            (
                Error::FetchTooLarge {
                    peer: peer(),
                    limit: 1,
                },
                ErrorKind::TooLarge,
            ),
            (
                Error::Unconfirmed {
                    peer: peer(),
                    count: 1,
                    first: "a 1-x".into(),
                },
                ErrorKind::InvalidResponse,
            ),
            (Error::Task("panicked".into()), ErrorKind::Internal),
            (Error::Cancelled, ErrorKind::Cancelled),
            (
                Error::Deadline {
                    after: std::time::Duration::from_secs(1),
                },
                ErrorKind::Offline,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }
}
