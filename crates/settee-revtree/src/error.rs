//! The one error type of the revision-tree crate: malformed revs and ancestries.

/// What was wrong with a rev, a `_revisions` ancestry or a path given to the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rev string that is not `N-hash` with `N >= 1` and a non-empty hash.
    #[error("bad_request: {}", self.reason())]
    InvalidRev {
        /// The text as given (truncated to 64 characters).
        rev: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `_revisions` object (or a path) that cannot describe an ancestry.
    #[error("bad_request: {}", self.reason())]
    InvalidRevisions {
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// CouchDB's name for this error. Both variants are answered by CouchDB as `bad_request`.
    pub fn name(&self) -> &'static str {
        match self {
            Error::InvalidRev { .. } | Error::InvalidRevisions { .. } => "bad_request",
        }
    }

    /// The message without the name in front: CouchDB's `reason`.
    pub fn reason(&self) -> String {
        match self {
            Error::InvalidRev { rev, reason } => format!("invalid rev format {rev:?}: {reason}"),
            Error::InvalidRevisions { reason } => format!("invalid _revisions: {reason}"),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
