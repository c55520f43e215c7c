//! Standalone attachments: `GET /{db}/{docid}/{name}` (with `rev`, `ETag`/`If-None-Match`
//! and byte `Range`s, as CouchDB answers them), `PUT` (the body becomes the attachment of a new revision) and
//! `DELETE` (a new revision without it).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Map, Value};
use settee_store::GetOptions;

use crate::auth::Need;
use crate::body;
use crate::document::write_one;
use crate::error::HttpError;
use crate::registry::OpenDb;
use crate::request::{check, Request};
use crate::state::State;
use crate::validate::Writer;

/// `/{db}/{docid}/{name}`.
pub(crate) async fn attachment(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
) -> Result<Response, HttpError> {
    match req.method {
        Method::GET | Method::HEAD => get(open, id, name, req).await,
        Method::PUT => {
            if id.starts_with("_design/") {
                check(open, &req.user, Need::Admin)?;
            }
            put(open, id, name, req, state.limits.max_body).await
        }
        Method::DELETE => {
            if id.starts_with("_design/") {
                check(open, &req.user, Need::Admin)?;
            }
            delete(open, id, name, req).await
        }
        _ => Err(HttpError::method_not_allowed("DELETE,GET,HEAD,PUT")),
    }
}

/// What a `Range` header asks of an attachment of `len` bytes, answered as CouchDB 3.5 does
/// (RFC 9110 §14). Ranges are served from the whole attachment the store gives; with a
/// streaming store they become a seek and a bounded read each.
#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// No `Range`, another unit, a header that does not parse, `bytes=0-` (CouchDB sends
    /// the whole body then), or more than we serve as parts: the whole body, 200.
    Whole,
    /// Each `(first, last)` byte, inclusive, inside the body: 206, one range as it is,
    /// several as `multipart/byteranges`.
    Parts(Vec<(u64, u64)>),
    /// A range that starts past the end, ends before it starts, or `-0`: 416.
    Unsatisfiable,
}

/// At most this many ranges are served as parts, and only while their bytes add up to no
/// more than the attachment's: a header of many overlapping ranges would otherwise make a
/// small request answer the attachment many times over (RFC 9110 §14.2 lets a server send
/// the whole body instead).
const MAX_PARTS: usize = 16;

fn ranges(headers: &HeaderMap, len: u64) -> Ranges {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranges::Whole;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    if spec.trim() == "0-" {
        return Ranges::Whole;
    }
    let mut parts = Vec::new();
    let mut unsatisfiable = false;
    for one in spec.split(',') {
        let Some((a, b)) = one.trim().split_once('-') else {
            return Ranges::Whole;
        };
        let (a, b) = (a.trim(), b.trim());
        let part = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            (Some(first), Some(last)) if first <= last && first < len => {
                Some((first, last.min(len - 1)))
            }
            (Some(_), Some(_)) => None,
            (Some(first), None) if b.is_empty() => (first < len).then(|| (first, len - 1)),
            // The last n bytes; all of them when n is longer than the body (RFC 9110
            // §14.1.2). CouchDB 3.5.0 leaves the first byte out then (`bytes=-300` of 256
            // bytes answers `bytes 1-255/256`), which no client can want.
            (None, Some(n)) if a.is_empty() => {
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            _ => return Ranges::Whole,
        };
        match part {
            Some(p) => parts.push(p),
            None => unsatisfiable = true,
        }
    }
    if unsatisfiable {
        return Ranges::Unsatisfiable;
    }
    let total: u64 = parts.iter().map(|(first, last)| last - first + 1).sum();
    if parts.len() > MAX_PARTS || total > len {
        return Ranges::Whole;
    }
    Ranges::Parts(parts)
}

/// The body and headers of a 206 answer: one range as it is, several as
/// `multipart/byteranges` parts, each with its type and `Content-Range`.
fn partial(
    data: &[u8],
    parts: &[(u64, u64)],
    content_type: &str,
) -> (Vec<u8>, Vec<(HeaderName, String)>) {
    let len = data.len();
    // INVARIANT: `ranges` gives first <= last < len for each part.
    let slice = |(first, last): (u64, u64)| &data[first as usize..=last as usize];
    if let [one] = parts {
        let (first, last) = *one;
        return (
            slice(*one).to_vec(),
            vec![
                (header::CONTENT_TYPE, content_type.to_owned()),
                (header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}")),
            ],
        );
    }
    let boundary = format!("{:032x}", rand::random::<u128>());
    let mut body = Vec::new();
    for &(first, last) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{len}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(slice((first, last)));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--").as_bytes());
    let content_type = format!("multipart/byteranges; boundary=\"{boundary}\"");
    (body, vec![(header::CONTENT_TYPE, content_type)])
}

async fn get(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
) -> Result<Response, HttpError> {
    let rev = req.query().rev("rev")?;
    let (id2, name2) = (id.to_owned(), name.to_owned());
    let att = open
        .run(move |db| Ok(db.attachment(&id2, rev.as_ref(), &name2)?))
        .await?;
    let etag = att.digest.trim_start_matches("md5-").to_owned();
    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH) {
        if inm.to_str().ok().map(|v| v.trim().trim_matches('"')) == Some(etag.as_str()) {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(body::with_etag(res, &etag));
        }
    }
    let len = att.data.len() as u64;
    let (status, data, headers) = match ranges(&req.headers, len) {
        Ranges::Unsatisfiable => {
            let err = HttpError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "requested_range_not_satisfiable",
                "Requested range not satisfiable",
            );
            let mut res = axum::response::IntoResponse::into_response(err);
            // CouchDB leaves it out; RFC 9110 §15.5.17 asks for the current length.
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
        Ranges::Parts(parts) => {
            let (data, headers) = partial(&att.data, &parts, &att.content_type);
            (StatusCode::PARTIAL_CONTENT, data, headers)
        }
        Ranges::Whole => (
            StatusCode::OK,
            att.data,
            vec![(header::CONTENT_TYPE, att.content_type.clone())],
        ),
    };
    let mut res = Response::new(Body::from(data));
    *res.status_mut() = status;
    let h = res.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert("content-md5", v);
    }
    Ok(body::with_etag(res, &etag))
}

/// The current document to change (winner, or the `rev` asked for), as stubs; a new empty
/// document when there is none and no rev was given.
async fn base_doc(
    open: &Arc<OpenDb>,
    id: &str,
    rev: Option<settee_revtree::Rev>,
) -> Result<Map<String, Value>, HttpError> {
    let id2 = id.to_owned();
    let asked = rev.clone();
    let found = open
        .run(move |db| {
            let opts = GetOptions {
                rev: asked,
                ..Default::default()
            };
            match db.get(&id2, &opts) {
                Ok(d) => Ok(Some(d)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    match (found, rev) {
        (Some(Value::Object(mut doc)), Some(_)) => {
            // Writing on top of a deleted revision starts the document again.
            if doc.remove("_deleted").is_some() {
                let rev = doc.remove("_rev");
                let mut fresh = Map::new();
                fresh.insert("_id".into(), Value::String(id.to_owned()));
                if let Some(r) = rev {
                    fresh.insert("_rev".into(), r);
                }
                return Ok(fresh);
            }
            Ok(doc)
        }
        (Some(_), None) => Err(HttpError::conflict()),
        (None, Some(_)) => Err(HttpError::conflict()),
        (None, None) => {
            let mut doc = Map::new();
            doc.insert("_id".into(), Value::String(id.to_owned()));
            Ok(doc)
        }
        (Some(_), Some(_)) => Err(HttpError::internal("a document is not an object")),
    }
}

/// `PUT` of an attachment whose data is at most `max_body` bytes.
async fn put(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
    max_body: usize,
) -> Result<Response, HttpError> {
    let rev = req.rev()?;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let writer = Writer::new(open, &req.user);
    let data = body::read_bytes(req.body, max_body).await?;
    let mut doc = base_doc(open, id, rev).await?;
    let atts = doc
        .entry("_attachments")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(atts) = atts {
        atts.insert(
            name.to_owned(),
            json!({
                "content_type": content_type,
                "data": base64::engine::general_purpose::STANDARD.encode(&data),
            }),
        );
    }
    let result = write_one(open, Value::Object(doc), true, writer).await?;
    let mut res = body::json(StatusCode::CREATED, &result);
    if let Some(r) = &result.rev {
        res = body::with_etag(res, &r.to_string());
    }
    Ok(res)
}

async fn delete(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
) -> Result<Response, HttpError> {
    let rev = req.rev()?.ok_or_else(HttpError::conflict)?;
    let writer = Writer::new(open, &req.user);
    let mut doc = base_doc(open, id, Some(rev)).await?;
    let removed = doc
        .get_mut("_attachments")
        .and_then(Value::as_object_mut)
        .and_then(|atts| atts.remove(name));
    if removed.is_none() {
        return Err(HttpError::not_found("Document is missing attachment"));
    }
    let result = write_one(open, Value::Object(doc), true, writer).await?;
    Ok(body::json(StatusCode::OK, &result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn byte_ranges_as_couchdb_answers_them() {
        use Ranges::*;
        let r = |v: &str| ranges(&with_range(v), 10);
        assert_eq!(r("bytes=0-3"), Parts(vec![(0, 3)]));
        assert_eq!(r("bytes= 2-3"), Parts(vec![(2, 3)]));
        assert_eq!(r("bytes=5-"), Parts(vec![(5, 9)]));
        assert_eq!(r("bytes=-4"), Parts(vec![(6, 9)]));
        assert_eq!(r("bytes=-40"), Parts(vec![(0, 9)]));
        assert_eq!(r("bytes=8-100"), Parts(vec![(8, 9)]));
        assert_eq!(r("bytes=0-1,3-4"), Parts(vec![(0, 1), (3, 4)]));
        assert_eq!(r("bytes=0-"), Whole);
        assert_eq!(r("bytes=abc"), Whole);
        assert_eq!(r("items=0-3"), Whole);
        assert_eq!(r("bytes=0-9,0-9"), Whole, "more bytes than the body");
        assert_eq!(r("bytes=10-12"), Unsatisfiable);
        assert_eq!(r("bytes=5-3"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=1-2,30-40"), Unsatisfiable);
        assert_eq!(ranges(&with_range("bytes=-4"), 0), Unsatisfiable);
        assert_eq!(ranges(&with_range("bytes=0-"), 0), Whole);
        assert_eq!(ranges(&HeaderMap::new(), 10), Whole);
    }

    #[test]
    fn several_ranges_are_multipart_byteranges() {
        let data: Vec<u8> = (0..10).collect();
        let (body, headers) = partial(&data, &[(1, 2), (8, 9)], "x/y");
        let ct = &headers[0].1;
        let boundary = ct
            .strip_prefix("multipart/byteranges; boundary=\"")
            .and_then(|b| b.strip_suffix('"'))
            .unwrap();
        let mut want =
            format!("--{boundary}\r\nContent-Type: x/y\r\nContent-Range: bytes 1-2/10\r\n\r\n")
                .into_bytes();
        want.extend_from_slice(&[1, 2]);
        want.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: x/y\r\nContent-Range: bytes 8-9/10\r\n\r\n")
                .as_bytes(),
        );
        want.extend_from_slice(&[8, 9]);
        want.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
        assert_eq!(body, want);
    }
}
