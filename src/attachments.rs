//! Attachments as byte streams, local or remote: reading one without base64, and adding one
//! from a stream (a server receives it streamed in a `multipart/related` request; a local
//! store, which keeps an attachment as one value, collects it first).

use bytes::Bytes;
use futures::StreamExt;
use settee_couch::{AttachmentBody, AttachmentUpload};
use settee_revtree::Rev;

use crate::db::blocking;
use crate::owned::HeldStore;
use crate::{Db, Error, Result};

/// An attachment read by [`Db::get_attachment`]: its type and its bytes as a stream.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::TryStreamExt;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Db::open(path)?;
/// let chunks = futures::stream::iter([Ok(bytes::Bytes::from_static(b"hello"))]);
/// let upload = settee::AttachmentUpload {
///     name: "a.txt".into(),
///     content_type: "text/plain".into(),
///     length: 5,
///     body: Box::pin(chunks),
/// };
/// notes.put_attachment("note:1", None, upload).await?;
/// let att: settee::AttachmentStream = notes.get_attachment("note:1", "a.txt", None).await?;
/// assert_eq!(att.content_type.as_deref(), Some("text/plain"));
/// let data: Vec<bytes::Bytes> = att.body.try_collect().await?;
/// assert_eq!(data.concat(), b"hello");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct AttachmentStream {
    /// Its MIME type (`None` when a server does not say).
    pub content_type: Option<String>,
    /// Its bytes.
    pub body: AttachmentBody,
}

impl std::fmt::Debug for AttachmentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentStream")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Attachment `name` of document `id` (its winner, or `rev`), as a stream of bytes.
    ///
    /// ```
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = settee::Db::open(dir.path().join("db").to_str().unwrap())?;
    /// let chunks = futures::stream::iter([Ok(bytes::Bytes::from_static(b"hello ")), Ok(bytes::Bytes::from_static(b"world"))]);
    /// let upload = settee::AttachmentUpload { name: "a.txt".into(), content_type: "text/plain".into(), length: 11, body: Box::pin(chunks) };
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
    pub async fn get_attachment(
        &self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<AttachmentStream> {
        match self {
            Db::Local(d) => {
                let (id, name, rev) = (id.to_owned(), name.to_owned(), rev.cloned());
                let att = blocking(d, move |d| d.attachment(&id, rev.as_ref(), &name)).await?;
                let data = Bytes::from(att.data);
                Ok(AttachmentStream {
                    content_type: Some(att.content_type),
                    body: Box::pin(futures::stream::once(async move { Ok(data) })),
                })
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                let data = r.get_attachment(id, name, rev).await?;
                Ok(AttachmentStream {
                    content_type: None,
                    body: Box::pin(futures::stream::once(async move { Ok(data) })),
                })
            }
        }
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
    pub async fn put_attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<Rev> {
        match self {
            Db::Local(d) => {
                let AttachmentUpload {
                    name,
                    content_type,
                    length,
                    mut body,
                } = upload;
                let mut data = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| {
                        Error::BadRequest(format!("reading attachment {name}: {e}"))
                    })?;
                    data.extend_from_slice(&chunk);
                }
                if data.len() as u64 != length {
                    return Err(Error::BadRequest(format!(
                        "attachment {name}: the stream gave {} bytes, the upload said {length}",
                        data.len()
                    )));
                }
                let (id2, rev) = (id.to_owned(), rev.cloned());
                let res = blocking(d, move |d| {
                    d.put_attachment(&id2, rev.as_ref(), &name, &content_type, data)
                })
                .await?;
                res.rev
                    .ok_or_else(|| Error::BadRequest(format!("no revision written for {id}")))
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                // The document as it is (its other attachments as stubs), then the upload.
                let mut doc = match rev {
                    Some(rev) => {
                        let opts = settee_couch::GetOptions {
                            rev: Some(rev.clone()),
                            ..Default::default()
                        };
                        r.get(id, &opts).await?
                    }
                    None => serde_json::json!({"_id": id}),
                };
                if let Some(atts) = doc.get_mut("_attachments").and_then(|a| a.as_object_mut()) {
                    atts.remove(&upload.name);
                }
                let res = r.put_multipart(id, &doc, vec![upload], true).await?;
                Ok(res.rev)
            }
        }
    }
}
