//! Standalone attachments: `GET /{db}/{docid}/{name}` (with `rev`, `ETag`/`If-None-Match`
//! and byte `Range`s, as CouchDB answers them; the bytes streamed from the store, ranges
//! by `range.rs`; one the store keeps gzipped is sent gzipped to a client that accepts it,
//! decoded to others, and never by ranges, as CouchDB does), `PUT` (the body becomes the attachment of a new revision) and
//! `DELETE` (a new revision without it).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Map, Value};
use settee_store::{AttachmentReader, Database, Encoding, GetOptions};

use crate::att_stream::{reader_stream, Segments};
use crate::auth::Need;
use crate::body;
use crate::document::write_one;
use crate::error::HttpError;
use crate::options::RequestLimits;
use crate::range::{partial, ranges, Ranges};
use crate::registry::OpenDb;
use crate::request::{check, Request};
use crate::stage;
use crate::state::State;
use crate::validate::{Validators, Writer};

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
            put(open, id, name, req, &state.limits).await
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

async fn get(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
) -> Result<Response, HttpError> {
    let rev = req.query().rev("rev")?;
    let (id2, name2, rev2) = (id.to_owned(), name.to_owned(), rev.clone());
    // As stored: the same bytes as decoded unless the store keeps them encoded.
    let reader = open
        .run(move |db| Ok(db.attachment_reader_raw(&id2, rev2.as_ref(), &name2)?))
        .await?;
    let etag = reader.digest().trim_start_matches("md5-").to_owned();
    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH) {
        if inm.to_str().ok().map(|v| v.trim().trim_matches('"')) == Some(etag.as_str()) {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(body::with_etag(res, &etag));
        }
    }
    if reader.encoding() != Encoding::Identity {
        let wanted = accepts_encoding(&req.headers, reader.encoding());
        return encoded(open, reader, wanted, rev, id, name, etag).await;
    }
    let len = reader.length();
    let content_type = reader.content_type().to_owned();
    let (status, segments, headers) = match ranges(&req.headers, len) {
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
            // One reader per range (the first is the one opened above): each skips to its
            // own start. They read the same digest's chunks, which stay while any revision
            // names them.
            let (id2, name2, more) = (id.to_owned(), name.to_owned(), parts.len() - 1);
            let mut readers = vec![reader];
            readers.extend(
                open.run(move |db| {
                    (0..more)
                        .map(|_| Ok(db.attachment_reader(&id2, rev.as_ref(), &name2)?))
                        .collect::<Result<Vec<_>, HttpError>>()
                })
                .await?,
            );
            let (segments, headers) = partial(open, readers, &parts, len, &content_type);
            (StatusCode::PARTIAL_CONTENT, segments, headers)
        }
        Ranges::Whole => {
            let mut segments = Segments::new();
            segments.stream(reader_stream(open.clone(), reader, 0, len), len);
            (
                StatusCode::OK,
                segments,
                vec![(header::CONTENT_TYPE, content_type)],
            )
        }
    };
    let length = segments.length();
    let mut res = Response::new(segments.into_body());
    *res.status_mut() = status;
    let h = res.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert("content-md5", v);
    }
    Ok(body::with_etag(res, &etag))
}

/// An attachment the store keeps encoded, answered as CouchDB 3.5 answers one: whole
/// (`Accept-Ranges: none`, a `Range` is not served), its bytes as stored with
/// `Content-Encoding` for a client that accepts the encoding (`wanted`), decoded for
/// others. The `ETag` is the stored bytes' digest either way.
async fn encoded(
    open: &Arc<OpenDb>,
    raw: AttachmentReader,
    wanted: bool,
    rev: Option<settee_revtree::Rev>,
    id: &str,
    name: &str,
    etag: String,
) -> Result<Response, HttpError> {
    let content_type = raw.content_type().to_owned();
    let encoding = raw.encoding();
    let reader = if wanted {
        raw
    } else {
        let (id, name, digest) = (id.to_owned(), name.to_owned(), raw.digest().to_owned());
        let decoded = open
            .run(move |db| Ok(db.attachment_reader(&id, rev.as_ref(), &name)?))
            .await?;
        if decoded.digest() != digest {
            // Replaced between the two reads: the client asks again.
            return Err(HttpError::conflict());
        }
        decoded
    };
    let len = reader.length();
    let mut segments = Segments::new();
    segments.stream(reader_stream(open.clone(), reader, 0, len), len);
    let mut res = Response::new(segments.into_body());
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if wanted {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
        // The digest is of the bytes sent, which are the stored ones.
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert("content-md5", v);
        }
    }
    Ok(body::with_etag(res, &etag))
}

/// Whether `Accept-Encoding` accepts `encoding`: named (or `*`) with a quality above 0.
fn accepts_encoding(headers: &HeaderMap, encoding: Encoding) -> bool {
    let mut named = None;
    let mut any = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let gzip_alias = encoding == Encoding::Gzip && coding == "x-gzip";
        if coding == encoding.as_str() || gzip_alias {
            named = Some(quality > 0.0);
        } else if coding == "*" {
            any = Some(quality > 0.0);
        }
    }
    named.or(any).unwrap_or(false)
}

/// The current document to change (winner, or the `rev` asked for), as stubs; a new empty
/// document when there is none and no rev was given.
async fn base_doc(
    open: &Arc<OpenDb>,
    id: &str,
    rev: Option<settee_revtree::Rev>,
) -> Result<Map<String, Value>, HttpError> {
    let id = id.to_owned();
    open.run(move |db| base_doc_in(db, &id, rev)).await
}

/// [`base_doc`] on the blocking pool.
fn base_doc_in(
    db: &Database,
    id: &str,
    rev: Option<settee_revtree::Rev>,
) -> Result<Map<String, Value>, HttpError> {
    let opts = GetOptions {
        rev: rev.clone(),
        ..Default::default()
    };
    let found = match db.get(id, &opts) {
        Ok(d) => Some(d),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
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

/// `PUT` of an attachment: its bytes are staged into the store as they arrive (at most
/// `limits.max_attachment_size`, `stage.rs`), then the new revision is written with them.
/// Design documents and `_users` documents, which the server reads whole anyway, take
/// them inline within `limits.max_body`.
async fn put(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
    limits: &RequestLimits,
) -> Result<Response, HttpError> {
    let rev = req.rev()?;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let writer = Writer::new(open, &req.user);
    if id.starts_with("_design/") || writer.in_users_db() {
        return put_inline(open, id, name, req, limits, content_type, writer).await;
    }
    stage::check_announced(&req.body, limits.max_attachment_size)?;
    let staged = stage::stage(
        open,
        stage::body_stream(req.body),
        limits.max_attachment_size,
    )
    .await?;
    let (id, name) = (id.to_owned(), name.to_owned());
    let result = open
        .run(move |db| {
            let validators = Validators::load(db)?;
            if !validators.is_empty() {
                // What `validate_doc_update` sees: the revision written on, with the new
                // attachment as the stub it becomes.
                let mut doc = base_doc_in(db, &id, rev.clone())?;
                let revpos = rev.as_ref().map_or(1, |r| r.pos() + 1);
                let atts = doc
                    .entry("_attachments")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(atts) = atts {
                    atts.insert(
                        name.clone(),
                        json!({
                            "content_type": content_type,
                            "digest": staged.digest(),
                            "length": staged.length(),
                            "revpos": revpos,
                            "stub": true,
                        }),
                    );
                }
                validators.check(db, &writer, &mut Value::Object(doc), true)?;
            }
            Ok(db.put_staged_attachment(&id, rev.as_ref(), &name, &content_type, staged)?)
        })
        .await?;
    let mut res = body::json(StatusCode::CREATED, &result);
    if let Some(r) = &result.rev {
        res = body::with_etag(res, &r.to_string());
    }
    Ok(res)
}

/// `PUT` of an attachment whose bytes are read whole (at most `limits.max_body`) and
/// written inline, through the same write as a JSON document.
async fn put_inline(
    open: &Arc<OpenDb>,
    id: &str,
    name: &str,
    req: Request,
    limits: &RequestLimits,
    content_type: String,
    writer: Writer,
) -> Result<Response, HttpError> {
    let rev = req.rev()?;
    let data = body::read_bytes(req.body, limits.max_body).await?;
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
