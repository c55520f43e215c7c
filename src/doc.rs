//! Typed documents: [`Doc<T>`] keeps a document's id and revision beside its body, which is
//! any `T: Serialize + DeserializeOwned`; [`Db::put_doc`], [`Db::get_doc`],
//! [`Db::get_docs`], [`Db::put_docs`] and [`Db::find_docs`] move them in and out of a local
//! store or a server. A document that does not fit `T` is an error naming it, never a
//! default value.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::db::blocking;
use crate::owned::HeldStore;
use crate::{Db, Error, FindRequest, Result};

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
        let decode = |cause| Error::decode(self.id.clone(), cause);
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
            return Err(Error::decode(
                "",
                serde::de::Error::custom("a document must be a JSON object"),
            ));
        };
        let id = match fields.shift_remove("_id") {
            Some(Value::String(id)) => id,
            _ => {
                return Err(Error::decode(
                    "",
                    serde::de::Error::custom("the document has no string _id"),
                ))
            }
        };
        let decode = |cause| Error::decode(id.clone(), cause);
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

/// A page of [`Db::find_docs`].
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
/// struct Note { notebook: String }
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Db::open(path)?;
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

impl Db {
    /// Writes a typed document (a new one without `rev`, an edit of `rev` otherwise) and
    /// returns it with its new revision.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
    /// struct Note { title: String, tags: Vec<String> }
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// let saved = db.put_doc(&settee::Doc::new("note:1", Note { title: "hi".into(), tags: vec![] })).await?;
    /// let mut doc = db.get_doc::<Note>("note:1").await?;
    /// assert_eq!(doc.rev, saved.rev);
    /// doc.body.title = "hello".into();
    /// let edited = db.put_doc(&doc).await?;
    /// assert!(edited.rev.unwrap().to_string().starts_with("2-"));
    /// // Writing the old revision again is a conflict.
    /// assert!(db.put_doc(&doc).await.unwrap_err().is_conflict());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `conflict` for a stale or missing `rev`; [`Error::Decode`] if the body is not an
    /// object; the peer's errors.
    pub async fn put_doc<T: Serialize + Clone>(&self, doc: &Doc<T>) -> Result<Doc<T>> {
        let json = doc.to_json()?;
        let res = self.put(json).await?;
        let rev = res
            .get("rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok())
            .ok_or_else(|| {
                Error::BadRequest(format!("no revision in the answer for {}", doc.id))
            })?;
        Ok(Doc {
            id: doc.id.clone(),
            rev: Some(rev),
            body: doc.body.clone(),
            conflicts: Vec::new(),
        })
    }

    /// Reads a typed document (its winning revision).
    ///
    /// # Errors
    /// `not_found` if it does not exist or is deleted (see [`Error::is_not_found`]);
    /// [`Error::Decode`] if it does not fit `T`; the peer's errors.
    pub async fn get_doc<T: DeserializeOwned>(&self, id: &str) -> Result<Doc<T>> {
        Doc::from_json(self.get(id, &Default::default()).await?)
    }

    /// Reads many typed documents by id in one request (`_all_docs` with `keys`), in the
    /// order asked: each one, or its error (`not_found` for a missing or deleted one,
    /// [`Error::Decode`] for one that does not fit `T`).
    ///
    /// # Errors
    /// The request's errors (a document's own error is its entry's).
    pub async fn get_docs<T: DeserializeOwned>(&self, ids: &[&str]) -> Result<Vec<Result<Doc<T>>>> {
        let keys: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let rows: Vec<(String, Option<Value>)> = match self {
            Db::Local(d) => {
                let opts = settee_store::AllDocsOptions {
                    keys: Some(keys),
                    include_docs: true,
                    ..Default::default()
                };
                blocking(d, move |d| d.all_docs(&opts))
                    .await?
                    .rows
                    .into_iter()
                    .map(|r| (r.key, r.doc.filter(|d| !d.is_null())))
                    .collect()
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let opts = settee_couch::AllDocsOptions {
                    keys: Some(keys),
                    include_docs: true,
                    ..Default::default()
                };
                r.all_docs(&opts)
                    .await?
                    .rows
                    .into_iter()
                    .map(|row| {
                        let doc = row.doc.filter(|d| !d.is_null());
                        (row.key, doc)
                    })
                    .collect()
            }
        };
        Ok(rows
            .into_iter()
            .map(|(id, doc)| match doc {
                Some(d) => Doc::from_json(d),
                None => Err(Error::Store(settee_store::Error::NotFound {
                    id,
                    reason: "missing".into(),
                })),
            })
            .collect())
    }

    /// Writes many typed documents in one `_bulk_docs` request (one atomic batch on a local
    /// store): for each, the document with its new revision, or its error.
    ///
    /// # Errors
    /// The request's errors (a document's own rejection is its entry's).
    pub async fn put_docs<T: Serialize + Clone>(
        &self,
        docs: &[Doc<T>],
    ) -> Result<Vec<Result<Doc<T>>>> {
        let json = docs.iter().map(Doc::to_json).collect::<Result<Vec<_>>>()?;
        let results = self.bulk_docs(json).await?;
        Ok(docs
            .iter()
            .zip(results)
            .map(|(doc, r)| match (r.error, r.rev) {
                (None, Some(rev)) => Ok(Doc {
                    id: doc.id.clone(),
                    rev: Some(rev),
                    body: doc.body.clone(),
                    conflicts: Vec::new(),
                }),
                (error, _) => Err(doc_error(&doc.id, error, r.reason)),
            })
            .collect())
    }

    /// The documents matching a Mango query, typed (see [`Db::find`]).
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use serde_json::json;
    /// #[derive(serde::Serialize, serde::Deserialize, Clone)]
    /// struct Note { notebook: String, updated_at: u64 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// db.create_index(&json!({"index": {"fields": ["notebook", "updated_at"]}})).await?;
    /// for i in 0..3 {
    ///     db.put_doc(&settee::Doc::new(format!("n{i}"), Note { notebook: "work".into(), updated_at: i })).await?;
    /// }
    /// let req = settee::FindRequest {
    ///     selector: settee::Selector::parse(&json!({"notebook": "work"}))?,
    ///     sort: settee::Sort::desc(["notebook", "updated_at"])?,
    ///     limit: 2,
    ///     ..Default::default()
    /// };
    /// let page = db.find_docs::<Note>(&req).await?;
    /// assert_eq!(page.docs.iter().map(|d| d.body.updated_at).collect::<Vec<_>>(), [2, 1]);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Db::find`]; [`Error::Decode`] for a document that does not fit `T` (ask only
    /// for `fields` that `T` can hold, or none).
    pub async fn find_docs<T: DeserializeOwned>(&self, req: &FindRequest) -> Result<Found<T>> {
        let page = self.find(req).await?;
        Ok(Found {
            docs: page
                .docs
                .into_iter()
                .map(Doc::from_json)
                .collect::<Result<_>>()?,
            bookmark: page.bookmark,
            warning: page.warning,
        })
    }
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
