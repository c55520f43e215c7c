//! Attachments: a document with large attachments uploaded as one streamed
//! `multipart/related` `PUT`, and raw attachment reads, whole or as a stream
//! ([`AttachmentStream`]). Inline (base64) attachments need nothing here: they are part of
//! the JSON body (`GetOptions::attachments`).

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;
use serde_json::Value;

use crate::call::{Body, Call};
use crate::docs::PutResponse;
use crate::ids::encode_segment;
use crate::{Error, RemoteDb, Result, Rev};

/// An attachment's bytes, as a stream so that large ones are never held in memory.
pub type AttachmentBody = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// An attachment to upload with [`RemoteDb::put_multipart`].
pub struct AttachmentUpload {
    /// Its name in `_attachments`.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// The exact number of bytes `body` gives (CouchDB needs it in the document's stub):
    /// the attachment's length, or its encoded length when `encoding` is set.
    pub length: u64,
    /// Its bytes (encoded as `encoding` says, when set).
    pub body: AttachmentBody,
    /// Set when `body` gives the attachment as its source keeps it encoded (CouchDB keeps
    /// `text/*` and JSON-like types gzipped and names them by the digest of those bytes);
    /// `None` for the attachment's own bytes.
    pub encoding: Option<AttachmentEncoding>,
}

/// How an [`AttachmentUpload`]'s bytes are encoded, as CouchDB's stubs say with
/// `att_encoding_info`: the bytes are `encoding` (`"gzip"`), the attachment itself is
/// `length` bytes once decoded, and `digest` is that of the encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentEncoding {
    /// The encoding's name, `"gzip"`.
    pub encoding: String,
    /// The attachment's length once decoded.
    pub length: u64,
    /// The digest of the encoded bytes (`md5-<base64>`), as the source names them.
    pub digest: String,
}

impl AttachmentUpload {
    /// An attachment of `length` bytes (not encoded) read from `body`.
    pub fn new(
        name: impl Into<String>,
        content_type: impl Into<String>,
        length: u64,
        body: AttachmentBody,
    ) -> Self {
        AttachmentUpload {
            name: name.into(),
            content_type: content_type.into(),
            length,
            body,
            encoding: None,
        }
    }

    /// An attachment from bytes in memory.
    pub fn from_bytes(
        name: impl Into<String>,
        content_type: impl Into<String>,
        data: Bytes,
    ) -> Self {
        AttachmentUpload {
            name: name.into(),
            content_type: content_type.into(),
            length: data.len() as u64,
            body: Box::pin(futures::stream::once(async move { Ok(data) })),
            encoding: None,
        }
    }
}

/// An attachment read as a stream ([`RemoteDb::attachment`]; a local store's reads give the
/// same type through the facade): its type, its length when known, and its bytes.
pub struct AttachmentStream {
    /// Its MIME type (`None` when a server does not say).
    pub content_type: Option<String>,
    /// Its length in bytes, when known before reading (a server that sends it gzipped, or
    /// chunked, does not say).
    pub length: Option<u64>,
    /// Its bytes.
    pub body: AttachmentBody,
}

impl fmt::Debug for AttachmentStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentStream")
            .field("content_type", &self.content_type)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AttachmentUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentUpload")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("length", &self.length)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl RemoteDb {
    /// `PUT /{db}/{id}` as `multipart/related`: the document's JSON, then each attachment's
    /// bytes streamed from its [`AttachmentBody`] (CouchDB's "Creating Multiple Attachments",
    /// and the replication protocol's way to push large attachments). `doc`'s
    /// `_attachments` get a `{"follows": true, "content_type", "length"}` stub per upload (an
    /// entry already there keeps its `revpos`, `digest` and `encoding`).
    /// With `new_edits = false`, `doc` must carry `_rev` and `_revisions`.
    ///
    /// The body is streamed, so the request is never retried.
    ///
    /// # Errors
    /// [`Error::Conflict`]; [`Error::TooLarge`]; [`Error::BadRequest`];
    /// [`Error::InvalidArgument`] if `doc` is not a JSON object; [`Error::Transport`].
    pub async fn put_multipart(
        &self,
        id: &str,
        doc: &Value,
        attachments: Vec<AttachmentUpload>,
        new_edits: bool,
    ) -> Result<PutResponse> {
        let mut url = self.doc_url(id);
        if !new_edits {
            url.query_pairs_mut().append_pair("new_edits", "false");
        }
        let mut doc = doc.clone();
        let Some(obj) = doc.as_object_mut() else {
            return Err(Error::InvalidArgument {
                reason: "the document is not a JSON object".into(),
            });
        };
        // pouchdb-server requires the id in the body of a multipart PUT; CouchDB accepts it.
        obj.insert("_id".into(), Value::from(id));
        let atts = obj
            .entry("_attachments")
            .or_insert_with(|| Value::Object(Default::default()));
        let Some(atts) = atts.as_object_mut() else {
            return Err(Error::InvalidArgument {
                reason: "_attachments is not an object".into(),
            });
        };
        for a in &attachments {
            // A stub already in the document keeps its other members: a replicated
            // revision's `revpos` and `digest` must reach the target as the source has them.
            let stub = atts
                .entry(a.name.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            if !stub.is_object() {
                *stub = Value::Object(Default::default());
            }
            if let Some(stub) = stub.as_object_mut() {
                stub.remove("stub");
                stub.remove("data");
                stub.insert("follows".into(), Value::Bool(true));
                stub.insert("content_type".into(), Value::from(a.content_type.clone()));
                match &a.encoding {
                    None => {
                        stub.insert("length".into(), Value::from(a.length));
                        stub.remove("encoding");
                        stub.remove("encoded_length");
                    }
                    // Encoded bytes go with what CouchDB needs to keep them as they are.
                    Some(e) => {
                        stub.insert("length".into(), Value::from(e.length));
                        stub.insert("encoding".into(), Value::from(e.encoding.clone()));
                        stub.insert("encoded_length".into(), Value::from(a.length));
                        stub.insert("digest".into(), Value::from(e.digest.clone()));
                    }
                }
            }
        }
        let json =
            serde_json::to_vec(&doc).map_err(|e| Error::invalid(&Method::PUT, self.url(), e))?;
        let boundary = format!("settee-{:032x}", rand::random::<u128>());

        // Parts: the JSON first, then the attachments in the order of their stubs, which is
        // how CouchDB matches them. The Content-Disposition filename is what pouchdb-server
        // (multiparty) matches them by; CouchDB ignores it.
        let mut head =
            format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n").into_bytes();
        head.extend_from_slice(&json);
        let mut length = head.len() as u64;
        let mut parts: Vec<AttachmentBody> = vec![once(Bytes::from(head))];
        for a in attachments {
            let name = a.name.replace(['"', '\r', '\n'], "_");
            let part_head = format!(
                "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Length: {}\r\n\r\n",
                a.content_type, a.length
            );
            length += part_head.len() as u64 + a.length;
            parts.push(once(Bytes::from(part_head)));
            parts.push(a.body);
        }
        let tail = format!("\r\n--{boundary}--\r\n");
        length += tail.len() as u64;
        parts.push(once(Bytes::from(tail)));
        let stream = futures::stream::iter(parts).flatten();
        let body = Body::Stream {
            body: reqwest::Body::wrap_stream(stream),
            content_type: format!("multipart/related; boundary=\"{boundary}\""),
            length,
        };
        let shown = crate::RedactedUrl::new(&url);
        let given_rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok());
        let answer: Value = self
            .client
            .send_json(Call::new(Method::PUT, url).body(body))
            .await?;
        match serde_json::from_value::<PutResponse>(answer.clone()) {
            Ok(resp) => Ok(resp),
            // pouchdb-server answers a new_edits=false PUT like _bulk_docs does: `[]`.
            Err(_) if !new_edits && answer == Value::Array(vec![]) => match given_rev {
                Some(rev) => Ok(PutResponse {
                    id: id.to_owned(),
                    rev,
                }),
                None => Err(Error::invalid(
                    &Method::PUT,
                    &shown,
                    "no _rev in the answer or the doc",
                )),
            },
            Err(e) => Err(Error::invalid(&Method::PUT, &shown, e)),
        }
    }

    /// `GET /{db}/{id}/{name}`: an attachment's bytes, whole (decoded if the server gzipped
    /// them). [`RemoteDb::attachment`] reads one as a stream.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Transport`]; [`Error::ResponseTooLarge`] beyond the
    /// client's `max_response_size`.
    pub async fn get_attachment(&self, id: &str, name: &str, rev: Option<&Rev>) -> Result<Bytes> {
        let call = self.attachment_call(id, name, rev);
        self.client.send_bytes(call).await
    }

    /// `GET /{db}/{id}/{name}` read as a stream: memory holds one chunk of the body at a
    /// time, whatever the attachment's size (decoded if the server gzipped it). The type
    /// and length come from the response's headers.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::TryStreamExt;
    /// let db = settee_couch::RemoteDb::from_url("http://127.0.0.1:5984/notes")?;
    /// let mut att = db.attachment("note:1", "image.png", None).await?;
    /// let mut file = std::fs::File::create("image.png")?;
    /// while let Some(chunk) = att.body.try_next().await? {
    ///     std::io::Write::write_all(&mut file, &chunk)?; // one chunk in memory at a time
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Transport`]. A connection that fails while the body is
    /// read ends the stream with an `std::io::Error` whose source is the [`Error`] (its URL
    /// redacted).
    pub async fn attachment(
        &self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<AttachmentStream> {
        let call = self.attachment_call(id, name, rev);
        let shown = crate::RedactedUrl::new(&call.url);
        let resp = self.client.send(call).await?;
        let headers = resp.headers();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // reqwest removes Content-Length when it decodes a gzipped body, so a length here
        // is the length of the bytes the stream gives.
        let length = resp.content_length();
        let body = resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| std::io::Error::other(Error::transport(&Method::GET, &shown, e)))
        });
        Ok(AttachmentStream {
            content_type,
            length,
            body: Box::pin(body),
        })
    }

    /// `GET /{db}/{id}/{name}`: only the bytes of [`RemoteDb::attachment`], as they arrive.
    ///
    /// # Errors
    /// As [`RemoteDb::attachment`].
    pub async fn attachment_stream(
        &self,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
    ) -> Result<AttachmentBody> {
        Ok(self.attachment(id, name, rev).await?.body)
    }

    fn attachment_call(&self, id: &str, name: &str, rev: Option<&Rev>) -> Call {
        let mut url = self.doc_url(id);
        let path = format!("{}/{}", url.path(), encode_segment(name));
        url.set_path(&path);
        if let Some(rev) = rev {
            url.query_pairs_mut().append_pair("rev", &rev.to_string());
        }
        Call::new(Method::GET, url).header(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("*/*"),
        )
    }
}

fn once(bytes: Bytes) -> AttachmentBody {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}
