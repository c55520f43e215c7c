//! The facade's error: each crate's error, unchanged, plus what only the facade does
//! (reading a document into an application's type). [`Error::kind`] is one vocabulary for
//! all of them, the same for a local store and a server; [`Error::name`] is CouchDB's
//! exact name, also the same on both.

use std::borrow::Cow;

pub use settee_store::ErrorKind;

/// Any error of Settee's crates. Match on [`Error::kind`]: it is the same whether the call
/// ran on a local store or on a server. [`Error::name`] is CouchDB's name for the error
/// (`no_usable_index`, `invalid_operator`...), which a server sends and a local store gives
/// for the same mistake, and [`Error::reason`] its reason text.
///
/// ```
/// use settee::{Documents, ErrorKind};
/// # async fn demo() -> Result<(), settee::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// # let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let notes = settee::Local::open(path)?;
/// notes.put(serde_json::json!({"_id": "note:1"})).await?;
/// // The same document again without its _rev: a conflict.
/// match notes.put(serde_json::json!({"_id": "note:1"})).await {
///     Err(e) if e.kind() == ErrorKind::Conflict => assert_eq!(e.name(), "conflict"),
///     other => panic!("expected a conflict, got {other:?}"),
/// }
///
/// // A server nobody answers on (the port is closed): offline, not a bad request.
/// let server = settee::Remote::new(&format!("http://127.0.0.1:{port}/notes"))?;
/// match server.get("note:1", &settee::ReadOptions::default()).await {
///     Err(e) => match e.kind() {
///         ErrorKind::Offline => println!("offline; the note waits for the network: {e}"),
///         ErrorKind::Unauthorized | ErrorKind::Forbidden => println!("sign in again"),
///         ErrorKind::NotFound => println!("no such note"),
///         other => panic!("expected offline, got {other}: {e}"),
///     },
///     Ok(doc) => panic!("a closed port answered {doc}"),
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
    /// serialize to a JSON object ([`ErrorKind::Decode`]). The message ends with serde's
    /// reason, which is why `cause` is not also the error's `source()`.
    #[error("doc_decode: document {id:?} does not fit the requested type: {cause}")]
    Decode {
        /// The document id (empty when there is none yet).
        id: String,
        /// What serde said.
        cause: serde_json::Error,
    },
    /// One document of a bulk write was refused (`forbidden`, `unauthorized` by a
    /// validation function, `too_large`, a validation error...). Its kind follows its
    /// name ([`ErrorKind::from_doc_error`]): [`ErrorKind::Rejected`] only for a name no
    /// other kind covers.
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
    /// A server's answer that is not what CouchDB sends (the wrong shape, a revision
    /// missing from a write's answer).
    #[error("invalid_response: {0}")]
    InvalidResponse(String),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A command that only reads was given a local path that holds no store
    /// ([`crate::LocalBuilder::create`] off); nothing was created there.
    #[error("no Settee store at {path}")]
    NoStore {
        /// The path as given.
        path: String,
    },
    /// Asking the process that holds a local store ([`crate::Local::held_by`]) failed: it did
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
    /// What kind of failure this is, the same for a local store and a server: match on
    /// it (see [`Error`]'s example). A peer's error keeps the kind it has in its crate
    /// (`settee_store::Error::kind`, `settee_couch::Error::kind`,
    /// `settee_replicate::Error::kind`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Couch(e) => e.kind(),
            Error::Replicate(e) => e.kind(),
            // Every revtree error is CouchDB's 400 `bad_request` (`settee_revtree::Error::name`).
            Error::Rev(_) => ErrorKind::BadRequest,
            // Every query error is CouchDB's 400 (`settee_query::Error::status`).
            Error::Query(e) => ErrorKind::from_status(e.status()),
            Error::Decode { .. } => ErrorKind::Decode,
            Error::Rejected { error, .. } => ErrorKind::from_doc_error(error),
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::InvalidResponse(_) => ErrorKind::InvalidResponse,
            Error::Task(_) => ErrorKind::Internal,
            Error::NoStore { .. } => ErrorKind::NotFound,
            Error::Held { source, .. } => source.kind(),
        }
    }

    /// CouchDB's name for the error (`conflict`, `not_found`, `no_usable_index`,
    /// `invalid_operator`...). For a server's error it is the name the server sent; a local
    /// store gives the same name for the same situation. The errors CouchDB has no name
    /// for have Settee's (`transport`, `doc_decode`, `invalid_response`...). Stable: the
    /// CLI prints it.
    pub fn name(&self) -> &str {
        match self {
            Error::Store(e) => e.name(),
            Error::Couch(e) => e.name(),
            Error::Replicate(e) => e.name(),
            Error::Rev(e) => e.name(),
            Error::Query(e) => e.name(),
            Error::Decode { .. } => "doc_decode",
            Error::Rejected { error, .. } => error,
            Error::BadRequest(_) => "bad_request",
            Error::InvalidResponse(_) => "invalid_response",
            Error::Task(_) => "internal_error",
            Error::NoStore { .. } => "not_found",
            Error::Held { source, .. } => source.name(),
        }
    }

    /// The reason text, where there is one: what the server sent as CouchDB's `reason`
    /// (`missing`, `Document update conflict.`...), what CouchDB answers for the same error
    /// of a local store, serde's message for [`ErrorKind::Decode`]. `None` for errors no
    /// reason comes with (offline, a failed task).
    pub fn reason(&self) -> Option<Cow<'_, str>> {
        match self {
            Error::Store(e) => Some(Cow::Owned(e.reason())),
            Error::Couch(e) => couch_reason(e),
            Error::Replicate(e) => replication_reason(e),
            Error::Rev(e) => Some(Cow::Owned(e.reason())),
            Error::Query(e) => Some(Cow::Borrowed(e.reason())),
            Error::Decode { cause, .. } => Some(Cow::Owned(cause.to_string())),
            Error::Rejected { reason, .. } => Some(Cow::Borrowed(reason)),
            Error::BadRequest(reason) | Error::InvalidResponse(reason) => {
                Some(Cow::Borrowed(reason))
            }
            Error::Task(_) | Error::NoStore { .. } => None,
            Error::Held { source, .. } => source.reason(),
        }
    }

    /// A document that does not fit `T` (or a body that does not serialize to an object).
    pub(crate) fn decode(id: impl Into<String>, cause: serde_json::Error) -> Error {
        Error::Decode {
            id: id.into(),
            cause,
        }
    }

    /// Whether this is a conflict ([`ErrorKind::Conflict`]): a write on a revision that is
    /// not a current leaf. Fetch the document again and retry, or resolve the conflict.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"})).await?;
    /// let err = db.put(serde_json::json!({"_id": "a"})).await.unwrap_err();
    /// assert!(err.is_conflict());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }

    /// Whether this is a 404 ([`ErrorKind::NotFound`]): no such document, revision,
    /// attachment, index or database.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// The `reason` a server sent, when it sent one.
fn couch_reason(e: &settee_couch::Error) -> Option<Cow<'_, str>> {
    e.failure()
        .map(settee_couch::Failure::reason)
        .filter(|r| !r.is_empty())
        .map(Cow::Borrowed)
}

/// The reason of a replication's error: its peer's, or its last failure's.
fn replication_reason(e: &settee_replicate::Error) -> Option<Cow<'_, str>> {
    use settee_replicate::Error as E;
    match e {
        E::Store { source, .. } => Some(Cow::Owned(source.reason())),
        E::Couch(e) => couch_reason(e),
        E::BadRequest { reason } => Some(Cow::Borrowed(reason)),
        E::GaveUp { source, .. } => replication_reason(source),
        _ => None,
    }
}

/// Result with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Error>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_error() -> serde_json::Error {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Note {
            title: String,
        }
        serde_json::from_str::<Note>(r#"{"body": "no title"}"#).unwrap_err()
    }

    #[test]
    fn decode_names_the_document_and_says_what_serde_said_once() {
        let e = Error::decode("note:1", serde_error());
        assert_eq!((e.kind(), e.name()), (ErrorKind::Decode, "doc_decode"));
        assert_eq!(
            e.to_string(),
            "doc_decode: document \"note:1\" does not fit the requested type: \
             missing field `title` at line 1 column 20"
        );
        // The reason is in the message, so it is not a source too (`{:#}` would repeat it).
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(
            e.reason().as_deref(),
            Some("missing field `title` at line 1 column 20")
        );
    }

    #[test]
    fn a_refused_document_has_the_kind_of_its_name() {
        let rejected = |error: &str| Error::Rejected {
            id: "a".into(),
            error: error.into(),
            reason: "no secrets here".into(),
        };
        for (name, kind) in [
            ("forbidden", ErrorKind::Forbidden),
            ("unauthorized", ErrorKind::Unauthorized),
            ("too_large", ErrorKind::TooLarge),
            ("unknown_error", ErrorKind::Rejected),
        ] {
            let e = rejected(name);
            assert_eq!((e.kind(), e.name()), (kind, name));
            assert_eq!(e.reason().as_deref(), Some("no secrets here"));
        }
    }

    #[test]
    fn the_facades_own_errors_have_their_kinds_and_names() {
        let cases = [
            (
                Error::BadRequest("x".into()),
                ErrorKind::BadRequest,
                "bad_request",
            ),
            (
                Error::InvalidResponse("x".into()),
                ErrorKind::InvalidResponse,
                "invalid_response",
            ),
            (
                Error::Task("panicked".into()),
                ErrorKind::Internal,
                "internal_error",
            ),
            (
                Error::NoStore { path: "p".into() },
                ErrorKind::NotFound,
                "not_found",
            ),
        ];
        for (e, kind, name) in cases {
            assert_eq!((e.kind(), e.name()), (kind, name), "{e}");
        }
    }

    #[test]
    fn wrapped_errors_keep_their_crates_kind_name_and_reason() {
        let store = Error::from(settee_store::Error::NotFound {
            id: "a".into(),
            reason: "deleted".into(),
        });
        assert_eq!(
            (store.kind(), store.name()),
            (ErrorKind::NotFound, "not_found")
        );
        assert_eq!(store.reason().as_deref(), Some("deleted"));
        assert!(store.is_not_found() && !store.is_conflict());

        let query = Error::from(settee_query::Error::NoUsableIndex {
            reason: "no index".into(),
        });
        assert_eq!(
            (query.kind(), query.name()),
            (ErrorKind::BadRequest, "no_usable_index")
        );
        let local_query = Error::from(settee_store::Error::Query(
            settee_query::Error::NoUsableIndex {
                reason: "no index".into(),
            },
        ));
        assert_eq!(
            (local_query.kind(), local_query.name()),
            (query.kind(), query.name())
        );

        let rev = Error::from("x".parse::<settee_revtree::Rev>().unwrap_err());
        assert_eq!(
            (rev.kind(), rev.name()),
            (ErrorKind::BadRequest, "bad_request")
        );

        let url = url::Url::parse("http://u:p@127.0.0.1:1/db").unwrap();
        let offline = Error::from(settee_couch::Error::Connect {
            addr: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
            url: settee_couch::RedactedUrl::new(&url),
        });
        assert_eq!(
            (offline.kind(), offline.name()),
            (ErrorKind::Offline, "transport")
        );
        assert_eq!(offline.reason(), None);

        let gave_up = Error::from(settee_replicate::Error::GaveUp {
            attempts: 5,
            source: Box::new(settee_replicate::Error::Store {
                path: "p".into(),
                source: settee_store::Error::Conflict { id: "a".into() },
            }),
        });
        assert_eq!(
            (gave_up.kind(), gave_up.name()),
            (ErrorKind::Conflict, "conflict")
        );
        assert_eq!(
            gave_up.reason().as_deref(),
            Some("Document update conflict.")
        );
    }

    #[test]
    fn a_held_store_answers_with_its_cause() {
        let e = Error::Held {
            path: "p".into(),
            pid: 7,
            source: Box::new(Error::from(settee_store::Error::Conflict {
                id: "a".into(),
            })),
        };
        assert_eq!((e.kind(), e.name()), (ErrorKind::Conflict, "conflict"));
        assert!(e.is_conflict());
    }
}
