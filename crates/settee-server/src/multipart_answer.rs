//! Multipart answers with attachment bytes streamed from the store as the response is
//! written: `multipart/related` for `GET /{db}/{docid}?attachments=true` and the
//! `multipart/mixed` answers of `open_revs` and `_bulk_get` (one part per revision, itself
//! `multipart/related` when bytes follow). A document is read with stubs, the attachments
//! to send become `follows` stubs (CouchDB's `atts_since` rule: [`Follows::mark`]), and
//! each one's bytes are read from a store reader opened when the answer reaches it, so
//! at most one chunk of them is in memory whatever their size. Attachments the store keeps
//! encoded (CouchDB's gzipped text) are sent as they are kept, as CouchDB sends them:
//! their `follows` stub says `encoding` and `encoded_length` beside the decoded `length`
//! and the encoded bytes' `digest`, their part says `Content-Encoding` and the encoded
//! `Content-Length`. Reading multipart requests is `multipart_put.rs`'s.
//!
//! An attachment whose revision is removed (compaction) while the answer is being written
//! cuts the answer short: the client sees a broken body, never other bytes.

use std::io;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use settee_revtree::{Rev, Revisions};

use crate::att_stream::{reader_stream, ByteStream, Segments};
use crate::registry::OpenDb;

/// One attachment whose bytes follow its document.
#[derive(Debug, Clone)]
struct Following {
    name: String,
    content_type: String,
    digest: String,
    /// The bytes sent: the encoded length of an encoded attachment.
    length: u64,
    /// How they are encoded (`gzip`), when they are.
    encoding: Option<String>,
    /// The attachment's length once decoded.
    decoded_length: u64,
}

/// Which attachments of a document read with stubs are sent, and what its JSON keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marking<'a> {
    /// Whether attachment bytes are sent at all.
    pub(crate) send: bool,
    /// CouchDB's `atts_since`: only attachments changed after the newest of these on the
    /// revision's path are sent (all when none is on it).
    pub(crate) atts_since: &'a [Rev],
    /// Whether the answer keeps `_revisions` (read for the `atts_since` rule anyway).
    pub(crate) keep_revisions: bool,
    /// Whether the stubs not sent keep `encoding` and `encoded_length` (the client asked
    /// `att_encoding_info`); the attachments sent always do, as CouchDB's do.
    pub(crate) keep_encoding_info: bool,
}

/// A document read with stubs, ready to be answered as `multipart/related`: its JSON with
/// `follows` stubs for the attachments in `files`, whose bytes come after it.
#[derive(Debug)]
pub(crate) struct Follows {
    doc: Value,
    files: Vec<Following>,
    /// Whether the client asked `att_encoding_info`.
    encoding_info: bool,
}

impl Follows {
    /// Marks which attachments of `doc` (read with stubs, `_revisions` and the encoding
    /// info) are sent, as `how` says.
    pub(crate) fn mark(mut doc: Value, how: &Marking<'_>) -> Follows {
        let since = since_pos(&doc, how.atts_since);
        if !how.keep_revisions {
            if let Some(m) = doc.as_object_mut() {
                m.remove("_revisions");
            }
        }
        let mut files = Vec::new();
        let atts = doc.get_mut("_attachments").and_then(Value::as_object_mut);
        for (name, stub) in atts.into_iter().flat_map(|a| a.iter_mut()) {
            let Some(stub) = stub.as_object_mut() else {
                continue;
            };
            let revpos = stub.get("revpos").and_then(Value::as_u64).unwrap_or(0);
            let (Some(length), Some(digest)) = (
                stub.get("length").and_then(Value::as_u64),
                stub.get("digest")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ) else {
                continue;
            };
            let encoding = stub
                .get("encoding")
                .and_then(Value::as_str)
                .filter(|e| *e != "identity")
                .map(str::to_owned);
            let encoded_length = stub.get("encoded_length").and_then(Value::as_u64);
            if !how.send || since.is_some_and(|s| revpos <= s) {
                if !how.keep_encoding_info {
                    stub.remove("encoding");
                    stub.remove("encoded_length");
                }
                continue;
            }
            let decoded_length = length;
            let length = match (&encoding, encoded_length) {
                (None, _) => length,
                (Some(_), Some(n)) => n,
                // An encoded stub without its encoded length is not the store's.
                (Some(_), None) => continue,
            };
            stub.remove("stub");
            stub.insert("follows".into(), Value::Bool(true));
            let content_type = stub
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_owned();
            files.push(Following {
                name: name.clone(),
                content_type,
                digest,
                length,
                encoding,
                decoded_length,
            });
        }
        Follows {
            doc,
            files,
            encoding_info: how.keep_encoding_info,
        }
    }

    /// The document's JSON with the attachments marked sent inline, as CouchDB's JSON
    /// answers have them (`content_type`, `digest`, `revpos`, the encoding info when
    /// asked, and `data`: the decoded bytes in base64); each `data` is a token from
    /// `token`, which `inline_answer.rs` replaces with the bytes streamed from the store.
    /// Returns the JSON and, for each token, the decoded bytes and their length.
    pub(crate) fn inline(
        self,
        open: &Arc<OpenDb>,
        token: &mut impl FnMut() -> String,
    ) -> (Value, Vec<(String, ByteStream, u64)>) {
        let Follows {
            mut doc,
            files,
            encoding_info,
        } = self;
        let id = str_of(&doc, "_id");
        let rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok());
        let mut out = Vec::with_capacity(files.len());
        let atts = doc.get_mut("_attachments").and_then(Value::as_object_mut);
        let Some(atts) = atts else {
            return (doc, out);
        };
        for f in files {
            let Some(stub) = atts.get_mut(&f.name).and_then(Value::as_object_mut) else {
                continue;
            };
            let t = token();
            stub.remove("follows");
            stub.remove("length");
            if !encoding_info {
                stub.remove("encoding");
                stub.remove("encoded_length");
            }
            stub.insert("data".into(), Value::String(t.clone()));
            let length = f.decoded_length;
            let bytes = attachment_stream(open.clone(), id.clone(), rev.clone(), f, true);
            out.push((t, bytes, length));
        }
        (doc, out)
    }

    /// Whether any attachment's bytes follow.
    pub(crate) fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// The document's JSON (with its `follows` stubs).
    pub(crate) fn doc(&self) -> &Value {
        &self.doc
    }

    /// Appends the `multipart/related` body of this document with `boundary` to `out`.
    fn write(self, open: &Arc<OpenDb>, boundary: &str, out: &mut Segments) {
        let id = str_of(&self.doc, "_id");
        let rev = self
            .doc
            .get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<Rev>().ok());
        out.bytes(format!(
            "--{boundary}\r\nContent-Type: application/json\r\n\r\n{}",
            self.doc
        ));
        for f in self.files {
            let encoding = f
                .encoding
                .as_deref()
                .map(|e| format!("Content-Encoding: {}\r\n", header_safe(e)))
                .unwrap_or_default();
            out.bytes(format!(
                "\r\n--{boundary}\r\nContent-Disposition: attachment; filename=\"{}\"\r\nContent-Type: {}\r\nContent-Length: {}\r\n{encoding}\r\n",
                f.name.replace('"', "\\\""),
                header_safe(&f.content_type),
                f.length
            ));
            let length = f.length;
            out.stream(
                attachment_stream(open.clone(), id.clone(), rev.clone(), f, false),
                length,
            );
        }
        out.bytes(format!("\r\n--{boundary}--"));
    }
}

/// The position of the newest of `atts_since` on the path `doc`'s `_revisions` gives.
fn since_pos(doc: &Value, atts_since: &[Rev]) -> Option<u64> {
    if atts_since.is_empty() {
        return None;
    }
    let revisions: Revisions = serde_json::from_value(doc.get("_revisions")?.clone()).ok()?;
    let path = revisions.to_path().ok()?;
    path.revs()
        .filter(|r| atts_since.contains(r))
        .map(|r| r.pos())
        .max()
}

fn str_of(doc: &Value, field: &str) -> String {
    doc.get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// A value that cannot break a header line (a stored content type is the writer's).
fn header_safe(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

/// The bytes of attachment `f` of `id` at `rev` as the store keeps them (encoded when it
/// keeps them encoded), or `decoded`, from a reader opened when the stream is first
/// polled; it must still be the attachment the stub announced (same digest and length),
/// else the stream fails.
fn attachment_stream(
    open: Arc<OpenDb>,
    id: String,
    rev: Option<Rev>,
    f: Following,
    decoded: bool,
) -> ByteStream {
    let length = if decoded { f.decoded_length } else { f.length };
    let stream = async_stream::try_stream! {
        let name = f.name.clone();
        let opener = open.clone();
        let reader = opener
            .run(move |db| {
                Ok(if decoded {
                    db.attachment_reader(&id, rev.as_ref(), &name)?
                } else {
                    db.attachment_reader_raw(&id, rev.as_ref(), &name)?
                })
            })
            .await
            .map_err(|e| io::Error::other(e.reason))?;
        if reader.digest() != f.digest || reader.length() != length {
            Err(io::Error::other(format!("attachment {:?} changed while it was being sent", f.name)))?;
        }
        let mut inner = reader_stream(open, reader, 0, length);
        while let Some(chunk) = futures::StreamExt::next(&mut inner).await {
            yield chunk?;
        }
    };
    Box::pin(stream)
}

fn new_boundary() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn multipart_response(kind: &str, boundary: &str, body: Segments) -> Response {
    let length = body.length();
    let mut res = Response::new(body.into_body());
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/{kind}; boundary=\"{boundary}\"")) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    res
}

/// A document with attachment bytes following it, as `multipart/related`.
pub(crate) fn doc_related(open: &Arc<OpenDb>, doc: Follows) -> Response {
    let boundary = new_boundary();
    let mut body = Segments::new();
    doc.write(open, &boundary, &mut body);
    multipart_response("related", &boundary, body)
}

/// One part of a `multipart/mixed` answer: a document or an error object.
pub(crate) enum MixedPart {
    Doc(Follows),
    Error(Value),
}

/// A `multipart/mixed` answer (`open_revs`, `_bulk_get`): a document with following bytes
/// becomes a `multipart/related` part, any other a JSON part, an error a JSON part marked
/// `error="true"`. Document parts name their id and rev (`X-Doc-Id`, `X-Rev-Id`), as
/// CouchDB's `_bulk_get` does.
pub(crate) fn mixed(open: &Arc<OpenDb>, parts: Vec<MixedPart>) -> Response {
    let boundary = new_boundary();
    let mut out = Segments::new();
    for part in parts {
        out.bytes(format!("--{boundary}\r\n"));
        match part {
            MixedPart::Doc(doc) => {
                let mut head = String::new();
                for (header, field) in [("X-Doc-Id", "_id"), ("X-Rev-Id", "_rev")] {
                    if let Some(v) = doc.doc.get(field).and_then(Value::as_str) {
                        if !v.contains(['\r', '\n']) {
                            head.push_str(&format!("{header}: {v}\r\n"));
                        }
                    }
                }
                if doc.has_files() {
                    let inner = new_boundary();
                    head.push_str(&format!(
                        "Content-Type: multipart/related; boundary=\"{inner}\"\r\n\r\n"
                    ));
                    out.bytes(head);
                    doc.write(open, &inner, &mut out);
                } else {
                    head.push_str("Content-Type: application/json\r\n\r\n");
                    head.push_str(&doc.doc.to_string());
                    out.bytes(head);
                }
            }
            MixedPart::Error(e) => {
                out.bytes(format!(
                    "Content-Type: application/json; error=\"true\"\r\n\r\n{e}"
                ));
            }
        }
        out.bytes(&b"\r\n"[..]);
    }
    out.bytes(format!("--{boundary}--"));
    multipart_response("mixed", &boundary, out)
}
