//! Typed documents: [`Doc<T>`] keeps a document's id, revision, attachment stubs and
//! deletion beside its body, which is any `T: Serialize + DeserializeOwned`, so a typed
//! edit writes back what `T` does not hold; [`Db::put_doc`], [`Db::get_doc`],
//! [`Db::get_docs`], [`Db::put_docs`] and [`Db::find_docs`] move them in and out of a local
//! store or a server. A document that does not fit `T` is an error naming it, never a
//! default value. The JSON conversion is `json.rs`'s; an attachment's metadata is
//! `attachment_stub.rs`'s.

mod attachment_stub;
mod json;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use settee_revtree::Rev;

pub use attachment_stub::AttachmentStub;

use crate::db::blocking;
use crate::owned::HeldStore;
use crate::{Db, Error, FindRequest, Result};

/// A typed document: its id, its revision (none before it is first written), its body `T`,
/// and beside the body the members of the document that a write must carry on: its
/// attachments (as [`AttachmentStub`]s) and whether this revision is a deletion. `T` holds
/// the application's fields only, so an edit through `Doc<T>` keeps the attachments although
/// `T` has no field for them.
///
/// What it carries of CouchDB's `_` members: `_id` ([`Doc::id`]), `_rev` ([`Doc::rev`]),
/// `_attachments` ([`Doc::attachments`]), `_deleted` ([`Doc::deleted`]), and `_conflicts`
/// when a read asked for them ([`Doc::conflicts`], read-only). It drops, on a read,
/// `_revisions`, `_revs_info`, `_local_seq` and `_deleted_conflicts`: they describe the
/// revision tree, which a write computes anew, and `T` never sees them. A document read with
/// a Mango `fields` list is partial (no `_attachments` unless listed, maybe no `_rev`):
/// writing it back would drop what it lacks.
///
/// Writing it keeps every attachment in `attachments` as the database holds it (same
/// bytes, digest and `revpos`); removing an entry removes that attachment from the new
/// revision, on purpose. Bytes are added and read as streams ([`Db::put_attachment`],
/// [`Db::get_attachment`]), never through `Doc`.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Note { title: String } // no attachment field
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Db::open(path)?;
/// let draft = notes.put_doc(&settee::Doc::new("note:1", Note { title: "draft".into() })).await?;
/// let png = futures::stream::iter([Ok(bytes::Bytes::from_static(b"PNG..."))]);
/// let upload = settee::AttachmentUpload {
///     name: "image.png".into(), content_type: "image/png".into(), length: 6, body: Box::pin(png),
/// };
/// notes.put_attachment("note:1", draft.rev.as_ref(), upload).await?;
///
/// let mut note = notes.get_doc::<Note>("note:1").await?;
/// assert_eq!(note.attachments["image.png"].length, 6);
/// note.body.title = "final".into();
/// let saved = notes.put_doc(&note).await?; // the image stays
/// assert_eq!(saved.attachments, note.attachments);
/// assert_eq!(notes.get_doc::<Note>("note:1").await?.attachments, note.attachments);
///
/// let mut note = saved;
/// note.attachments.remove("image.png");
/// notes.put_doc(&note).await?; // now it is gone
/// assert!(notes.get_attachment("note:1", "image.png", None).await.unwrap_err().is_not_found());
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
///
/// To and from CouchDB's JSON by hand:
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
    /// The document without its `_` members (see above).
    pub body: T,
    /// `_attachments`, by name, as stubs: written back as they are, so a write keeps them;
    /// an entry removed here is an attachment removed by the next write.
    pub attachments: BTreeMap<String, AttachmentStub>,
    /// `_deleted`: this revision is a deletion (a tombstone, such as a deleted conflicting
    /// leaf read by its `rev`; its body is usually empty, so read it into a `T` that
    /// accepts that, or into `serde_json::Value`). Writing a `Doc` with `deleted` set
    /// deletes the document.
    pub deleted: bool,
    /// `_conflicts`: the other live leaves (only when asked for, e.g. `find` with
    /// `conflicts`). Read-only: a write ignores it.
    pub conflicts: Vec<Rev>,
}

impl<T> Doc<T> {
    /// A new document, not written yet: no revision, no attachments.
    pub fn new(id: impl Into<String>, body: T) -> Doc<T> {
        Doc {
            id: id.into(),
            rev: None,
            body,
            attachments: BTreeMap::new(),
            deleted: false,
            conflicts: Vec::new(),
        }
    }

    /// This document as the write of it at `rev` left it: the same body, attachments and
    /// deletion, no conflicts (a write does not learn them).
    fn written(&self, rev: Rev) -> Doc<T>
    where
        T: Clone,
    {
        Doc {
            id: self.id.clone(),
            rev: Some(rev),
            body: self.body.clone(),
            attachments: self.attachments.clone(),
            deleted: self.deleted,
            conflicts: Vec::new(),
        }
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
    /// returns it with its new revision. Its [`Doc::attachments`] are written as stubs, so
    /// the new revision keeps them (the returned `Doc` has them as the database now holds
    /// them: same digest, length and `revpos`); [`Doc::deleted`] makes the write a
    /// deletion.
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
    /// object; `missing_stub` for an attachment stub the database does not hold (a `Doc`
    /// read from another database); the peer's errors.
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
        Ok(doc.written(rev))
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
    /// store): for each, the document with its new revision and its attachments kept (as
    /// [`Db::put_doc`]), or its error.
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
                (None, Some(rev)) => Ok(doc.written(rev)),
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
