//! `_bulk_get` (or, for a server without it, one `open_revs` GET per revision) read as
//! `multipart/mixed`, as CouchDB's replicator reads revisions with attachments: each
//! document's JSON, then its attachments' bytes (only those newer than `atts_since`) as
//! streams over the same response, gzipped bytes left gzipped. [`MultipartDocs`] hands out
//! one [`MultipartDoc`] at a time; the wire reading is `multipart_mixed.rs`'s.
//!
//! What the server can do is learnt once per [`RemoteDb`] (and its clones): `_bulk_get` in
//! multipart (CouchDB 3), only `open_revs` in multipart, or neither (pouchdb-server answers
//! JSON to both): then [`RemoteDb::bulk_get_multipart`] answers `None` and the caller reads
//! with [`RemoteDb::bulk_get`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Method, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use settee_wire::{media_type, param};

use crate::attachments::{AttachmentEncoding, AttachmentUpload};
use crate::bulk_get::{bool_params, lacks_bulk_get, open_revs_url, UNSUPPORTED};
use crate::call::Call;
use crate::docs::is_missing_doc;
use crate::multipart_mixed::{lock, AttachmentPart, Item, Reader, Wire};
use crate::{
    BulkGetDoc, BulkGetError, BulkGetOptions, BulkGetRequest, Error, RedactedUrl, RemoteDb, Result,
};

/// Not yet learnt.
const UNKNOWN: u8 = 0;
/// `_bulk_get` answers in multipart.
const BULK_GET: u8 = 1;
/// `_bulk_get` does not, `open_revs` does.
const OPEN_REVS: u8 = 2;
/// `_bulk_get` does not; `open_revs` not yet asked.
const NOT_BULK_GET: u8 = 3;
/// Neither does.
const NONE: u8 = 4;

/// One document of a multipart answer: a revision (with its attachments' streams) or why
/// the server could not give it.
pub struct MultipartDoc {
    /// The index of the request item it answers (by position and id, as the server
    /// answers in request order); `None` for a part that answers none.
    pub request: Option<usize>,
    /// The document id.
    pub id: String,
    /// The revision's JSON text as the server sent it (its attachments newer than
    /// `atts_since` as stubs with `"follows": true`, the others `"stub": true`), or why it
    /// is missing.
    pub doc: BulkGetDoc<Box<RawValue>>,
    /// The `follows` attachments, in the order of their stubs, their bodies read from the
    /// answer: read each to its end before the next, and before asking for the next
    /// document (which skips what was left unread and makes these streams fail).
    pub attachments: Vec<AttachmentUpload>,
}

impl fmt::Debug for MultipartDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartDoc")
            .field("request", &self.request)
            .field("id", &self.id)
            .field("doc", &self.doc)
            .field("attachments", &self.attachments)
            .finish()
    }
}

/// The documents of a multipart `_bulk_get` (or of successive `open_revs` GETs), read one
/// at a time with [`MultipartDocs::next_doc`]. Memory holds one network read and one
/// document's JSON (up to the client's `max_response_size`), never a whole attachment.
pub struct MultipartDocs {
    shared: Arc<Mutex<Reader>>,
    reqs: Vec<BulkGetRequest>,
    /// `_bulk_get`: the next request item a part is expected to answer.
    cursor: usize,
    open_revs: Option<OpenRevs>,
    /// Documents read whole (an `open_revs` answer in JSON, a missing document).
    ready: VecDeque<MultipartDoc>,
    json_limit: u64,
    shown: RedactedUrl,
}

/// `open_revs` mode: one GET per request item, in order.
struct OpenRevs {
    db: RemoteDb,
    opts: BulkGetOptions,
    pending: VecDeque<usize>,
    /// The request item the current response answers.
    current: Option<usize>,
}

impl fmt::Debug for MultipartDocs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartDocs")
            .field("url", &self.shown)
            .field("requests", &self.reqs.len())
            .finish_non_exhaustive()
    }
}

/// What one `open_revs` GET answered.
enum Opened {
    /// Multipart: its documents come through the reader.
    Multipart,
    /// JSON (a server without multipart): the response, unread.
    Json(Response, usize),
    /// A missing document: its entry is ready.
    Ready,
}

/// The boundary of a `multipart/mixed` response; `None` for any other type.
fn mixed_boundary(resp: &Response) -> Option<String> {
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    (media_type(ct) == "multipart/mixed")
        .then(|| settee_wire::boundary(ct))
        .flatten()
}

fn accept_mixed() -> HeaderValue {
    HeaderValue::from_static("multipart/mixed")
}

impl RemoteDb {
    /// Whether the server answers `_bulk_get` or `open_revs` in `multipart/mixed`, as
    /// [`RemoteDb::bulk_get_multipart`] learnt it (shared by clones); `None` before it
    /// asked. No request is made.
    pub fn answers_multipart(&self) -> Option<bool> {
        match self.multipart_support.load(Ordering::Relaxed) {
            BULK_GET | OPEN_REVS => Some(true),
            NONE => Some(false),
            _ => None,
        }
    }

    /// `POST /{db}/_bulk_get` with `Accept: multipart/mixed`: the requested revisions, each
    /// with the bytes of its attachments newer than its `atts_since` as streams read from
    /// the response as the caller goes (set `opts.attachments`). A server whose `_bulk_get`
    /// does not answer multipart (404, 405, or JSON) is asked with one `open_revs` GET per
    /// item instead, one after the other; `None` when it answers neither in multipart (the
    /// caller then uses [`RemoteDb::bulk_get`]). Learnt once per `RemoteDb` and its clones.
    ///
    /// ```no_run
    /// # async fn demo(db: settee_couch::RemoteDb, reqs: Vec<settee_couch::BulkGetRequest>)
    /// #     -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::TryStreamExt;
    /// let opts = settee_couch::BulkGetOptions::REPLICATION;
    /// if let Some(mut docs) = db.bulk_get_multipart(&reqs, &opts).await? {
    ///     while let Some(doc) = docs.next_doc().await? {
    ///         for mut att in doc.attachments {
    ///             while let Some(chunk) = att.body.try_next().await? { /* ... */ }
    ///         }
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing database; [`Error::Transport`]; the reads then
    /// fail as [`MultipartDocs::next_doc`] says.
    pub async fn bulk_get_multipart(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
    ) -> Result<Option<MultipartDocs>> {
        let support = self.multipart_support.load(Ordering::Relaxed);
        if support == NONE {
            return Ok(None);
        }
        let json_limit = self.client.inner.max_response;
        let mut docs = MultipartDocs {
            shared: Arc::new(Mutex::new(Reader::new(
                None,
                Method::GET,
                self.url().clone(),
            ))),
            reqs: reqs.to_vec(),
            cursor: 0,
            open_revs: None,
            ready: VecDeque::new(),
            json_limit,
            shown: self.url().clone(),
        };
        if reqs.is_empty() {
            return Ok(Some(docs));
        }
        let bulk_get_known_absent = self.bulk_get_support.load(Ordering::Relaxed) == UNSUPPORTED;
        if matches!(support, UNKNOWN | BULK_GET) && !bulk_get_known_absent {
            #[derive(Serialize)]
            struct Request<'a> {
                docs: &'a [BulkGetRequest],
            }
            let mut url = self.join(&["_bulk_get"]);
            bool_params(&mut url, opts);
            let call = self
                .client
                .json_call(Method::POST, url, &Request { docs: reqs })?
                .idempotent()
                .header(ACCEPT, accept_mixed());
            let shown = RedactedUrl::new(&call.url);
            match self.client.send(call).await {
                Ok(resp) => match mixed_boundary(&resp) {
                    Some(b) => {
                        self.multipart_support.store(BULK_GET, Ordering::Relaxed);
                        let wire = Wire::new(
                            Box::pin(resp.bytes_stream()),
                            &b,
                            Method::POST,
                            shown.clone(),
                        );
                        docs.shared =
                            Arc::new(Mutex::new(Reader::new(Some(wire), Method::POST, shown)));
                        return Ok(Some(docs));
                    }
                    // The body (JSON) is dropped unread: this is asked once per server.
                    None => {
                        tracing::info!(url = %self.url(), "_bulk_get answers JSON to multipart/mixed; trying open_revs");
                    }
                },
                Err(e) if support == UNKNOWN && lacks_bulk_get(&e) => {
                    tracing::info!(url = %self.url(), error = %e, "no _bulk_get on this server; trying open_revs in multipart");
                }
                Err(e) => return Err(e),
            }
            self.multipart_support
                .store(NOT_BULK_GET, Ordering::Relaxed);
        }
        docs.open_revs = Some(OpenRevs {
            db: self.clone(),
            opts: *opts,
            pending: (0..reqs.len()).collect(),
            current: None,
        });
        // The first GET tells whether `open_revs` answers multipart.
        match docs.open_next().await? {
            Opened::Json(resp, i) => {
                if self.multipart_support.load(Ordering::Relaxed) != OPEN_REVS {
                    tracing::info!(url = %self.url(), "open_revs answers JSON to multipart/mixed; attachments come inline");
                    self.multipart_support.store(NONE, Ordering::Relaxed);
                    return Ok(None);
                }
                docs.read_json(resp, i).await?;
            }
            Opened::Multipart => self.multipart_support.store(OPEN_REVS, Ordering::Relaxed),
            Opened::Ready => {}
        }
        Ok(Some(docs))
    }
}

impl MultipartDocs {
    /// A reader of a `multipart/mixed` `_bulk_get` answer given as a byte stream (tests).
    #[cfg(test)]
    pub(crate) fn from_stream(
        body: crate::multipart_mixed::ByteStream,
        boundary: &str,
        reqs: Vec<BulkGetRequest>,
        json_limit: u64,
    ) -> MultipartDocs {
        let shown = RedactedUrl::new(&url::Url::parse("http://test.invalid/db").expect("a URL"));
        let wire = Wire::new(body, boundary, Method::POST, shown.clone());
        MultipartDocs {
            shared: Arc::new(Mutex::new(Reader::new(
                Some(wire),
                Method::POST,
                shown.clone(),
            ))),
            reqs,
            cursor: 0,
            open_revs: None,
            ready: VecDeque::new(),
            json_limit,
            shown,
        }
    }

    /// The next document, or `None` when the answer is complete. Attachments of the
    /// previous document that were not read are skipped (their streams then fail).
    ///
    /// # Errors
    /// [`Error::Transport`] when the connection fails; [`Error::InvalidResponse`] for an
    /// answer that is not multipart as CouchDB writes it, or that ends early (never a short
    /// document or attachment passed as whole); [`Error::ResponseTooLarge`] for a
    /// document's JSON beyond the client's `max_response_size`. After an error every later
    /// read fails.
    pub async fn next_doc(&mut self) -> Result<Option<MultipartDoc>> {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Ok(Some(d));
            }
            self.leave().await?;
            match self.item().await? {
                Item::Doc(h) => return self.read_doc(h).await.map(Some),
                Item::End => {
                    lock(&self.shared).wire = None;
                    let more = self
                        .open_revs
                        .as_ref()
                        .is_some_and(|o| !o.pending.is_empty());
                    if !more {
                        return Ok(None);
                    }
                    if let Opened::Json(resp, i) = self.open_next().await? {
                        self.read_json(resp, i).await?;
                    }
                }
                other => {
                    let mut r = lock(&self.shared);
                    let e = r.invalid(format!("expected a document part, found {}", other.name()));
                    return Err(r.fail(e));
                }
            }
        }
    }

    async fn item(&self) -> Result<Item> {
        futures::future::poll_fn(|cx| lock(&self.shared).poll_item(cx)).await
    }

    /// Leaves the current document: later reads of its attachments fail, and what is left
    /// of its part is skipped.
    async fn leave(&self) -> Result<()> {
        lock(&self.shared).doc_seq += 1;
        while lock(&self.shared).doc_open {
            if let Item::End = self.item().await? {
                break;
            }
        }
        let mut r = lock(&self.shared);
        r.doc_open = false;
        r.part_next = 0;
        r.in_part = false;
        Ok(())
    }

    /// The bytes of the current part (`nested`: the current nested part) up to its end.
    async fn collect(&self, nested: bool) -> Result<String> {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let bytes = match self.item().await? {
                Item::PartBytes(b) if nested => b,
                Item::DocBytes(b) if !nested => b,
                Item::PartEnd if nested => break,
                Item::DocEnd if !nested => break,
                other => {
                    let mut r = lock(&self.shared);
                    let e = r.invalid(format!(
                        "expected a document's JSON, found {}",
                        other.name()
                    ));
                    return Err(r.fail(e));
                }
            };
            if (buf.len() + bytes.len()) as u64 > self.json_limit {
                let mut r = lock(&self.shared);
                let e = Error::ResponseTooLarge {
                    method: Method::GET,
                    url: self.shown.clone(),
                    limit: self.json_limit,
                };
                return Err(r.fail(e));
            }
            buf.extend_from_slice(&bytes);
        }
        String::from_utf8(buf).map_err(|_| {
            let mut r = lock(&self.shared);
            let e = r.invalid("a document's JSON is not UTF-8");
            r.fail(e)
        })
    }

    fn not_json(&self, e: serde_json::Error) -> Error {
        let mut r = lock(&self.shared);
        let e = r.invalid(format!("a document's JSON does not parse: {e}"));
        r.fail(e)
    }

    /// Reads the document part whose headers are `h`.
    async fn read_doc(&mut self, h: settee_wire::PartHeaders) -> Result<MultipartDoc> {
        let ct = h.content_type().unwrap_or("application/json").to_owned();
        let header_id = h.get("x-doc-id").map(str::to_owned);
        if !media_type(&ct).starts_with("multipart/") {
            let text = self.collect(false).await?;
            return self.simple_doc(&ct, header_id, text);
        }
        match self.item().await? {
            Item::Part(_) => {}
            other => {
                let mut r = lock(&self.shared);
                let e = r.invalid(format!(
                    "a document's first nested part is missing, found {}",
                    other.name()
                ));
                return Err(r.fail(e));
            }
        }
        let text = self.collect(true).await?;
        let value: Value = serde_json::from_str(&text).map_err(|e| self.not_json(e))?;
        let id = header_id
            .or_else(|| value.get("_id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let request = self.pair(Some(&id));
        let doc_seq = {
            let mut r = lock(&self.shared);
            r.part_next = 1;
            r.doc_seq
        };
        let attachments = self.uploads(&value, doc_seq)?;
        let doc = RawValue::from_string(text).map_err(|e| self.not_json(e))?;
        Ok(MultipartDoc {
            request,
            id,
            doc: BulkGetDoc::Ok(doc),
            attachments,
        })
    }

    /// A document part that is JSON alone: a revision without attachment bytes, or (with
    /// `error="true"`) why a revision is missing.
    fn simple_doc(
        &mut self,
        content_type: &str,
        header_id: Option<String>,
        text: String,
    ) -> Result<MultipartDoc> {
        let value: Value = serde_json::from_str(&text).map_err(|e| self.not_json(e))?;
        let is_error = param(content_type, "error").as_deref() == Some("true")
            || value.get("_id").is_none()
                && (value.get("error").is_some() || value.get("missing").is_some());
        let named = header_id.or_else(|| {
            let key = if is_error { "id" } else { "_id" };
            value.get(key).and_then(Value::as_str).map(str::to_owned)
        });
        let request = self.pair(named.as_deref());
        let id = named
            .or_else(|| request.and_then(|i| self.reqs.get(i)).map(|r| r.id.clone()))
            .unwrap_or_default();
        let text_of = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let doc = if !is_error {
            BulkGetDoc::Ok(RawValue::from_string(text).map_err(|e| self.not_json(e))?)
        } else if let Some(missing) = value.get("missing") {
            BulkGetDoc::Missing(missing.as_str().and_then(|r| r.parse().ok()))
        } else {
            BulkGetDoc::Error(BulkGetError {
                id: id.clone(),
                rev: text_of("rev"),
                error: text_of("error").unwrap_or_else(|| "unknown_error".into()),
                reason: text_of("reason").unwrap_or_default(),
            })
        };
        Ok(MultipartDoc {
            request,
            id,
            doc,
            attachments: Vec::new(),
        })
    }

    /// Which request item a part for document `id` answers. `_bulk_get` answers in request
    /// order, one part per item (more for an item whose `latest` finds several leaves); an
    /// error part may name no id (CouchDB's names only the revision).
    fn pair(&mut self, id: Option<&str>) -> Option<usize> {
        if let Some(o) = &self.open_revs {
            return o.current;
        }
        let n = self.reqs.len();
        let Some(id) = id else {
            let at = self.cursor;
            self.cursor += 1;
            return (at < n).then_some(at);
        };
        if self.cursor < n && self.reqs[self.cursor].id == id {
            self.cursor += 1;
            return Some(self.cursor - 1);
        }
        if self.cursor > 0 && self.reqs.get(self.cursor - 1).is_some_and(|r| r.id == id) {
            return Some(self.cursor - 1);
        }
        let later = self.reqs.iter().skip(self.cursor).position(|r| r.id == id);
        match later {
            Some(j) => {
                self.cursor += j + 1;
                Some(self.cursor - 1)
            }
            None => self.reqs.iter().position(|r| r.id == id),
        }
    }

    /// An upload per `follows` stub of `value`, in the order of the stubs (the order of
    /// the parts after the JSON), each reading its nested part.
    fn uploads(&self, value: &Value, doc_seq: u64) -> Result<Vec<AttachmentUpload>> {
        let Some(atts) = value.get("_attachments").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, stub) in atts {
            if stub.get("follows").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let number = |k: &str| stub.get(k).and_then(Value::as_u64);
            let encoding = stub
                .get("encoding")
                .and_then(Value::as_str)
                .filter(|e| *e != "identity");
            let bad = |what: &str| {
                let mut r = lock(&self.shared);
                let e = r.invalid(format!("attachment {name}: its stub has no {what}"));
                r.fail(e)
            };
            let length = number("length").ok_or_else(|| bad("length"))?;
            let (sent, encoding) = match encoding {
                None => (length, None),
                Some(e) => (
                    number("encoded_length").ok_or_else(|| bad("encoded_length"))?,
                    Some(AttachmentEncoding {
                        encoding: e.to_owned(),
                        length,
                        digest: stub
                            .get("digest")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    }),
                ),
            };
            let part = AttachmentPart::new(
                self.shared.clone(),
                doc_seq,
                out.len() + 1,
                name.clone(),
                sent,
            );
            out.push(AttachmentUpload {
                name: name.clone(),
                content_type: stub
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                length: sent,
                body: Box::pin(part),
                encoding,
            });
        }
        Ok(out)
    }

    /// `open_revs` mode: sends the GET for the next pending request item.
    async fn open_next(&mut self) -> Result<Opened> {
        let Some(o) = self.open_revs.as_mut() else {
            return Ok(Opened::Ready);
        };
        let Some(i) = o.pending.pop_front() else {
            return Ok(Opened::Ready);
        };
        o.current = Some(i);
        let req = &self.reqs[i];
        let url = open_revs_url(&o.db, req, &o.opts);
        let shown = RedactedUrl::new(&url);
        let call = Call::new(Method::GET, url).header(ACCEPT, accept_mixed());
        match o.db.client.send(call).await {
            Ok(resp) => match mixed_boundary(&resp) {
                Some(b) => {
                    let wire = Wire::new(
                        Box::pin(resp.bytes_stream()),
                        &b,
                        Method::GET,
                        shown.clone(),
                    );
                    *lock(&self.shared) = Reader::new(Some(wire), Method::GET, shown);
                    Ok(Opened::Multipart)
                }
                None => Ok(Opened::Json(resp, i)),
            },
            // A document that does not exist at all: one entry, like _bulk_get's.
            Err(Error::NotFound(f)) if is_missing_doc(f.reason()) => {
                self.ready.push_back(MultipartDoc {
                    request: Some(i),
                    id: req.id.clone(),
                    doc: BulkGetDoc::Error(BulkGetError {
                        id: req.id.clone(),
                        rev: req.rev.as_ref().map(ToString::to_string),
                        error: f.error().to_owned(),
                        reason: f.reason().to_owned(),
                    }),
                    attachments: Vec::new(),
                });
                Ok(Opened::Ready)
            }
            Err(e) => Err(e),
        }
    }

    /// An `open_revs` answer in JSON (`[{"ok": doc}, {"missing": rev}]`, attachments inline):
    /// its entries become ready documents without attachment streams.
    async fn read_json(&mut self, resp: Response, i: usize) -> Result<()> {
        let shown = RedactedUrl::new(resp.url());
        let bytes = crate::answer::read_body(resp, self.json_limit, &Method::GET, &shown).await?;
        let entries: Vec<Value> =
            serde_json::from_slice(&bytes).map_err(|e| Error::invalid(&Method::GET, &shown, e))?;
        let id = self.reqs[i].id.clone();
        for entry in entries {
            let doc = match BulkGetDoc::from_json(entry) {
                BulkGetDoc::Ok(v) => BulkGetDoc::Ok(
                    serde_json::value::to_raw_value(&v)
                        .map_err(|e| Error::invalid(&Method::GET, &shown, e))?,
                ),
                BulkGetDoc::Missing(r) => BulkGetDoc::Missing(r),
                BulkGetDoc::Error(e) => BulkGetDoc::Error(e),
            };
            self.ready.push_back(MultipartDoc {
                request: Some(i),
                id: id.clone(),
                doc,
                attachments: Vec::new(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "bulk_get_multipart_tests.rs"]
mod tests;
