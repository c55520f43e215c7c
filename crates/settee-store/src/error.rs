//! The store's one error type. Variants carry CouchDB's `error` names (see [`Error::name`]) so
//! a caller who knows `{"error":"conflict"}` finds [`Error::Conflict`]; per-document errors in
//! [`crate::DocResult`] use the same names and reasons.

use std::path::{Path, PathBuf};

use settee_wire::ErrorKind;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write whose `_rev` is not a current leaf (or is missing for an existing live doc).
    #[error("conflict: document update conflict on {id}; fetch the current _rev and retry")]
    Conflict {
        /// The document id.
        id: String,
    },
    /// The document (or revision) does not exist. `reason` is CouchDB's: `missing` or
    /// `deleted`.
    #[error("not_found: {id} is {reason}")]
    NotFound {
        /// The document id.
        id: String,
        /// `missing` or `deleted`.
        reason: String,
    },
    /// A malformed request: bad JSON shape, bad rev, bad attachment data.
    #[error("bad_request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// An id CouchDB does not allow (empty, `_`-prefixed but not reserved, a bare prefix).
    #[error("illegal_docid: {id:?}: {reason}")]
    IllegalDocId {
        /// The id as given.
        id: String,
        /// CouchDB's reason text.
        reason: String,
    },
    /// A body field CouchDB rejects, such as an unknown `_x` member.
    #[error("doc_validation: {reason}")]
    DocValidation {
        /// CouchDB's reason text ("Bad special document member: _x").
        reason: String,
    },
    /// An attachment stub that refers to an attachment this store does not hold.
    #[error(
        "missing_stub: {id}: attachment {name:?} is a stub but the store has no such attachment"
    )]
    MissingStub {
        /// The document id.
        id: String,
        /// The attachment name.
        name: String,
    },
    /// Another process (or another handle in this one) has the store open.
    #[error("store_in_use: {path} is open in another process or handle; close it first")]
    StoreInUse {
        /// The store directory.
        path: PathBuf,
        /// The lock error from sled.
        #[source]
        source: sled::Error,
    },
    /// The directory exists but is not a Settee store, or its files are damaged.
    #[error("not_a_store: {path}: {reason}")]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The store was written with a storage format this version cannot read.
    #[error("unsupported_format: {path} has storage format {found}, this build reads {expected}")]
    UnsupportedFormat {
        /// The store directory.
        path: PathBuf,
        /// The version found on disk.
        found: String,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A record in the store could not be decoded.
    #[error("corrupt: {what}")]
    Corrupt {
        /// Which record, and what is wrong with it.
        what: String,
    },
    /// An error from sled (I/O, or sled's own corruption checks).
    #[error("storage error in {path}")]
    Storage {
        /// The store directory.
        path: PathBuf,
        /// The sled error.
        #[source]
        source: sled::Error,
    },
    /// The disk holding the store is full (`ENOSPC`), or the process may not make its files
    /// any larger (`EFBIG`, its file size limit). The write that found it was not made
    /// durable, and the handle refuses every later write: sled cannot write its log again
    /// until the store is opened anew (by a new process: the handle keeps its lock).
    #[error(
        "disk_full: no space left on the disk holding the store {path}; the write was not saved: \
         free some space on that disk, then run the command again (an app: restart it)"
    )]
    DiskFull {
        /// The store directory.
        path: PathBuf,
        /// The I/O error from sled.
        #[source]
        source: sled::Error,
    },
    /// A Mango query, index definition or selector that cannot be served, with CouchDB's
    /// name for it (`no_usable_index`, `invalid_operator`, ...).
    #[error(transparent)]
    Query(#[from] settee_query::Error),
    /// The reader an attachment was being written from failed
    /// ([`crate::Database::stage_attachment`]); nothing of it stays in the store.
    #[error("attachment_source: reading the attachment's bytes from its source failed")]
    AttachmentSource {
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// A filesystem error outside sled (destroying a store).
    #[error("i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// CouchDB's name for this error (`conflict`, `not_found`, ...). Stable: callers print it
    /// and [`crate::DocResult`] carries it.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Conflict { .. } => "conflict",
            Error::NotFound { .. } => "not_found",
            Error::BadRequest { .. } => "bad_request",
            Error::IllegalDocId { .. } => "illegal_docid",
            Error::DocValidation { .. } => "doc_validation",
            Error::MissingStub { .. } => "missing_stub",
            Error::StoreInUse { .. } => "store_in_use",
            Error::NotAStore { .. } => "not_a_store",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::Corrupt { .. } => "corrupt",
            Error::Query(e) => e.name(),
            Error::DiskFull { .. } => "disk_full",
            Error::Storage { .. } | Error::Io { .. } => "internal_server_error",
            Error::AttachmentSource { .. } => "attachment_source",
        }
    }

    /// What kind of failure this is, the same vocabulary as a server's errors
    /// ([`settee_wire::ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::BadRequest { .. }
            | Error::IllegalDocId { .. }
            | Error::DocValidation { .. }
            | Error::MissingStub { .. } => ErrorKind::BadRequest,
            // Every query error is CouchDB's 400 (`settee_query::Error::status`).
            Error::Query(e) => ErrorKind::from_status(e.status()),
            Error::StoreInUse { .. } => ErrorKind::StoreInUse,
            Error::DiskFull { .. } => ErrorKind::DiskFull,
            Error::NotAStore { .. } | Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedFormat { .. } => ErrorKind::Unsupported,
            Error::Storage { source, .. } => match source {
                sled::Error::Corruption { .. } => ErrorKind::Corrupt,
                _ => ErrorKind::Internal,
            },
            Error::Io { .. } | Error::AttachmentSource { .. } => ErrorKind::Internal,
        }
    }

    /// The HTTP status CouchDB answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Conflict { .. } => 409,
            Error::NotFound { .. } => 404,
            Error::BadRequest { .. } | Error::IllegalDocId { .. } => 400,
            Error::DocValidation { .. } => 400,
            Error::Query(e) => e.status(),
            Error::MissingStub { .. } => 412,
            Error::StoreInUse { .. } => 423,
            // HTTP's 507 Insufficient Storage.
            Error::DiskFull { .. } => 507,
            Error::NotAStore { .. } | Error::UnsupportedFormat { .. } => 500,
            Error::Corrupt { .. } | Error::Storage { .. } | Error::Io { .. } => 500,
            Error::AttachmentSource { .. } => 500,
        }
    }

    /// The human-readable reason, as it goes in a `{"error", "reason"}` reply.
    pub fn reason(&self) -> String {
        match self {
            Error::Conflict { .. } => "Document update conflict.".into(),
            Error::NotFound { reason, .. } => reason.clone(),
            Error::BadRequest { reason } => reason.clone(),
            Error::IllegalDocId { reason, .. } => reason.clone(),
            Error::DocValidation { reason } => reason.clone(),
            Error::MissingStub { name, .. } => format!("Invalid attachment stub for {name}"),
            Error::Query(e) => e.reason().to_owned(),
            other => other.to_string(),
        }
    }

    /// Whether this is a 409 conflict ([`ErrorKind::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this is a 404 not_found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether the disk holding the store is full ([`Error::DiskFull`]).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::DiskFull { .. })
    }

    /// A sled error on the store at `path`: [`Error::DiskFull`] when the disk (or the
    /// process's file size limit) refused a write, else [`Error::Storage`].
    pub(crate) fn sled(path: &Path, source: sled::Error) -> Error {
        let full = matches!(&source, sled::Error::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge));
        let path = path.to_owned();
        if full {
            Error::DiskFull { path, source }
        } else {
            Error::Storage { path, source }
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Error {
        Error::BadRequest {
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(id: &str, reason: &str) -> Error {
        Error::NotFound {
            id: id.to_owned(),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Error {
        Error::Corrupt { what: what.into() }
    }
}

impl From<settee_revtree::Error> for Error {
    fn from(e: settee_revtree::Error) -> Error {
        // Both revtree errors are CouchDB's 400 bad_request.
        Error::bad_request(e.reason())
    }
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Error>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/tmp/store")
    }

    fn kind_and_name(e: &Error) -> (ErrorKind, &'static str) {
        (e.kind(), e.name())
    }

    #[test]
    fn document_errors_keep_their_couchdb_kinds() {
        assert_eq!(
            kind_and_name(&Error::Conflict { id: "a".into() }),
            (ErrorKind::Conflict, "conflict")
        );
        assert_eq!(
            kind_and_name(&Error::not_found("a", "missing")),
            (ErrorKind::NotFound, "not_found")
        );
    }

    #[test]
    fn malformed_requests_are_bad_requests_under_their_own_names() {
        let cases = [
            (Error::bad_request("x"), "bad_request"),
            (
                Error::IllegalDocId {
                    id: "_x".into(),
                    reason: "no".into(),
                },
                "illegal_docid",
            ),
            (
                Error::DocValidation {
                    reason: "no".into(),
                },
                "doc_validation",
            ),
            (
                Error::MissingStub {
                    id: "a".into(),
                    name: "f".into(),
                },
                "missing_stub",
            ),
            (
                Error::Query(settee_query::Error::NoUsableIndex {
                    reason: "no".into(),
                }),
                "no_usable_index",
            ),
            (
                Error::from(settee_revtree::Error::InvalidRevisions { reason: "x".into() }),
                "bad_request",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(kind_and_name(&e), (ErrorKind::BadRequest, name), "{e}");
        }
    }

    #[test]
    fn store_states_have_their_own_kinds() {
        let lock = || sled::Error::Unsupported("locked".into());
        let io = || sled::Error::Io(std::io::Error::other("boom"));
        let cases = [
            (
                Error::StoreInUse {
                    path: path(),
                    source: lock(),
                },
                ErrorKind::StoreInUse,
            ),
            (
                Error::DiskFull {
                    path: path(),
                    source: io(),
                },
                ErrorKind::DiskFull,
            ),
            (Error::corrupt("bad record"), ErrorKind::Corrupt),
            (
                Error::NotAStore {
                    path: path(),
                    reason: "a file".into(),
                },
                ErrorKind::Corrupt,
            ),
            (
                Error::Storage {
                    path: path(),
                    source: sled::Error::Corruption { at: None, bt: () },
                },
                ErrorKind::Corrupt,
            ),
            (
                Error::UnsupportedFormat {
                    path: path(),
                    found: "9".into(),
                    expected: 1,
                },
                ErrorKind::Unsupported,
            ),
            (
                Error::Storage {
                    path: path(),
                    source: io(),
                },
                ErrorKind::Internal,
            ),
            (
                Error::Io {
                    path: path(),
                    source: std::io::Error::other("boom"),
                },
                ErrorKind::Internal,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }

    #[test]
    fn a_full_disk_found_by_sled_is_disk_full() {
        let full = sled::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(Error::sled(&path(), full).kind(), ErrorKind::DiskFull);
    }
}
