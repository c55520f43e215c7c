//! What a running replication tells its caller: events and the final summary.

use serde::Serialize;
use settee_revtree::Seq;

use crate::peer::DocFailure;

/// Which way a replication runs, for events of a sync (push and pull together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local to remote (or source to target in a plain replication).
    Push,
    /// Remote to local.
    Pull,
}

/// Counters of a replication so far, shaped like CouchDB's replication history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Changes rows read from the source.
    pub changes_read: u64,
    /// Revisions checked with `_revs_diff`.
    pub missing_checked: u64,
    /// Revisions the target lacked.
    pub missing_found: u64,
    /// Revisions read from the source.
    pub docs_read: u64,
    /// Revisions written to the target.
    pub docs_written: u64,
    /// Revisions the target rejected.
    pub doc_write_failures: u64,
}

/// An event of a running replication.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Started, or resumed after being paused.
    Active {
        /// Which way.
        direction: Direction,
    },
    /// A batch was written.
    Change {
        /// Which way.
        direction: Direction,
        /// Counters so far.
        #[serde(flatten)]
        stats: Stats,
        /// Source sequence up to which everything is on the target.
        last_seq: Seq,
        /// Changes not yet replicated (known exactly for a local source; the server's
        /// estimate for a remote one).
        pending: Option<u64>,
        /// Documents rejected in this batch.
        failures: Vec<DocFailure>,
        /// The ids of the documents this batch wrote to the target, in id order (as
        /// PouchDB's `change` event lists its documents). Documents the target already had
        /// are not in it, nor are rejected ones (see `failures`).
        ids: Vec<String>,
    },
    /// Caught up (live mode), or waiting before a retry.
    Paused {
        /// Which way.
        direction: Direction,
        /// Changes not yet replicated, if known.
        pending: Option<u64>,
    },
    /// Something failed.
    Error {
        /// Which way.
        direction: Direction,
        /// The error, one line, no credentials.
        message: String,
        /// CouchDB-style error name.
        name: String,
        /// Whether the replication will retry (after the given delay).
        retrying: bool,
        /// The delay before the retry, in milliseconds.
        retry_in_ms: Option<u64>,
    },
    /// The wait before a retry is over and the failed step runs again; `reason` says what
    /// ended the wait (after an `Error` with `retrying: true`).
    Retrying {
        /// Which way.
        direction: Direction,
        /// What ended the wait.
        reason: RetryReason,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Which way.
        direction: Direction,
        /// The recorded source sequence.
        seq: Seq,
    },
    /// Finished (one-shot) or stopped (cancelled).
    Complete {
        /// Which way.
        direction: Direction,
        /// The final summary.
        summary: Summary,
    },
}

/// What ended the wait before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryReason {
    /// The backoff delay passed.
    Backoff,
    /// After a connection-level failure, a probe found the peers answering again.
    PeerAnswered,
    /// The application asked ([`crate::RetryNow::trigger`]).
    Asked,
}

/// The outcome of a replication, shaped like a CouchDB replication history entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Whether it finished without a fatal error.
    pub ok: bool,
    /// The session's id.
    pub session_id: String,
    /// The replication id (`_local/<id>` holds its checkpoints).
    pub replication_id: String,
    /// Where the session started.
    pub start_last_seq: Seq,
    /// Where it got to (everything up to here is on the target).
    pub end_last_seq: Seq,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When it ended (RFC 3339).
    pub end_time: String,
    /// Counters.
    #[serde(flatten)]
    pub stats: Stats,
    /// Every document that failed to replicate.
    pub doc_failures: Vec<DocFailure>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Whether it stopped at [`crate::ReplicateOptions::deadline`] before finishing (what
    /// it wrote up to `end_last_seq` is checkpointed; the next run resumes there).
    pub deadline_reached: bool,
    /// Changes left after `end_last_seq` when it stopped at the deadline, counted for a local
    /// source (`None` otherwise: a remote source's count would need the network).
    pub pending: Option<u64>,
}
