//! A `multipart/related` document read as it arrives (`PUT /{db}/{docid}`, as CouchDB's
//! and Settee's replicators send a revision with its attachments): the body goes through
//! `settee_wire`'s incremental parser; the JSON part is bounded by the body limit; each
//! part belongs to the next attachment marked `"follows": true` (or the one its file
//! name names), and its bytes are checked against the stub's length as they come: a
//! part longer than announced is refused at the byte that passes it, a shorter one at
//! its end, and a body that ends before its closing boundary is refused too (400, nothing
//! written). [`RelatedReader`] is the reading without I/O (the fuzz target's too): it
//! hands out each part as [`Step`]s, which either go to the store as they come
//! (`multipart_staged.rs`, for a replicated revision) or are collected here and put
//! inline as base64 `data` ([`read_related_inline`], within the body limit in all: the
//! store has no call that writes an edit, `new_edits=true`, with staged attachments).

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Map, Value};
use settee_wire::{MultipartEvent, MultipartParser, PartHeaders};

use crate::error::HttpError;
use crate::stage::{self, Fault};

pub(crate) fn malformed(what: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("malformed multipart body: {what}"))
}

/// One attachment marked `follows`: what its stub says of the part that brings it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// The attachment's name.
    pub(crate) name: String,
    /// The bytes its part must have (`encoded_length`, or `length` when not encoded),
    /// when the stub says.
    pub(crate) announced: Option<u64>,
    /// The stub's `encoding` (`None` for none or `identity`).
    pub(crate) encoding: Option<String>,
    /// The stub's `length` (decoded).
    pub(crate) length: Option<u64>,
    /// The stub's `digest` (of the bytes as sent).
    pub(crate) digest: Option<String>,
}

/// What the reader found in the bytes fed to it, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// An attachment's part begins.
    Start(Part),
    /// Bytes of the part begun last (never past its announced length).
    Bytes(Bytes),
    /// That part ended, all its announced bytes read.
    End,
}

/// The part being read.
struct Current {
    announced: Option<u64>,
    got: u64,
}

/// Where the reader is in the body.
enum Reading {
    /// The JSON part (its bytes so far).
    Json(Vec<u8>),
    /// Between parts, after the JSON.
    Between,
    /// An attachment's part.
    Attachment(Current),
    /// The closing boundary was read.
    Ended,
}

/// Reads a `multipart/related` document from `body` (of type `content_type`), at most
/// `limit` bytes of JSON and of attachment bytes, with each `follows` attachment's bytes
/// put inline as `data`: the document is then like a JSON one.
pub(crate) async fn read_related_inline(
    content_type: &str,
    body: Body,
    limit: usize,
) -> Result<Map<String, Value>, HttpError> {
    let mut reader = RelatedReader::new(content_type, limit)?;
    let mut inline = Inline::new(limit);
    let mut steps = Vec::new();
    let mut stream = stage::body_stream(body);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Fault::answer(&e))?;
        let ended = reader.feed(&chunk, &mut steps)?;
        for step in steps.drain(..) {
            inline.take(step)?;
        }
        if ended {
            break;
        }
    }
    let mut doc = reader.finish()?;
    inline.finish(&mut doc)?;
    Ok(doc)
}

/// The reading of one `multipart/related` body, fed its bytes as they come (sans I/O).
pub(crate) struct RelatedReader {
    parser: MultipartParser,
    state: Reading,
    doc: Option<Map<String, Value>>,
    pending: Vec<Part>,
    limit: usize,
}

impl RelatedReader {
    /// A reader of a body of type `content_type` whose JSON part may have `limit` bytes.
    ///
    /// # Errors
    /// 400 when the type has no boundary.
    pub(crate) fn new(content_type: &str, limit: usize) -> Result<RelatedReader, HttpError> {
        let boundary = settee_wire::boundary(content_type)
            .ok_or_else(|| malformed("no boundary parameter"))?;
        Ok(RelatedReader {
            parser: MultipartParser::new(&boundary),
            state: Reading::Json(Vec::new()),
            doc: None,
            pending: Vec::new(),
            limit,
        })
    }

    /// The next bytes of the body, what they hold pushed on `steps`; true once the closing
    /// boundary has been read.
    ///
    /// # Errors
    /// 400 for a body that is not what CouchDB sends, or a part whose length disagrees
    /// with its stub; 413 for a JSON part past the limit.
    pub(crate) fn feed(&mut self, chunk: &[u8], steps: &mut Vec<Step>) -> Result<bool, HttpError> {
        self.parser.feed(chunk);
        while let Some(event) = self.parser.next_event().map_err(malformed)? {
            match (event, &mut self.state) {
                // The JSON part's headers say nothing we need.
                (MultipartEvent::Headers(_), Reading::Json(json)) if json.is_empty() => {}
                (MultipartEvent::Headers(h), Reading::Between) => {
                    let Some(part) = take_pending(&mut self.pending, &h) else {
                        return Err(malformed("a part no attachment follows"));
                    };
                    self.state = Reading::Attachment(Current {
                        announced: part.announced,
                        got: 0,
                    });
                    steps.push(Step::Start(part));
                }
                (MultipartEvent::Body(b), Reading::Json(json)) => {
                    if json.len() + b.len() > self.limit {
                        return Err(HttpError::too_large());
                    }
                    json.extend_from_slice(b);
                }
                (MultipartEvent::Body(b), Reading::Attachment(current)) => {
                    current.got += b.len() as u64;
                    if current.announced.is_some_and(|n| current.got > n) {
                        return Err(HttpError::bad_request("attachment longer than expected"));
                    }
                    steps.push(Step::Bytes(Bytes::copy_from_slice(b)));
                }
                (MultipartEvent::PartEnd, Reading::Json(json)) => {
                    let d = match settee_store::deep_json::from_slice(json) {
                        Ok(Value::Object(m)) => m,
                        _ => return Err(HttpError::invalid_json()),
                    };
                    self.pending = follows_of(&d);
                    self.doc = Some(d);
                    self.state = Reading::Between;
                }
                (MultipartEvent::PartEnd, Reading::Attachment(current)) => {
                    if current.announced.is_some_and(|n| current.got < n) {
                        return Err(HttpError::bad_request("attachment shorter than expected"));
                    }
                    self.state = Reading::Between;
                    steps.push(Step::End);
                }
                (MultipartEvent::End, Reading::Between) => self.state = Reading::Ended,
                (MultipartEvent::End, _) => return Err(malformed("no parts")),
                _ => return Err(malformed("parts out of order")),
            }
        }
        Ok(self.parser.is_done())
    }

    /// The document (its `follows` stubs as sent), once the body has ended.
    ///
    /// # Errors
    /// 400 when the body ended before its closing boundary, or an attachment marked
    /// `follows` had no part.
    pub(crate) fn finish(self) -> Result<Map<String, Value>, HttpError> {
        self.parser.finish().map_err(malformed)?;
        let Some(doc) = self.doc else {
            return Err(malformed("no parts"));
        };
        if let Some(p) = self.pending.first() {
            return Err(malformed(format!("no part for attachment {:?}", p.name)));
        }
        Ok(doc)
    }
}

/// Parts collected whole, to be put inline (within `budget` bytes in all).
struct Inline {
    budget: usize,
    limit: usize,
    done: Vec<(String, Vec<u8>)>,
    current: Option<(String, Vec<u8>)>,
}

impl Inline {
    fn new(limit: usize) -> Inline {
        Inline {
            budget: limit,
            limit,
            done: Vec::new(),
            current: None,
        }
    }

    /// One step of the reading; 413 once the parts pass the limit.
    fn take(&mut self, step: Step) -> Result<(), HttpError> {
        match step {
            Step::Start(part) => self.current = Some((part.name, Vec::new())),
            Step::Bytes(b) => {
                if b.len() > self.budget {
                    return Err(HttpError::too_large());
                }
                self.budget -= b.len();
                if let Some((_, data)) = &mut self.current {
                    data.extend_from_slice(&b);
                }
            }
            Step::End => self.done.extend(self.current.take()),
        }
        Ok(())
    }

    /// Puts the parts inline in `doc`.
    fn finish(self, doc: &mut Map<String, Value>) -> Result<(), HttpError> {
        inline(doc, self.done, self.limit)
    }
}

/// The attachments of `doc` marked `follows`, in the document's order.
fn follows_of(doc: &Map<String, Value>) -> Vec<Part> {
    let Some(Value::Object(atts)) = doc.get("_attachments") else {
        return Vec::new();
    };
    atts.iter()
        .filter_map(|(name, att)| {
            let att = att.as_object()?;
            (att.get("follows") == Some(&Value::Bool(true))).then(|| Part {
                name: name.clone(),
                announced: announced(att),
                encoding: att
                    .get("encoding")
                    .and_then(Value::as_str)
                    .filter(|e| *e != "identity")
                    .map(str::to_owned),
                length: att.get("length").and_then(Value::as_u64),
                digest: att.get("digest").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect()
}

/// The bytes a following attachment's part must have: the `encoded_length` (the bytes
/// sent, when they are encoded) or else the `length`.
fn announced(att: &Map<String, Value>) -> Option<u64> {
    let identity = matches!(
        att.get("encoding").and_then(Value::as_str),
        None | Some("identity")
    );
    match att.get("encoded_length") {
        Some(n) => n.as_u64(),
        None if identity => att.get("length").and_then(Value::as_u64),
        None => None,
    }
}

/// The pending attachment a part with headers `h` belongs to: the one its file name
/// names, else the first still waiting.
fn take_pending(pending: &mut Vec<Part>, h: &PartHeaders) -> Option<Part> {
    if pending.is_empty() {
        return None;
    }
    let i = h
        .filename()
        .and_then(|f| pending.iter().position(|p| p.name == f))
        .unwrap_or(0);
    Some(pending.remove(i))
}

/// Puts each part's bytes inline in its attachment (decoded when encoded, within
/// `limit` decoded bytes in all).
fn inline(
    doc: &mut Map<String, Value>,
    parts: Vec<(String, Vec<u8>)>,
    limit: usize,
) -> Result<(), HttpError> {
    let Some(Value::Object(atts)) = doc.get_mut("_attachments") else {
        return Ok(());
    };
    let mut budget = limit;
    for (name, data) in parts {
        let Some(obj) = atts.get_mut(&name).and_then(Value::as_object_mut) else {
            continue;
        };
        let data = decode_encoding(obj, &data, budget)?;
        // INVARIANT: `decode_encoding` returns at most `budget` bytes.
        budget -= data.len();
        for k in ["follows", "length", "encoded_length", "encoding"] {
            obj.remove(k);
        }
        obj.insert(
            "data".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
        );
    }
    Ok(())
}

/// Attachment bytes sent in an encoding (CouchDB's replicator sends gzip-stored
/// attachments gzipped, marked `"encoding": "gzip"`): Settee stores the decoded bytes, of
/// which there may be at most `budget` (413 past it): the caller subtracts what it got
/// from its budget.
fn decode_encoding(
    att: &Map<String, Value>,
    data: &[u8],
    budget: usize,
) -> Result<Vec<u8>, HttpError> {
    let out = match att.get("encoding").and_then(Value::as_str) {
        None | Some("identity") => data.to_vec(),
        Some("gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            // One byte past the budget tells "too large" from "exactly the budget" without
            // inflating more: a few KB of gzip can expand to gigabytes.
            let cap = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::GzDecoder::new(data)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| HttpError::bad_request(format!("attachment gzip data: {e}")))?;
            out
        }
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "unsupported attachment encoding {other:?}"
            )))
        }
    };
    if out.len() > budget {
        return Err(HttpError::too_large());
    }
    Ok(out)
}

/// Reads a whole body cut into pieces of `pieces` bytes (tests and the fuzz target).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_in_pieces(
    content_type: &str,
    body: &[u8],
    pieces: usize,
    limit: usize,
) -> Result<Map<String, Value>, HttpError> {
    let mut reader = RelatedReader::new(content_type, limit)?;
    let mut inline = Inline::new(limit);
    let mut steps = Vec::new();
    for piece in body.chunks(pieces.max(1)) {
        let ended = reader.feed(piece, &mut steps)?;
        for step in steps.drain(..) {
            inline.take(step)?;
        }
        if ended {
            break;
        }
    }
    let mut doc = reader.finish()?;
    inline.finish(&mut doc)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const LIMIT: usize = 1 << 20;

    fn run(body: &[u8], pieces: usize) -> Result<Map<String, Value>, HttpError> {
        read_in_pieces("multipart/related; boundary=B", body, pieces, LIMIT)
    }

    fn body(stub: &str, part: &str) -> String {
        format!("--B\r\nContent-Type: application/json\r\n\r\n{{\"_id\":\"a\",\"_attachments\":{{\"a\":{{\"follows\":true,{stub}}}}}}}\r\n--B\r\nContent-Disposition: attachment; filename=\"a\"\r\n\r\n{part}\r\n--B--")
    }

    #[test]
    fn parts_read_in_any_pieces_go_inline() {
        for pieces in [1, 3, 7, 1000] {
            let doc = run(body("\"length\":5", "hello").as_bytes(), pieces).unwrap();
            assert_eq!(
                doc["_attachments"]["a"]["data"], "aGVsbG8=",
                "pieces of {pieces}"
            );
            assert!(doc["_attachments"]["a"].get("follows").is_none());
        }
    }

    #[test]
    fn lengths_must_agree_with_the_stub() {
        // CouchDB 3.5.0's answers to the same bodies.
        let err = run(body("\"length\":3", "hello").as_bytes(), 2).unwrap_err();
        assert_eq!(err.reason, "attachment longer than expected");
        let err = run(body("\"length\":10", "hello").as_bytes(), 2).unwrap_err();
        assert_eq!(err.reason, "attachment shorter than expected");
    }

    #[test]
    fn unfinished_or_unmatched_bodies_are_refused() {
        let full = body("\"length\":5", "hello");
        // No closing boundary.
        let cut = &full.as_bytes()[..full.len() - 5];
        assert_eq!(run(cut, 4).unwrap_err().status, StatusCode::BAD_REQUEST);
        // A follows attachment without its part.
        let none = "--B\r\n\r\n{\"_attachments\":{\"a\":{\"follows\":true}}}\r\n--B--";
        assert_eq!(
            run(none.as_bytes(), 4).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // A part nobody asked for.
        let extra = "--B\r\n\r\n{}\r\n--B\r\n\r\nxx\r\n--B--";
        assert_eq!(
            run(extra.as_bytes(), 4).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // Not JSON.
        let bad = "--B\r\n\r\nnot json\r\n--B--";
        assert_eq!(
            run(bad.as_bytes(), 4).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
    /// Issue 20 (found by fuzzing): a gzip-encoded part decompressed without bound, so a
    /// few KB of body could take gigabytes of memory. Its decoded bytes now count against
    /// the body limit.
    #[test]
    fn issue_20_gzip_part_inflates_at_most_the_body_limit() {
        use std::io::Write;
        let gzip = |len: usize| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&vec![0u8; len]).unwrap();
            enc.finish().unwrap()
        };
        let body = |parts: &[Vec<u8>]| {
            let stubs: Vec<String> = (0..parts.len())
                .map(|i| format!("\"a{i}\":{{\"follows\":true,\"encoding\":\"gzip\"}}"))
                .collect();
            let mut out = format!(
                "--B\r\nContent-Type: application/json\r\n\r\n{{\"_attachments\":{{{}}}}}",
                stubs.join(",")
            )
            .into_bytes();
            for p in parts {
                out.extend_from_slice(b"\r\n--B\r\n\r\n");
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b"\r\n--B--");
            out
        };
        let ct = "multipart/related; boundary=B";
        // 16 MiB of zeros is about 16 KB of gzip: far below the limit as sent.
        let bomb = body(&[gzip(16 << 20)]);
        assert!(bomb.len() < LIMIT / 16);
        let err = read_in_pieces(ct, &bomb, 4096, LIMIT).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // The limit holds for all parts together, not for each.
        let two = body(&[gzip(LIMIT / 2 + 1), gzip(LIMIT / 2 + 1)]);
        let err = read_in_pieces(ct, &two, 4096, LIMIT).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Exactly the limit decodes.
        let doc = read_in_pieces(ct, &body(&[gzip(LIMIT)]), 4096, LIMIT).unwrap();
        let data = doc["_attachments"]["a0"]["data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded.len(), LIMIT);
    }
}
