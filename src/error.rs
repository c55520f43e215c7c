//! The facade's error: each crate's error, unchanged.

/// Any error of Settee's crates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local store.
    #[error(transparent)]
    Store(#[from] settee_store::Error),
    /// The HTTP client.
    #[error(transparent)]
    Couch(#[from] settee_couch::Error),
    /// The replicator.
    #[error(transparent)]
    Replicate(#[from] settee_replicate::Error),
    /// A revision or ancestry.
    #[error(transparent)]
    Rev(#[from] settee_revtree::Error),
    /// A request that cannot be served as asked.
    #[error("bad_request: {0}")]
    BadRequest(String),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A command that only reads was given a local path that holds no store
    /// ([`crate::Db::open_existing`]); nothing was created there.
    #[error("no Settee store at {path}")]
    NoStore {
        /// The path as given.
        path: String,
    },
}

impl Error {
    /// CouchDB's name for the error (`conflict`, `not_found`...).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Store(e) => e.name(),
            Error::Couch(e) => e.name(),
            Error::Replicate(e) => e.name(),
            Error::Rev(e) => e.name(),
            Error::BadRequest(_) => "bad_request",
            Error::Task(_) => "internal_error",
            Error::NoStore { .. } => "not_found",
        }
    }
}

/// Result with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
