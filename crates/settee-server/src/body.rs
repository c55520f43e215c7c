//! Request bodies read within the size limit (413 past it), JSON bodies with CouchDB's 400
//! and 415 replies, and JSON responses with CouchDB's headers.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::HttpError;

/// Reads a whole request body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_bytes(body: Body, limit: usize) -> Result<Bytes, HttpError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::too_large()),
        Err(e) => Err(HttpError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// The media type of a request (`application/json`), lowercased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// CouchDB's check of a POST body's type (`couch_httpd:validate_ctype/2`): 415 unless it is
/// `application/json`.
pub(crate) fn require_json_type(headers: &HeaderMap) -> Result<(), HttpError> {
    match media_type(headers).as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be application/json",
        )),
    }
}

/// Parses JSON, with CouchDB's reply for anything that is not. Nesting deeper than serde_json's
/// 128 levels is accepted up to [`settee_store::deep_json::MAX_DEPTH`]; past it the 400 says so.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, HttpError> {
    settee_store::deep_json::from_slice(bytes).map_err(|e| {
        if settee_store::deep_json::nesting_depth(bytes) > settee_store::deep_json::MAX_DEPTH {
            HttpError::bad_request(e.to_string())
        } else {
            HttpError::invalid_json()
        }
    })
}

/// Reads a JSON body that must be an object.
pub(crate) async fn read_json_object(
    body: Body,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, HttpError> {
    match parse_json(&read_bytes(body, limit).await?)? {
        Value::Object(m) => Ok(m),
        _ => Err(HttpError::bad_request("Request body must be a JSON object")),
    }
}

/// A JSON response with `status`.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut bytes = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            return axum::response::IntoResponse::into_response(HttpError::internal(format!(
                "cannot serialize the response: {e}"
            )))
        }
    };
    bytes.push(b'\n');
    json_bytes(status, bytes)
}

/// A response whose body is JSON text already serialized.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `200 {"ok": true}`.
pub(crate) fn ok() -> Response {
    json(StatusCode::OK, &serde_json::json!({"ok": true}))
}

/// Adds `ETag: "value"`.
pub(crate) fn with_etag(mut res: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{value}\"")) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}
