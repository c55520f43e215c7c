//! Attachments as byte streams, local or remote: reading one without base64, and adding one
//! from a stream (a server receives it streamed in a `multipart/related` request; a local
//! store, which keeps an attachment as one value, collects it first).

use bytes::Bytes;
use futures::StreamExt;
use settee_couch::{AttachmentBody, AttachmentUpload};
use settee_revtree::Rev;

use super::{blocking, Target};
use crate::{Error, Result};

/// An attachment read by [`crate::Documents::get_attachment`]: its type and its bytes as a stream.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::TryStreamExt;
/// use settee::Documents;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Local::open(path)?;
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

impl Target {
    pub(crate) async fn get_attachment(
        self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<AttachmentStream> {
        match &self {
            Target::Store(d) => {
                let (id, name, rev) = (id.to_owned(), name.to_owned(), rev.cloned());
                let att = blocking(d, move |d| d.attachment(&id, rev.as_ref(), &name)).await?;
                let data = Bytes::from(att.data);
                Ok(AttachmentStream {
                    content_type: Some(att.content_type),
                    body: Box::pin(futures::stream::once(async move { Ok(data) })),
                })
            }
            Target::Http(r) => {
                let data = r.get_attachment(id, name, rev).await?;
                Ok(AttachmentStream {
                    content_type: None,
                    body: Box::pin(futures::stream::once(async move { Ok(data) })),
                })
            }
        }
    }

    pub(crate) async fn put_attachment(
        self,
        id: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<Rev> {
        match &self {
            Target::Store(d) => {
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
            Target::Http(r) => {
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

    pub(crate) async fn remove_attachment(self, id: &str, rev: &Rev, name: &str) -> Result<Rev> {
        let opts = crate::ReadOptions {
            rev: Some(rev.clone()),
            ..Default::default()
        };
        let mut doc = self.clone().get(id, &opts).await?;
        let removed = doc
            .get_mut("_attachments")
            .and_then(|a| a.as_object_mut())
            .and_then(|atts| atts.shift_remove(name));
        if removed.is_none() {
            return Err(Error::Store(settee_store::Error::NotFound {
                id: id.to_owned(),
                reason: format!("document {id} at {rev} has no attachment {name:?}"),
            }));
        }
        if let Some(map) = doc.as_object_mut() {
            if map
                .get("_attachments")
                .and_then(|a| a.as_object())
                .is_some_and(|a| a.is_empty())
            {
                map.shift_remove("_attachments");
            }
        }
        let res = self.put(doc).await?;
        res.get("rev")
            .and_then(serde_json::Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok())
            .ok_or_else(|| Error::BadRequest(format!("no revision in the answer for {id}")))
    }
}
