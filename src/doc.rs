//! Typed documents: [`Doc<T>`] keeps a document's id, revision, attachment stubs and
//! deletion beside its body, which is any `T: Serialize + DeserializeOwned`, so a typed
//! edit writes back what `T` does not hold; the typed calls of [`crate::Documents`]
//! (`put_doc`, `get_doc`, `leaves`, `find_docs`, ...) move them in and out of a local store
//! or a server. A document that does not fit `T` is an error naming it, never a
//! default value. The JSON conversion is `json.rs`'s; an attachment's metadata is
//! `attachment_stub.rs`'s.

mod attachment_stub;
mod json;

use std::collections::BTreeMap;

use settee_revtree::Rev;

pub use attachment_stub::AttachmentStub;

use crate::Error;

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
/// revision, on purpose. Bytes are added and read as streams ([`crate::Documents::put_attachment`],
/// [`crate::Documents::get_attachment`]), never through `Doc`.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// struct Note { title: String } // no attachment field
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// use settee::Documents;
/// let notes = settee::Local::open(path)?;
/// let draft = notes.put_doc(&settee::Doc::new("note:1", Note { title: "draft".into() })).await?;
/// let png = futures::stream::iter([Ok(bytes::Bytes::from_static(b"PNG..."))]);
/// let upload = settee::AttachmentUpload::new("image.png", "image/png", 6, Box::pin(png));
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
    pub(crate) fn written(&self, rev: Rev) -> Doc<T>
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
