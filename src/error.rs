//! The facade's error: each crate's error, unchanged, plus what only the facade does
//! (reading a document into an application's type). `is_conflict()`, `is_not_found()` and
//! `is_unauthorized()` answer the same for a local store and a server.

/// Any error of Settee's crates. [`Error::name`] is CouchDB's name for it, and the `is_*`
/// queries answer alike for a local store and a server.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Db::open(path)?;
/// match notes.get("note:404", &settee::GetArgs::default()).await {
///     Err(e) if e.is_not_found() => assert_eq!(e.name(), "not_found"),
///     other => panic!("expected not_found, got {other:?}"),
/// }
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
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
    /// A Mango query or index definition rejected before it was sent.
    #[error(transparent)]
    Query(#[from] settee_query::Error),
    /// A document that does not fit the type it was read into, or a value that does not
    /// serialize to a JSON object.
    #[error("doc_decode: document {id:?} does not fit the requested type")]
    Decode {
        /// The document id (empty when there is none yet).
        id: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// One document of a bulk write was refused (`forbidden`, `unauthorized` by a
    /// validation function, `too_large`, a validation error...).
    #[error("{error}: document {id:?}: {reason}")]
    Rejected {
        /// The document id.
        id: String,
        /// CouchDB's error name.
        error: String,
        /// CouchDB's reason.
        reason: String,
    },
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
    /// Asking the process that holds a local store ([`crate::Db::Held`]) failed: it did
    /// not answer (stopped, hung, gone while another process holds the store) or refused.
    #[error("asking process {pid}, which holds the store {path}")]
    Held {
        /// The store's path.
        path: String,
        /// The holder's process id.
        pid: u32,
        /// What went wrong.
        #[source]
        source: Box<Error>,
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
            Error::Query(e) => e.name(),
            Error::Decode { .. } => "doc_decode",
            Error::Rejected { .. } => "rejected",
            Error::BadRequest(_) => "bad_request",
            Error::Task(_) => "internal_error",
            Error::NoStore { .. } => "not_found",
            Error::Held { source, .. } => source.name(),
        }
    }

    /// The HTTP error behind this one, from a server or a replication peer.
    fn couch(&self) -> Option<&settee_couch::Error> {
        match self {
            Error::Couch(e) => Some(e),
            Error::Replicate(settee_replicate::Error::Couch(e)) => Some(e),
            _ => None,
        }
    }

    /// The store error behind this one.
    fn store(&self) -> Option<&settee_store::Error> {
        match self {
            Error::Store(e) => Some(e),
            Error::Replicate(settee_replicate::Error::Store { source, .. }) => Some(source),
            _ => None,
        }
    }

    /// Whether this is a 409 conflict: a write on a revision that is not a current leaf.
    /// Fetch the document again and retry, or resolve the conflict.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// db.put(serde_json::json!({"_id": "a"})).await?;
    /// let err = db.put(serde_json::json!({"_id": "a"})).await.unwrap_err();
    /// assert!(err.is_conflict());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn is_conflict(&self) -> bool {
        self.store().is_some_and(settee_store::Error::is_conflict)
            || self.couch().is_some_and(settee_couch::Error::is_conflict)
    }

    /// Whether a local store's disk is full (`disk_full`): the write was not saved, and
    /// the store takes no more writes until the process opens it again. Free some space.
    pub fn is_disk_full(&self) -> bool {
        self.store().is_some_and(settee_store::Error::is_disk_full)
    }

    /// Whether this is a 404: no such document, revision, attachment, index or database.
    pub fn is_not_found(&self) -> bool {
        self.store().is_some_and(settee_store::Error::is_not_found)
            || self.couch().is_some_and(settee_couch::Error::is_not_found)
            || matches!(
                self,
                Error::Replicate(settee_replicate::Error::NoDatabase { .. })
            )
    }

    /// Whether the server refused the credentials (401) or the user's rights (403, which
    /// CouchDB also answers for a validation function's `unauthorized`).
    pub fn is_unauthorized(&self) -> bool {
        self.couch().is_some_and(|e| {
            matches!(
                e,
                settee_couch::Error::Unauthorized(_) | settee_couch::Error::Forbidden(_)
            )
        }) || matches!(self, Error::Rejected { error, .. } if error == "unauthorized" || error == "forbidden")
    }
}

/// Result with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Error>();
}
