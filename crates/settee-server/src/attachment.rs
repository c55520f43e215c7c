//! Standalone attachments: `GET /{db}/{docid}/{name}` (with `rev`, `ETag`/`If-None-Match`
//! and one byte `Range`), `PUT` (the body becomes the attachment of a new revision) and
//! `DELETE` (a new revision without it).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
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

/// A single byte range of `len` bytes (`bytes=a-b`, `bytes=a-`, `bytes=-n`); `None` for a
/// header that is not one range (the whole body is sent then, as RFC 9110 allows), `Err`
/// for a range outside the body (416).
fn range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
        (Some(s), None) if b.is_empty() => (s, len.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if len == 0 || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
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
    let (status, data, content_range) = match range(&req.headers, len) {
        Err(()) => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
        Ok(Some((s, e))) => {
            // INVARIANT: `range` returns s <= e < len.
            let slice = att.data[s as usize..=e as usize].to_vec();
            (
                StatusCode::PARTIAL_CONTENT,
                slice,
                Some(format!("bytes {s}-{e}/{len}")),
            )
        }
        Ok(None) => (StatusCode::OK, att.data, None),
    };
    let mut res = Response::new(Body::from(data));
    *res.status_mut() = status;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&att.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert("content-md5", v);
    }
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
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
    fn byte_ranges() {
        assert_eq!(range(&with_range("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(range(&with_range("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(range(&with_range("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(range(&with_range("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(range(&with_range("bytes=10-12"), 10), Err(()));
        assert_eq!(range(&with_range("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(range(&HeaderMap::new(), 10), Ok(None));
    }
}
