//! Request bodies read within the size limit (413 past it, before reading when the
//! `Content-Length` says so) and within the idle timeout (408 when a body stops arriving),
//! JSON bodies with CouchDB's 400 and 415 replies, and JSON responses with CouchDB's
//! headers.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use serde::Serialize;
use serde_json::Value;
use settee_revtree::Rev;
use std::future::Future;

use crate::error::HttpError;
use crate::query::parse_rev;

/// Reads a whole request body, refusing more than `limit` bytes with 413: at once when its
/// `Content-Length` is larger (nothing of it is read), else as soon as a chunked body
/// passes the limit.
pub(crate) async fn read_bytes(body: Body, limit: usize) -> Result<Bytes, HttpError> {
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > limit) {
        return Err(HttpError::too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::too_large()),
        Err(e) if is_stalled(&*e) => Err(stalled()),
        Err(e) => Err(HttpError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// The answer to a request whose body stopped arriving (408).
pub(crate) fn stalled() -> HttpError {
    HttpError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body stopped arriving",
    )
}

/// Whether a body error (or one of its causes) is [`Stalled`].
pub(crate) fn is_stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<Stalled>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The error of a request body that stopped arriving for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving for {0:?}")]
pub(crate) struct Stalled(Duration);

/// `body`, failing with [`Stalled`] when no part of it arrives for `idle`: a client that
/// starts a body and stops cannot hold a request (and the database it names) forever.
pub(crate) fn idle_bounded(body: Body, idle: Duration) -> Body {
    Body::new(IdleBody {
        inner: body,
        idle,
        timer: Box::pin(tokio::time::sleep(idle)),
        polled: false,
    })
}

struct IdleBody {
    inner: Body,
    idle: Duration,
    /// Reset at each frame; fires when the body has been silent for `idle`.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Whether the handler has asked for the body yet: the silence is counted from its
    /// first read (a handler may work a while before it reads, and a client sending
    /// `Expect: 100-continue` waits for that first read).
    polled: bool,
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if !this.polled {
            this.polled = true;
            let first = tokio::time::Instant::now() + this.idle;
            this.timer.as_mut().reset(first);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(Stalled(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

/// Reads the `{id: [revs]}` body of `_revs_diff` and `_purge`.
pub(crate) async fn read_revs_by_id(
    body: Body,
    limit: usize,
) -> Result<BTreeMap<String, Vec<Rev>>, HttpError> {
    let asked = read_json_object(body, limit).await?;
    let mut revs = BTreeMap::new();
    for (id, list) in asked {
        let Value::Array(list) = list else {
            return Err(HttpError::bad_request(format!(
                "the revisions of {id:?} must be a JSON array"
            )));
        };
        let parsed = list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| HttpError::bad_request("Invalid rev format"))
                    .and_then(parse_rev)
            })
            .collect::<Result<Vec<_>, _>>()?;
        revs.insert(id, parsed);
    }
    Ok(revs)
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

/// A body streamed from a channel (feeds, multipart answers).
pub(crate) fn stream_body(
    rx: tokio::sync::mpsc::Receiver<std::result::Result<bytes::Bytes, std::io::Error>>,
) -> Body {
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::result::Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
