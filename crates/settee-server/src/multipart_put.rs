//! A `multipart/related` document read as it arrives (`PUT /{db}/{docid}`, as CouchDB's
//! and Settee's replicators send a revision with its attachments): the body goes through
//! `settee_wire`'s incremental parser; the JSON part is bounded by the body limit; each
//! part belongs to the next attachment marked `"follows": true` (or the one its file
//! name names), and its bytes are checked against the stub's length as they come: a
//! part longer than announced is refused at the byte that passes it, a shorter one at
//! its end, and a body that ends before its closing boundary is refused too (400, nothing
//! written). [`RelatedReader`] is the reading without I/O (the fuzz target's too).
//!
//! Today each part's bytes are collected and put inline (as base64 `data`), within the
//! body limit in all, because the store has no call yet that writes a replicated
//! revision with staged attachments; [`Sink`] is the one place that changes when it has.

use axum::body::Body;
use base64::Engine;
use futures::StreamExt as _;
use serde_json::{Map, Value};
use settee_wire::{MultipartEvent, MultipartParser, PartHeaders};

use crate::error::HttpError;
use crate::stage::{self, Fault};

fn malformed(what: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("malformed multipart body: {what}"))
}

/// One attachment marked `follows`, waiting for its part.
struct Pending {
    name: String,
    /// The bytes its part must have (`encoded_length`, or `length` when not encoded),
    /// when the stub says.
    announced: Option<u64>,
}

/// Where a part's bytes go.
struct Sink {
    name: String,
    announced: Option<u64>,
    got: u64,
    data: Vec<u8>,
}

impl Sink {
    fn new(p: Pending) -> Sink {
        Sink {
            name: p.name,
            announced: p.announced,
            got: 0,
            data: Vec::new(),
        }
    }

    /// The next bytes; refused as soon as they pass the announced length, or the budget.
    fn take(&mut self, bytes: &[u8], budget: &mut usize) -> Result<(), HttpError> {
        self.got += bytes.len() as u64;
        if self.announced.is_some_and(|n| self.got > n) {
            return Err(HttpError::bad_request("attachment longer than expected"));
        }
        if bytes.len() > *budget {
            return Err(HttpError::too_large());
        }
        *budget -= bytes.len();
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// The part ended: its bytes must be all that was announced.
    fn end(self) -> Result<(String, Vec<u8>), HttpError> {
        if self.announced.is_some_and(|n| self.got < n) {
            return Err(HttpError::bad_request("attachment shorter than expected"));
        }
        Ok((self.name, self.data))
    }
}

/// Where the reader is in the body.
enum Reading {
    /// The JSON part (its bytes so far).
    Json(Vec<u8>),
    /// Between parts, after the JSON.
    Between,
    /// An attachment's part.
    Attachment(Sink),
    /// The closing boundary was read.
    Ended,
}

/// Reads a `multipart/related` document from `body` (of type `content_type`), at most
/// `limit` bytes of JSON and of attachment bytes, with each `follows` attachment's bytes
/// put inline as `data`: the document is then like a JSON one.
pub(crate) async fn read_related(
    content_type: &str,
    body: Body,
    limit: usize,
) -> Result<Map<String, Value>, HttpError> {
    let mut reader = RelatedReader::new(content_type, limit)?;
    let mut stream = stage::body_stream(body);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match Fault::of(&e) {
            Some(f) => f.to_http(),
            None => HttpError::bad_request(e.to_string()),
        })?;
        if reader.feed(&chunk)? {
            break;
        }
    }
    reader.finish()
}

/// The reading of one `multipart/related` body, fed its bytes as they come (sans I/O).
pub(crate) struct RelatedReader {
    parser: MultipartParser,
    state: Reading,
    doc: Option<Map<String, Value>>,
    pending: Vec<Pending>,
    done: Vec<(String, Vec<u8>)>,
    limit: usize,
    /// What attachment bytes may still come.
    budget: usize,
}

impl RelatedReader {
    /// A reader of a body of type `content_type`.
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
            done: Vec::new(),
            limit,
            budget: limit,
        })
    }

    /// The next bytes of the body; true once the closing boundary has been read.
    ///
    /// # Errors
    /// 400 for a body that is not what CouchDB sends, or a part whose length disagrees
    /// with its stub; 413 past the limit.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<bool, HttpError> {
        self.parser.feed(chunk);
        while let Some(event) = self.parser.next_event().map_err(malformed)? {
            match (event, &mut self.state) {
                // The JSON part's headers say nothing we need.
                (MultipartEvent::Headers(_), Reading::Json(json)) if json.is_empty() => {}
                (MultipartEvent::Headers(h), Reading::Between) => {
                    self.state = match take_pending(&mut self.pending, &h) {
                        Some(p) => Reading::Attachment(Sink::new(p)),
                        None => return Err(malformed("a part no attachment follows")),
                    };
                }
                (MultipartEvent::Body(b), Reading::Json(json)) => {
                    if json.len() + b.len() > self.limit {
                        return Err(HttpError::too_large());
                    }
                    json.extend_from_slice(b);
                }
                (MultipartEvent::Body(b), Reading::Attachment(sink)) => {
                    sink.take(b, &mut self.budget)?
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
                (MultipartEvent::PartEnd, Reading::Attachment(_)) => {
                    if let Reading::Attachment(sink) =
                        std::mem::replace(&mut self.state, Reading::Between)
                    {
                        self.done.push(sink.end()?);
                    }
                }
                (MultipartEvent::End, Reading::Between) => self.state = Reading::Ended,
                (MultipartEvent::End, _) => return Err(malformed("no parts")),
                _ => return Err(malformed("parts out of order")),
            }
        }
        Ok(self.parser.is_done())
    }

    /// The document, once the body has ended.
    ///
    /// # Errors
    /// 400 when the body ended before its closing boundary, or an attachment marked
    /// `follows` had no part; 413 when encoded parts decode past the limit.
    pub(crate) fn finish(self) -> Result<Map<String, Value>, HttpError> {
        self.parser.finish().map_err(malformed)?;
        let Some(mut doc) = self.doc else {
            return Err(malformed("no parts"));
        };
        if let Some(p) = self.pending.first() {
            return Err(malformed(format!("no part for attachment {:?}", p.name)));
        }
        inline(&mut doc, self.done, self.limit)?;
        Ok(doc)
    }
}

/// The attachments of `doc` marked `follows`, in the document's order.
fn follows_of(doc: &Map<String, Value>) -> Vec<Pending> {
    let Some(Value::Object(atts)) = doc.get("_attachments") else {
        return Vec::new();
    };
    atts.iter()
        .filter_map(|(name, att)| {
            let att = att.as_object()?;
            (att.get("follows") == Some(&Value::Bool(true))).then(|| Pending {
                name: name.clone(),
                announced: announced(att),
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
fn take_pending(pending: &mut Vec<Pending>, h: &PartHeaders) -> Option<Pending> {
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
    for piece in body.chunks(pieces.max(1)) {
        if reader.feed(piece)? {
            break;
        }
    }
    reader.finish()
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
