//! Typed documents: [`Doc<T>`] keeps a document's id and revision beside its body, which is
//! any `T: Serialize + DeserializeOwned`; [`crate::Documents::put_doc`],
//! [`crate::Documents::get_doc`], [`crate::Documents::get_docs`], [`crate::Documents::put_docs`]
//! and [`crate::Documents::find_docs`] move them in and out of a local
//! store or a server. A document that does not fit `T` is an error naming it, never a
//! default value.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::{Error, Result};

/// A document: its id, its revision (none before it is first written), its body, and its
/// conflicting revisions when they were asked for.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Note { title: String }
/// let doc = settee::Doc::new("note:1", Note { title: "hi".into() });
/// assert_eq!(doc.to_json()?, serde_json::json!({"_id": "note:1", "title": "hi"}));
/// let back: settee::Doc<Note> = settee::Doc::from_json(serde_json::json!({"_id": "note:1", "_rev": "1-a", "title": "hi"}))?;
/// assert_eq!(back.rev.unwrap().to_string(), "1-a");
/// # Ok::<(), settee::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Doc<T> {
    /// `_id`.
    pub id: String,
    /// `_rev`: the revision this body is, and the one the next write edits.
    pub rev: Option<Rev>,
    /// The document without `_id`, `_rev` and `_conflicts`.
    pub body: T,
    /// `_conflicts`: the other live leaves (only when asked for, e.g. `find` with
    /// `conflicts`).
    pub conflicts: Vec<Rev>,
}

impl<T: Clone> Doc<T> {
    /// This document as written at `rev`: the same body, the new revision, no conflicts.
    pub(crate) fn written(&self, rev: Rev) -> Doc<T> {
        Doc {
            id: self.id.clone(),
            rev: Some(rev),
            body: self.body.clone(),
            conflicts: Vec::new(),
        }
    }
}

impl<T> Doc<T> {
    /// A new document, not written yet.
    pub fn new(id: impl Into<String>, body: T) -> Doc<T> {
        Doc {
            id: id.into(),
            rev: None,
            body,
            conflicts: Vec::new(),
        }
    }
}

impl<T: Serialize> Doc<T> {
    /// The document as CouchDB's JSON: the body's members with `_id` and `_rev`.
    ///
    /// # Errors
    /// [`Error::Decode`] if the body does not serialize to a JSON object.
    pub fn to_json(&self) -> Result<Value> {
        let decode = |source| Error::Decode {
            id: self.id.clone(),
            source,
        };
        let body = serde_json::to_value(&self.body).map_err(decode)?;
        let Value::Object(fields) = body else {
            return Err(decode(serde::ser::Error::custom(
                "a document body must serialize to a JSON object",
            )));
        };
        let mut out = Map::with_capacity(fields.len() + 2);
        out.insert("_id".into(), Value::String(self.id.clone()));
        if let Some(rev) = &self.rev {
            out.insert("_rev".into(), Value::String(rev.to_string()));
        }
        out.extend(
            fields
                .into_iter()
                .filter(|(k, _)| k != "_id" && k != "_rev"),
        );
        Ok(Value::Object(out))
    }
}

impl<T: DeserializeOwned> Doc<T> {
    /// A document from CouchDB's JSON. `_id`, `_rev` and `_conflicts` go to their fields;
    /// the rest (other `_` members included, such as `_attachments`) is deserialized into
    /// `T`, whose unknown fields serde ignores unless `T` says otherwise.
    ///
    /// # Errors
    /// [`Error::Decode`] if it is not an object with an `_id`, or the rest does not fit `T`.
    pub fn from_json(doc: Value) -> Result<Doc<T>> {
        let Value::Object(mut fields) = doc else {
            return Err(Error::Decode {
                id: String::new(),
                source: serde::de::Error::custom("a document must be a JSON object"),
            });
        };
        let id = match fields.shift_remove("_id") {
            Some(Value::String(id)) => id,
            _ => {
                return Err(Error::Decode {
                    id: String::new(),
                    source: serde::de::Error::custom("the document has no string _id"),
                })
            }
        };
        let decode = |source| Error::Decode {
            id: id.clone(),
            source,
        };
        let rev = match fields.shift_remove("_rev") {
            Some(Value::String(r)) => Some(
                r.parse::<Rev>()
                    .map_err(|e| decode(serde::de::Error::custom(e)))?,
            ),
            _ => None,
        };
        let conflicts = match fields.shift_remove("_conflicts") {
            Some(c) => serde_json::from_value(c).map_err(decode)?,
            None => Vec::new(),
        };
        let body = serde_json::from_value(Value::Object(fields)).map_err(decode)?;
        Ok(Doc {
            id,
            rev,
            body,
            conflicts,
        })
    }
}

/// A page of [`crate::Documents::find_docs`].
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
/// struct Note { notebook: String }
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// use settee::Documents;
/// let notes = settee::Local::open(path)?;
/// notes.put_doc(&settee::Doc::new("note:1", Note { notebook: "work".into() })).await?;
/// notes.put_doc(&settee::Doc::new("note:2", Note { notebook: "home".into() })).await?;
/// let req = settee::FindRequest::parse(&serde_json::json!({"selector": {"notebook": "work"}}))?;
/// let found: settee::Found<Note> = notes.find_docs(&req).await?;
/// assert_eq!(found.docs.len(), 1);
/// assert_eq!(found.docs[0].id, "note:1");
/// assert!(found.warning.is_some()); // no index: every document was read
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    /// The matching documents.
    pub docs: Vec<Doc<T>>,
    /// Pass it as the next request's `bookmark` for the next page (`None` from servers that
    /// send none, such as pouchdb-server).
    pub bookmark: Option<String>,
    /// Why the query may be slow (no index used...).
    pub warning: Option<String>,
}

/// The error of one document of a bulk write, as the facade's error.
pub(crate) fn doc_error(id: &str, error: Option<String>, reason: Option<String>) -> Error {
    let reason = reason.unwrap_or_default();
    match error.as_deref() {
        Some("conflict") => Error::Store(settee_store::Error::Conflict { id: id.to_owned() }),
        Some("not_found") => Error::Store(settee_store::Error::NotFound {
            id: id.to_owned(),
            reason,
        }),
        Some(other) => Error::Rejected {
            id: id.to_owned(),
            error: other.to_owned(),
            reason,
        },
        None => Error::BadRequest(format!("{id}: no revision in the answer")),
    }
}
