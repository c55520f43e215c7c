//! Attachments as byte streams, local or remote: reading one without base64 (a server's body
//! streamed as it arrives), and adding one from a stream or an `AsyncRead` (a server
//! receives it streamed in a `multipart/related` request). A local store keeps an attachment
//! as one value today, so its reads and writes go through `store_read` and `store_write`
//! alone, the two places to switch when the store streams.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use settee_couch::{AttachmentUpload, RemoteDb};
use settee_revtree::Rev;
use settee_store::Database;
use tokio::io::AsyncRead;

use super::{blocking, Target};
use crate::{Error, Result};

/// An attachment read by [`crate::Documents::get_attachment`]: its type, its length when
/// known, and its bytes as a stream.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::TryStreamExt;
/// use settee::Documents;
/// # let dir = tempfile::tempdir()?;
/// let notes = settee::Local::open(dir.path().join("notes"))?;
/// let file: &[u8] = b"hello"; // any tokio AsyncRead: a file, a socket
/// notes.put_attachment_from("note:1", None, "a.txt", "text/plain", file, Some(5)).await?;
/// let att: settee::AttachmentStream = notes.get_attachment("note:1", "a.txt", None).await?;
/// assert_eq!(att.content_type.as_deref(), Some("text/plain"));
/// let data: Vec<bytes::Bytes> = att.body.try_collect().await?;
/// assert_eq!(data.concat(), b"hello");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub use settee_couch::AttachmentStream;

impl Target {
    pub(crate) async fn get_attachment(
        self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<AttachmentStream> {
        match &self {
            Target::Store(d) => store_read(d, id, name, rev).await,
            Target::Http(r) => Ok(r.attachment(id, name, rev).await?),
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
                    body,
                    encoding,
                } = upload;
                if encoding.is_some() {
                    return Err(Error::BadRequest(format!(
                        "attachment {name:?} of {id:?}: a local write takes the attachment's own \
                         bytes, not an encoded copy"
                    )));
                }
                let reader = tokio_util::io::StreamReader::new(body);
                store_write(d, id, rev, &name, &content_type, reader, Some(length)).await
            }
            Target::Http(r) => http_write(r, id, rev, upload).await,
        }
    }

    pub(crate) async fn put_attachment_from(
        self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        content_type: &str,
        reader: impl AsyncRead + Send + Unpin + 'static,
        length: Option<u64>,
    ) -> Result<Rev> {
        match &self {
            Target::Store(d) => store_write(d, id, rev, name, content_type, reader, length).await,
            Target::Http(r) => {
                // CouchDB needs each attachment's length in the document's stub, before the
                // bytes; a reader of unknown length would have to be spooled first.
                let length = length.ok_or_else(|| {
                    Error::BadRequest(format!(
                        "attachment {name:?} of {id:?}: a server needs the length up front; \
                         give it, or write the bytes to a file first"
                    ))
                })?;
                let body = ExactLength {
                    inner: Mutex::new(tokio_util::io::ReaderStream::new(reader)),
                    expected: length,
                    seen: 0,
                };
                let upload = AttachmentUpload::new(name, content_type, length, Box::pin(body));
                http_write(r, id, rev, upload).await
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

/// A local store's attachment, read a chunk at a time (`Database::attachment_reader`): one
/// chunk (at most `settee_store::CHUNK_SIZE`) is in memory at once, each read on the blocking
/// pool.
async fn store_read(
    d: &Database,
    id: &str,
    name: &str,
    rev: Option<&Rev>,
) -> Result<AttachmentStream> {
    let (id, name, rev) = (id.to_owned(), name.to_owned(), rev.cloned());
    let reader = blocking(d, move |d| d.attachment_reader(&id, rev.as_ref(), &name)).await?;
    let (content_type, length) = (reader.content_type().to_owned(), reader.length());
    Ok(AttachmentStream {
        content_type: Some(content_type),
        length: Some(length),
        body: settee_replicate::chunk_stream(reader),
    })
}

/// A local store's attachment, written from `reader` as a new revision, streamed into the
/// store's chunks (`Database::put_attachment_from` on the blocking pool, through
/// `SyncIoBridge`): the bytes are never all in memory.
async fn store_write(
    d: &Database,
    id: &str,
    rev: Option<&Rev>,
    name: &str,
    content_type: &str,
    reader: impl AsyncRead + Send + Unpin + 'static,
    length: Option<u64>,
) -> Result<Rev> {
    let counted = Counted {
        inner: tokio_util::io::SyncIoBridge::new(reader),
        read: 0,
        expected: length,
    };
    let (id2, rev, name2, content_type) = (
        id.to_owned(),
        rev.cloned(),
        name.to_owned(),
        content_type.to_owned(),
    );
    let db = d.clone();
    let (res, read) = tokio::task::spawn_blocking(move || {
        let mut counted = counted;
        let res = db.put_attachment_from(&id2, rev.as_ref(), &name2, &content_type, &mut counted);
        (res, counted.read)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    if let Some(length) = length.filter(|l| *l != read) {
        // The reader failed the write before anything was committed (see `Counted`).
        return Err(Error::BadRequest(format!(
            "attachment {name:?} of {id:?}: the stream gave {read} bytes, the upload said {length}; nothing was written"
        )));
    }
    res?.rev
        .ok_or_else(|| Error::BadRequest(format!("no revision written for {id}")))
}

/// A reader that counts what it gave, and fails (so that the store commits nothing) when
/// that is not the `expected` length: more bytes as soon as they come, fewer at the end.
struct Counted<R> {
    inner: R,
    read: u64,
    expected: Option<u64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        match self.expected {
            Some(e) if self.read > e || (n == 0 && self.read != e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the stream gave {} bytes, the upload said {e}", self.read),
            )),
            _ => Ok(n),
        }
    }
}

/// An attachment written to a server: the document as it is (its other attachments as
/// stubs), then one streamed `multipart/related` `PUT`.
async fn http_write(
    r: &RemoteDb,
    id: &str,
    rev: Option<&Rev>,
    upload: AttachmentUpload,
) -> Result<Rev> {
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

/// A reader's bytes as an attachment body: exactly `expected` of them (a reader that gives
/// more or fewer ends in an error before the server could store a wrong attachment), and
/// `Sync` as [`settee_couch::AttachmentBody`] needs without asking the reader to be: the
/// stream is only ever reached through `&mut`, so the mutex is never locked.
struct ExactLength<S> {
    inner: Mutex<S>,
    expected: u64,
    seen: u64,
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for ExactLength<S> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = this
            .inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let polled = inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.expected {
                    return Poll::Ready(Some(Err(std::io::Error::other(format!(
                        "the reader gave more than the {} bytes announced",
                        this.expected
                    )))));
                }
            }
            Poll::Ready(None) if this.seen != this.expected => {
                let seen = std::mem::replace(&mut this.seen, this.expected);
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the reader ended after {seen} of the {} bytes announced",
                        this.expected
                    ),
                ))));
            }
            _ => {}
        }
        polled
    }
}
