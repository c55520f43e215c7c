//! MIME multipart requests as CouchDB's clients send them: `multipart/related` documents
//! (the JSON first, its attachments marked `"follows": true` and their bytes in the parts
//! after it) read on PUT. Multipart answers are `multipart_answer.rs`'s.

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::HttpError;

/// One part of a multipart body: its headers (names lowercased) and content.
pub(crate) struct Part<'a> {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: &'a [u8],
}

impl Part<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(what: &str) -> HttpError {
    HttpError::bad_request(format!("malformed multipart body: {what}"))
}

/// The `boundary` parameter of a multipart content type.
pub(crate) fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
}

/// Splits a multipart body into its parts (RFC 2046: a preamble, `--boundary` lines, an
/// epilogue after `--boundary--`).
pub(crate) fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, HttpError> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut at = if body.starts_with(delim.as_bytes()) {
        0
    } else {
        find(body, next_delim.as_bytes(), 0).ok_or_else(|| malformed("no boundary"))? + 2
    };
    let mut out = Vec::new();
    loop {
        at += delim.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(out);
        }
        // The rest of the boundary line (transport padding) up to its CRLF.
        let line_end =
            find(body, b"\r\n", at).ok_or_else(|| malformed("unterminated boundary line"))?;
        let start = line_end + 2;
        let end = find(body, next_delim.as_bytes(), start)
            .ok_or_else(|| malformed("a part is not closed by a boundary"))?;
        let part = &body[start..end];
        let (head, content) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            let split =
                find(part, b"\r\n\r\n", 0).ok_or_else(|| malformed("a part has no header end"))?;
            (&part[..split], &part[split + 4..])
        };
        let head =
            std::str::from_utf8(head).map_err(|_| malformed("part headers are not UTF-8"))?;
        let headers = head
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l
                    .split_once(':')
                    .ok_or_else(|| malformed("a bad part header"))?;
                Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, HttpError>>()?;
        out.push(Part {
            headers,
            body: content,
        });
        at = end + 2;
    }
}

/// The file name of a part's `Content-Disposition: attachment; filename="x"`.
fn filename(part: &Part<'_>) -> Option<String> {
    let cd = part.header("content-disposition")?;
    cd.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == "filename").then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Reads a `multipart/related` document: the first part is the JSON, and each attachment
/// marked `"follows": true` takes the next part (or the part whose file name is its
/// name). Attachment bytes are put inline as `data`, so the document is then like a
/// JSON one. Gzip-encoded parts decode to at most `limit` bytes in all (the body limit:
/// a small part must not inflate past what the client could have sent plainly).
pub(crate) fn parse_related(
    content_type: &str,
    bytes: &[u8],
    limit: usize,
) -> Result<Map<String, Value>, HttpError> {
    let boundary = boundary_of(content_type).ok_or_else(|| malformed("no boundary parameter"))?;
    let parts = parts(bytes, &boundary)?;
    let (first, rest) = parts.split_first().ok_or_else(|| malformed("no parts"))?;
    let mut doc = match settee_store::deep_json::from_slice(first.body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(HttpError::invalid_json()),
    };
    let mut by_name: Vec<(Option<String>, &[u8])> =
        rest.iter().map(|p| (filename(p), p.body)).collect();
    let mut budget = limit;
    if let Some(Value::Object(atts)) = doc.get_mut("_attachments") {
        for (name, att) in atts.iter_mut() {
            let Some(obj) = att.as_object_mut() else {
                continue;
            };
            if obj.get("follows") != Some(&Value::Bool(true)) {
                continue;
            }
            let idx = by_name
                .iter()
                .position(|(f, _)| f.as_deref() == Some(name.as_str()))
                .or_else(|| by_name.iter().position(|(f, _)| f.is_none()))
                .or(if by_name.is_empty() { None } else { Some(0) })
                .ok_or_else(|| malformed(&format!("no part for attachment {name:?}")))?;
            let (_, data) = by_name.remove(idx);
            check_length(obj, data)?;
            let data = decode_encoding(obj, data, budget)?;
            // INVARIANT: `decode_encoding` returns at most `budget` bytes.
            budget -= data.len();
            obj.remove("follows");
            obj.remove("length");
            obj.remove("encoded_length");
            obj.remove("encoding");
            obj.insert(
                "data".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
            );
        }
    }
    Ok(doc)
}

/// The bytes of a following attachment against the length its stub announces: the
/// `encoded_length` (the bytes sent, when they are encoded) or else the `length`. CouchDB
/// refuses a disagreement with 400 and these reasons.
fn check_length(att: &Map<String, Value>, data: &[u8]) -> Result<(), HttpError> {
    let identity = matches!(
        att.get("encoding").and_then(Value::as_str),
        None | Some("identity")
    );
    let announced = match att.get("encoded_length") {
        Some(n) => n.as_u64(),
        None if identity => att.get("length").and_then(Value::as_u64),
        None => None,
    };
    let Some(announced) = announced else {
        return Ok(());
    };
    let sent = data.len() as u64;
    if sent > announced {
        return Err(HttpError::bad_request("attachment longer than expected"));
    }
    if sent < announced {
        return Err(HttpError::bad_request("attachment shorter than expected"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn related_document_round_trips() {
        let body = "--BOUND\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"a\",\"_attachments\":{\"x.txt\":{\"content_type\":\"text/plain\",\"follows\":true,\"length\":5}}}\r\n--BOUND\r\nContent-Disposition: attachment; filename=\"x.txt\"\r\nContent-Length: 5\r\n\r\nhello\r\n--BOUND--";
        let body = body.as_bytes();
        let parsed = parse_related("multipart/related; boundary=\"BOUND\"", body, LIMIT).unwrap();
        assert_eq!(parsed["_attachments"]["x.txt"]["data"], "aGVsbG8=");
        assert!(parsed["_attachments"]["x.txt"].get("follows").is_none());
    }

    #[test]
    fn broken_multipart_is_a_bad_request() {
        for body in [
            &b"no boundary here"[..],
            b"--B\r\nContent-Type: application/json\r\n\r\n{}",
            b"--B\r\n\r\nnot json\r\n--B--",
        ] {
            let err = parse_related("multipart/related; boundary=B", body, LIMIT).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
        assert!(parse_related("multipart/related", b"", LIMIT).is_err());
    }

    #[test]
    fn bytes_must_agree_with_the_announced_length() {
        let body = |len: &str| {
            format!("--B\r\nContent-Type: application/json\r\n\r\n{{\"_attachments\":{{\"a\":{{\"follows\":true,{len}}}}}}}\r\n--B\r\n\r\nhello\r\n--B--")
        };
        let ct = "multipart/related; boundary=B";
        // CouchDB 3.5.0's answers to the same bodies.
        let err = parse_related(ct, body("\"length\":3").as_bytes(), LIMIT).unwrap_err();
        assert_eq!(err.reason, "attachment longer than expected");
        let err = parse_related(ct, body("\"length\":10").as_bytes(), LIMIT).unwrap_err();
        assert_eq!(err.reason, "attachment shorter than expected");
        assert!(parse_related(ct, body("\"length\":5").as_bytes(), LIMIT).is_ok());
        assert!(parse_related(ct, body("\"content_type\":\"x/y\"").as_bytes(), LIMIT).is_ok());
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
        let err = parse_related(ct, &bomb, LIMIT).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // The limit holds for all parts together, not for each.
        let two = body(&[gzip(LIMIT / 2 + 1), gzip(LIMIT / 2 + 1)]);
        let err = parse_related(ct, &two, LIMIT).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Exactly the limit decodes.
        let doc = parse_related(ct, &body(&[gzip(LIMIT)]), LIMIT).unwrap();
        let data = doc["_attachments"]["a0"]["data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded.len(), LIMIT);
    }

    #[test]
    fn follows_without_a_part_is_rejected() {
        let body = b"--B\r\nContent-Type: application/json\r\n\r\n{\"_attachments\":{\"a\":{\"follows\":true}}}\r\n--B--";
        assert!(parse_related("multipart/related; boundary=B", body, LIMIT).is_err());
    }
}
