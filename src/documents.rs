//! [`Documents`]: the calls a local store ([`crate::Local`]), a server ([`crate::Remote`])
//! and a database by location ([`crate::Db`]) all answer, alike. CouchDB's JSON, typed
//! documents ([`Doc<T>`]), Mango, attachments and the changes feed. Each call is written
//! once, in `calls/`.

use std::future::Future;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use settee_couch::AttachmentUpload;
use settee_revtree::Rev;
use settee_store::{
    AllDocs, AllDocsOptions, BulkGetOptions, BulkGetRequest, BulkGetResult, CreateIndexResponse,
    DocResult, FindResponse, IndexList, IndexProgress, OpenRevs, Resolution,
};

#[allow(unused_imports)] // rustdoc links
use crate::Error;
use crate::{
    AttachmentStream, Change, ChangesFeed, ChangesPage, ChangesRequest, Doc, DocChange,
    FindRequest, Found, ReadOptions, Result,
};

pub(crate) mod sealed {
    /// Implemented only by the crate's database types; `target` says where their calls go.
    pub trait Sealed {
        /// Where this database's calls go.
        fn target(&self) -> crate::calls::Target;
    }
}

/// The calls every database answers the same way, a local store ([`crate::Local`]), a
/// server ([`crate::Remote`]) or either by location ([`crate::Db`]): documents as CouchDB's
/// JSON or typed ([`Doc<T>`]), Mango queries and indexes, attachments, the changes feed,
/// conflicts. Write an application's code once, generic over `D: Documents`.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use settee::{Doc, Documents};
/// #[derive(serde::Serialize, serde::Deserialize, Clone)]
/// struct Note { title: String }
///
/// async fn rename<D: Documents>(db: &D, id: &str, title: &str) -> settee::Result<Doc<Note>> {
///     let mut note: Doc<Note> = db.get_doc(id).await?;
///     note.body.title = title.into();
///     db.put_doc(&note).await
/// }
/// # let dir = tempfile::tempdir().unwrap();
/// let notes = settee::Local::open(dir.path().join("notes"))?;
/// notes.put_doc(&Doc::new("note:1", Note { title: "draft".into() })).await?;
/// let renamed = rename(&notes, "note:1", "final").await?;
/// assert!(renamed.rev.unwrap().to_string().starts_with("2-"));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
///
/// The trait is sealed: the crate's types are its only implementations.
pub trait Documents: sealed::Sealed + Sync {
    /// Writes a document as CouchDB's JSON (`PUT /db/id`; a local store also takes one
    /// without `_id` and gives it a new one). Answers `{"ok": true, "id", "rev"}`.
    ///
    /// # Errors
    /// `conflict` on a stale or missing `_rev`, a validation function's refusal, the
    /// database's errors.
    fn put(&self, doc: Value) -> impl Future<Output = Result<Value>> + Send {
        self.target().put(doc)
    }

    /// Reads a document as CouchDB's JSON: its winner, or `opts.rev`.
    ///
    /// # Errors
    /// `not_found` for a missing or deleted document or revision, the database's errors.
    fn get(&self, id: &str, opts: &ReadOptions) -> impl Future<Output = Result<Value>> + Send {
        self.target().get(id, opts)
    }

    /// Every leaf of a document ([`OpenRevs::All`], deleted ones included) or the given
    /// revisions, each `{"ok": doc}` (with `_revisions`) or `{"missing": rev}`.
    ///
    /// # Errors
    /// `not_found` for a missing document, the database's errors.
    fn open_revs(
        &self,
        id: &str,
        which: &OpenRevs,
        opts: &ReadOptions,
    ) -> impl Future<Output = Result<Vec<Value>>> + Send {
        self.target().open_revs(id, which, opts)
    }

    /// Deletes a document: revision `rev`, or the current winner when `None`. Answers
    /// `{"ok": true, "id", "rev"}` with the tombstone's revision.
    ///
    /// # Errors
    /// `not_found`, `conflict` (a `rev` that is not a leaf), the database's errors.
    fn delete(&self, id: &str, rev: Option<&Rev>) -> impl Future<Output = Result<Value>> + Send {
        self.target().delete(id, rev)
    }

    /// A page of `_all_docs`: documents by id, with key ranges (`startkey`/`endkey`),
    /// `keys`, `limit`/`skip` pagination, `descending` and `include_docs`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let notes = settee::Local::open(dir.path().join("notes"))?;
    /// for id in ["a", "b", "c", "d"] {
    ///     notes.put(serde_json::json!({"_id": id})).await?;
    /// }
    /// let page = notes
    ///     .all_docs(&settee::AllDocsOptions { startkey: Some("b".into()), limit: Some(2), ..Default::default() })
    ///     .await?;
    /// let ids: Vec<&str> = page.rows.iter().map(|r| r.key.as_str()).collect();
    /// assert_eq!(ids, ["b", "c"]);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The database's errors.
    fn all_docs(&self, opts: &AllDocsOptions) -> impl Future<Output = Result<AllDocs>> + Send {
        self.target().all_docs(opts)
    }

    /// One page of the changes feed after `req.since` (see [`Documents::changes_stream`]
    /// for a stream), and the sequence the next page starts from.
    ///
    /// # Errors
    /// A sequence of another database (`bad_request`), the database's errors.
    fn changes(&self, req: &ChangesRequest) -> impl Future<Output = Result<ChangesPage>> + Send {
        self.target().changes(req)
    }

    /// Every conflicted document as JSON: `{"id", "winner", "conflicts": [...], "leaves":
    /// [{"rev", "deleted"}]}`, leaves winner first (see [`Documents::leaves`] for one
    /// document's leaves, typed).
    ///
    /// # Errors
    /// The database's errors.
    fn conflicts(&self) -> impl Future<Output = Result<Vec<Value>>> + Send {
        self.target().conflicts()
    }

    /// Writes many documents in one request (`_bulk_docs`, new edits): one result per
    /// document, in order. On a local store the call is one atomic batch.
    ///
    /// # Errors
    /// The request's errors (each document's own rejection is its result).
    fn bulk_docs(&self, docs: Vec<Value>) -> impl Future<Output = Result<Vec<DocResult>>> + Send {
        self.target().bulk_docs(docs)
    }

    /// Reads many documents, or given revisions of them, in one request (`_bulk_get`): one
    /// result per request, in order, each with one entry per revision read (every leaf when
    /// no `rev` is given), a document or its error (`not_found` with `missing` or
    /// `deleted`). The answers are the store's types for a store and a server alike.
    ///
    /// ```
    /// # async fn demo(db: settee::Db) -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use settee::store::{BulkGetDoc, BulkGetRequest};
    /// let reqs = [BulkGetRequest { id: "note:1".into(), rev: None, atts_since: vec![] }];
    /// for result in db.bulk_get(&reqs, &Default::default()).await? {
    ///     for doc in result.docs {
    ///         if let BulkGetDoc::Ok(doc) = doc {
    ///             println!("{}", doc["_rev"]);
    ///         }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The request's errors (a missing document or revision is its entry's error).
    fn bulk_get(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
    ) -> impl Future<Output = Result<Vec<BulkGetResult>>> + Send {
        self.target().bulk_get(reqs, opts)
    }

    /// The changes feed as a stream: one item per changed document (its latest revision),
    /// in sequence order; with `live`, new changes as they happen, until the stream is
    /// dropped.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"})).await?;
    /// let mut feed = Box::pin(db.changes_stream(settee::ChangesFeed { live: true, ..Default::default() }));
    /// assert_eq!(feed.next().await.unwrap()?.id, "a");
    /// db.put(serde_json::json!({"_id": "b"})).await?;
    /// assert_eq!(feed.next().await.unwrap()?.id, "b"); // arrives as it is written
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// Items are `Err` for the peer's errors. A remote live feed yields an `Err` when its
    /// connection drops and then reconnects (after 1 s, doubling to 30 s while it keeps
    /// failing); it ends after an error that retrying cannot fix (credentials, a missing
    /// database). A local feed given a remote's sequence yields one `bad_request`.
    fn changes_stream(
        &self,
        feed: ChangesFeed,
    ) -> impl Stream<Item = Result<Change>> + Send + 'static {
        self.target().changes_stream(feed)
    }

    /// The documents matching a Mango query (`_find`), CouchDB's semantics on both kinds of
    /// database: a sort needs an index that serves it (`no_usable_index` otherwise); without
    /// a usable index the query scans everything and the answer's `warning` says so; pages
    /// continue with `bookmark`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use serde_json::json;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "a", "type": "task", "done": false})).await?;
    /// let req = settee::FindRequest::parse(&json!({"selector": {"type": "task"}}))?;
    /// let found = db.find(&req).await?;
    /// assert_eq!(found.docs[0]["_id"], "a");
    /// assert!(found.warning.unwrap().contains("No matching index"));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The query's errors (`no_usable_index`, `invalid_index`, `invalid_bookmark`), the
    /// peer's errors.
    fn find(&self, req: &FindRequest) -> impl Future<Output = Result<FindResponse>> + Send {
        self.target().find(req)
    }

    /// How [`Documents::find`] would run a query (`_explain`): the index, the range, the other
    /// candidates.
    ///
    /// # Errors
    /// As [`Documents::find`].
    fn explain(&self, req: &FindRequest) -> impl Future<Output = Result<Value>> + Send {
        self.target().explain(req)
    }

    /// Creates a JSON index (`POST /db/_index` with CouchDB's body, `{"index": {"fields":
    /// [...]}, "ddoc"?, "name"?}`); a local store builds it over its documents before this
    /// returns. The index is a design document, so it replicates.
    ///
    /// # Errors
    /// A bad definition (CouchDB's error names), the peer's errors.
    fn create_index(
        &self,
        index: &Value,
    ) -> impl Future<Output = Result<CreateIndexResponse>> + Send {
        self.target().create_index(index)
    }

    /// [`Documents::create_index`] with the progress of a local build (documents read so far, of
    /// how many), called after each batch. A server reports none.
    ///
    /// # Errors
    /// As [`Documents::create_index`].
    fn create_index_with_progress(
        &self,
        index: &Value,
        progress: impl FnMut(&IndexProgress) + Send + 'static,
    ) -> impl Future<Output = Result<CreateIndexResponse>> + Send {
        self.target().create_index_with_progress(index, progress)
    }

    /// The indexes (`GET /db/_index`), `_all_docs` first.
    ///
    /// # Errors
    /// The peer's errors.
    fn get_indexes(&self) -> impl Future<Output = Result<IndexList>> + Send {
        self.target().get_indexes()
    }

    /// Deletes an index (`DELETE /db/_index/{ddoc}/json/{name}`).
    ///
    /// # Errors
    /// `not_found` if there is no such index; the peer's errors.
    fn delete_index(&self, ddoc: &str, name: &str) -> impl Future<Output = Result<()>> + Send {
        self.target().delete_index(ddoc, name)
    }

    /// Resolves document `id`'s conflict: keeps one leaf ([`Resolution::Keep`]) or writes a
    /// merged body on top of the winner ([`Resolution::Merge`]), and deletes every other
    /// live leaf. A local store does it in one atomic write. A server gets one `_bulk_docs`
    /// request with the new revision and the tombstones; CouchDB applies the revisions of
    /// one document in that request together, and a leaf that changed meanwhile answers
    /// `conflict` (the other revisions of the request are then still written: resolve
    /// again). Returns the winner after it.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use serde_json::json;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "n", "title": "ours"})).await?;
    /// // A revision written elsewhere, replicated in (`new_edits=false`): a conflict.
    /// let store = db.store().unwrap();
    /// store.bulk_docs(vec![json!({"_id": "n", "_rev": "1-ffff", "title": "theirs"})], false)?;
    /// let winner = db.resolve_conflict("n", settee::Resolution::Merge(json!({"title": "both"}))).await?;
    /// let doc = db.get("n", &settee::ReadOptions { conflicts: true, ..Default::default() }).await?;
    /// assert_eq!(doc["title"], "both");
    /// assert_eq!(doc["_rev"], winner.to_string());
    /// assert!(doc.get("_conflicts").is_none());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `not_found`; `conflict` if a kept revision is not a live leaf or a leaf changed
    /// meanwhile; validation errors of the merged body; the peer's errors.
    fn resolve_conflict(
        &self,
        id: &str,
        resolution: Resolution,
    ) -> impl Future<Output = Result<Rev>> + Send {
        self.target().resolve_conflict(id, resolution)
    }

    /// Attachment `name` of document `id` (its winner, or `rev`), as a stream of bytes.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// let chunks = futures::stream::iter([Ok(bytes::Bytes::from_static(b"hello ")), Ok(bytes::Bytes::from_static(b"world"))]);
    /// let upload = settee::AttachmentUpload::new("a.txt", "text/plain", 11, Box::pin(chunks));
    /// db.put_attachment("n", None, upload).await?;
    /// let mut att = db.get_attachment("n", "a.txt", None).await?;
    /// let mut data = Vec::new();
    /// while let Some(chunk) = att.body.next().await {
    ///     data.extend_from_slice(&chunk.unwrap());
    /// }
    /// assert_eq!(data, b"hello world");
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `not_found` for a missing document, revision or attachment; the peer's errors.
    fn get_attachment(
        &self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> impl Future<Output = Result<AttachmentStream>> + Send {
        self.target().get_attachment(id, name, rev)
    }

    /// Adds (or replaces) an attachment of document `id` from a stream of bytes, as a new
    /// revision on top of `rev` (a new document with only the attachment when `rev` is
    /// `None` and the document does not exist). Returns the new revision. A server receives
    /// the bytes streamed (`multipart/related`, never base64); a local store keeps an
    /// attachment as one value, so it collects them first.
    ///
    /// # Errors
    /// `conflict` for a stale or missing `rev`; an I/O error of the stream, or a stream
    /// whose length differs from `upload.length` (as `bad_request`); the peer's errors.
    fn put_attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> impl Future<Output = Result<Rev>> + Send {
        self.target().put_attachment(id, rev, upload)
    }

    /// Adds (or replaces) attachment `name` of document `id` from any tokio `AsyncRead` (a
    /// file, a socket, a child's stdout), as a new revision on top of `rev` (a new document
    /// with only the attachment when `rev` is `None` and the document does not exist).
    /// Returns the new revision. A server receives the bytes streamed as they are read
    /// (`multipart/related`, never base64, never whole in memory), so it needs `length`
    /// up front; a local store takes `None` too.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use settee::Documents;
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("photo.jpg"), b"not really a jpeg")?;
    /// let db = settee::Local::open(dir.path().join("db"))?;
    /// let file = tokio::fs::File::open(dir.path().join("photo.jpg")).await?;
    /// let length = file.metadata().await?.len();
    /// let rev = db
    ///     .put_attachment_from("note:1", None, "photo.jpg", "image/jpeg", file, Some(length))
    ///     .await?;
    /// assert!(rev.to_string().starts_with("1-"));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `conflict` for a stale or missing `rev`; `bad_request` for a read error of `reader`,
    /// a reader that gives more or fewer bytes than `length`, or no `length` for a server;
    /// the peer's errors.
    fn put_attachment_from(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        content_type: &str,
        reader: impl tokio::io::AsyncRead + Send + Unpin + 'static,
        length: Option<u64>,
    ) -> impl Future<Output = Result<Rev>> + Send {
        self.target()
            .put_attachment_from(id, rev, name, content_type, reader, length)
    }

    /// Removes attachment `name` from document `id` at revision `rev` (a new revision
    /// without it; the document's other attachments are kept). Returns the new revision.
    ///
    /// # Errors
    /// `not_found` for a missing document or attachment, `conflict` for a stale `rev`, the
    /// database's errors.
    fn remove_attachment(
        &self,
        id: &str,
        rev: &Rev,
        name: &str,
    ) -> impl Future<Output = Result<Rev>> + Send {
        self.target().remove_attachment(id, rev, name)
    }

    /// Writes a typed document (a new one without `rev`, an edit of `rev` otherwise) and
    /// returns it with its new revision.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
    /// struct Note { title: String, tags: Vec<String> }
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
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
    fn put_doc<T: Serialize + Clone + Send + Sync>(
        &self,
        doc: &Doc<T>,
    ) -> impl Future<Output = Result<Doc<T>>> + Send {
        self.target().put_doc(doc)
    }

    /// Reads a typed document (its winning revision).
    ///
    /// # Errors
    /// `not_found` if it does not exist or is deleted (see [`Error::is_not_found`]);
    /// [`Error::Decode`] if it does not fit `T`; the peer's errors.
    fn get_doc<T: DeserializeOwned + Send>(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Doc<T>>> + Send {
        self.target().get_doc(id)
    }

    /// Reads a typed document as `opts` says: a given revision (`opts.rev`, a conflict's
    /// losing leaf included), with `_conflicts` (`opts.conflicts`, in [`Doc::conflicts`]).
    ///
    /// # Errors
    /// As [`Documents::get_doc`].
    fn get_doc_with<T: DeserializeOwned + Send>(
        &self,
        id: &str,
        opts: &ReadOptions,
    ) -> impl Future<Output = Result<Doc<T>>> + Send {
        self.target().get_doc_with(id, opts)
    }

    /// Every live leaf of a document, typed, the winner first: the versions a conflict
    /// holds (one element when there is no conflict). Merge them into the winner and
    /// write it with [`Documents::merge_conflict`].
    ///
    /// # Errors
    /// `not_found` for a missing or deleted document; [`Error::Decode`] for a leaf that
    /// does not fit `T`; the database's errors.
    fn leaves<T: DeserializeOwned + Send>(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<Doc<T>>>> + Send {
        self.target().leaves(id)
    }

    /// Ends a conflict with a typed merge: writes `merged`'s body as a new revision on top
    /// of the winner and deletes every other live leaf, in one atomic write on a local
    /// store ([`Documents::resolve_conflict`] with [`Resolution::Merge`]). Build `merged`
    /// from the winner [`Documents::leaves`] gives first, so that its attachments are the
    /// winner's. Returns it with its new revision.
    ///
    /// # Errors
    /// As [`Documents::resolve_conflict`].
    fn merge_conflict<T: Serialize + Clone + Send + Sync>(
        &self,
        merged: &Doc<T>,
    ) -> impl Future<Output = Result<Doc<T>>> + Send {
        self.target().merge_conflict(merged)
    }

    /// Deletes a typed document at its revision (a tombstone on `doc.rev`). Returns the
    /// tombstone's revision.
    ///
    /// # Errors
    /// `conflict` when `doc.rev` is not a leaf (or is missing), the database's errors.
    fn delete_doc<T: Sync>(&self, doc: &Doc<T>) -> impl Future<Output = Result<Rev>> + Send {
        self.target().delete_doc(&doc.id, doc.rev.as_ref())
    }

    /// Reads many typed documents by id in one request (`_all_docs` with `keys`), in the
    /// order asked: each one, or its error (`not_found` for a missing or deleted one,
    /// [`Error::Decode`] for one that does not fit `T`).
    ///
    /// # Errors
    /// The request's errors (a document's own error is its entry's).
    fn get_docs<T: DeserializeOwned + Send>(
        &self,
        ids: &[&str],
    ) -> impl Future<Output = Result<Vec<Result<Doc<T>>>>> + Send {
        self.target().get_docs(ids)
    }

    /// Writes many typed documents in one `_bulk_docs` request (one atomic batch on a local
    /// store): for each, the document with its new revision, or its error.
    ///
    /// # Errors
    /// The request's errors (a document's own rejection is its entry's).
    fn put_docs<T: Serialize + Clone + Send + Sync>(
        &self,
        docs: &[Doc<T>],
    ) -> impl Future<Output = Result<Vec<Result<Doc<T>>>>> + Send {
        self.target().put_docs(docs)
    }

    /// The documents matching a Mango query, typed (see [`Documents::find`]).
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use settee::Documents;
    /// use serde_json::json;
    /// #[derive(serde::Serialize, serde::Deserialize, Clone)]
    /// struct Note { notebook: String, updated_at: u64 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Local::open(dir.path().join("db"))?;
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
    /// As [`Documents::find`]; [`Error::Decode`] for a document that does not fit `T` (ask only
    /// for `fields` that `T` can hold, or none).
    fn find_docs<T: DeserializeOwned + Send>(
        &self,
        req: &FindRequest,
    ) -> impl Future<Output = Result<Found<T>>> + Send {
        self.target().find_docs(req)
    }

    /// The changes feed with each changed document typed (see
    /// [`Documents::changes_stream`]; `include_docs` is implied): a live view of `T`s. A
    /// deleted document comes with `doc: None`.
    ///
    /// # Errors
    /// As [`Documents::changes_stream`]; an item is [`Error::Decode`] for a document that
    /// does not fit `T`.
    fn changes_docs<T: DeserializeOwned + Send + 'static>(
        &self,
        feed: ChangesFeed,
    ) -> impl Stream<Item = Result<DocChange<T>>> + Send + 'static {
        self.target().changes_docs(feed)
    }

    /// Reads a `_local` document (`id` with or without its `_local/` prefix): data that
    /// never replicates, such as a device's own settings.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use serde_json::json;
    /// use settee::Documents;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let notes = settee::Local::open(dir.path().join("notes"))?;
    /// let written = notes.put_local(json!({"_id": "_local/device", "name": "laptop"})).await?;
    /// assert_eq!(written["rev"], "0-1");
    /// assert_eq!(notes.get_local("device").await?["name"], "laptop");
    /// notes.delete_local("device", "0-1").await?;
    /// assert_eq!(notes.get_local("device").await.unwrap_err().kind(), settee::ErrorKind::NotFound);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// `not_found` when there is none; the database's errors.
    fn get_local(&self, id: &str) -> impl Future<Output = Result<Value>> + Send {
        self.target().get_local(id)
    }

    /// Writes a `_local` document (`_id` with or without its prefix; `_rev` the current
    /// `0-N` to replace one). Answers `{"ok": true, "id", "rev"}`.
    ///
    /// # Errors
    /// `conflict` for a stale `_rev`; `bad_request` without an `_id`; the database's errors.
    fn put_local(&self, doc: Value) -> impl Future<Output = Result<Value>> + Send {
        self.target().put_local(doc)
    }

    /// Deletes a `_local` document at its current `rev` (`0-N`).
    ///
    /// # Errors
    /// `not_found`, `conflict`, the database's errors.
    fn delete_local(&self, id: &str, rev: &str) -> impl Future<Output = Result<()>> + Send {
        self.target().delete_local(id, rev)
    }
}
