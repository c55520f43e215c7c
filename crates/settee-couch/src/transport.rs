//! Sending one request: authentication (basic, bearer, cookie session renewed on 401),
//! retries of idempotent requests, and turning error statuses into [`Error`]s. What to ask
//! for is each endpoint's business (`db.rs`, `changes.rs`, ...).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use url::Url;

use crate::client::{Auth, CouchClient};
use crate::{Error, Failure, RedactedUrl, Result};

/// A request body.
pub(crate) enum Body {
    Empty,
    /// JSON, kept as bytes so that a retry can send it again.
    Json(Bytes),
    /// A body that can be sent only once (a streamed upload): never retried.
    Stream {
        body: reqwest::Body,
        content_type: String,
        length: u64,
    },
}

impl Body {
    pub(crate) fn json<T: Serialize + ?Sized>(
        value: &T,
        method: &Method,
        url: &Url,
    ) -> Result<Body> {
        serde_json::to_vec(value)
            .map(|v| Body::Json(Bytes::from(v)))
            .map_err(|e| Error::invalid(method, &RedactedUrl::new(url), e))
    }

    fn is_replayable(&self) -> bool {
        !matches!(self, Body::Stream { .. })
    }
}

/// Whether a request may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, and writes whose repetition changes nothing (`new_edits=false`).
    Idempotent,
    /// A repeated write could be applied twice or answer a misleading 409.
    NotIdempotent,
}

/// One request to send.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Body,
    pub(crate) idempotency: Idempotency,
    pub(crate) headers: HeaderMap,
}

impl Call {
    pub(crate) fn new(method: Method, url: Url) -> Call {
        let idempotency = if method == Method::GET || method == Method::HEAD {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        };
        Call {
            method,
            url,
            body: Body::Empty,
            idempotency,
            headers: HeaderMap::new(),
        }
    }

    pub(crate) fn body(mut self, body: Body) -> Call {
        self.body = body;
        self
    }

    pub(crate) fn idempotent(mut self) -> Call {
        self.idempotency = Idempotency::Idempotent;
        self
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: HeaderValue) -> Call {
        self.headers.insert(name, value);
        self
    }
}

impl CouchClient {
    /// Sends `call`; returns the response if its status is a success, else the error.
    pub(crate) async fn send(&self, call: Call) -> Result<Response> {
        let Call {
            method,
            url,
            mut body,
            idempotency,
            headers,
        } = call;
        let shown = RedactedUrl::new(&url);
        let retries = if idempotency == Idempotency::Idempotent && body.is_replayable() {
            self.inner.retry.max_retries
        } else {
            0
        };
        let mut attempt = 0u32;
        let mut renewed_session = false;
        loop {
            let mut rb = self.inner.http.request(method.clone(), url.clone());
            rb = rb
                .headers(self.inner.headers.clone())
                .headers(headers.clone());
            if !headers.contains_key(ACCEPT) {
                rb = rb.header(ACCEPT, HeaderValue::from_static("application/json"));
            }
            rb = self.authorize(rb).await?;
            rb = match &mut body {
                Body::Empty => rb,
                Body::Json(bytes) => rb
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(bytes.clone()),
                Body::Stream {
                    body: stream,
                    content_type,
                    length,
                } => {
                    let taken = std::mem::replace(stream, reqwest::Body::from(Bytes::new()));
                    rb.header(CONTENT_TYPE, content_type.as_str())
                        .header(CONTENT_LENGTH, *length)
                        .body(taken)
                }
            };
            tracing::debug!(method = %method, url = %shown, attempt, "couch request");
            let outcome = rb.send().await;
            match outcome {
                Err(e) => {
                    let transient = e.is_connect() || e.is_timeout() || e.is_request();
                    if transient && attempt < retries {
                        let wait = self.inner.retry.wait(attempt, None);
                        tracing::warn!(method = %method, url = %shown, attempt, ?wait,
                            error = %e.without_url(), "couch request failed; retrying");
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(Error::transport(&method, &shown, e));
                }
                Ok(resp) => {
                    let status = resp.status();
                    self.remember_refreshed_cookie(&resp).await;
                    if status.is_success() {
                        tracing::trace!(method = %method, url = %shown, status = status.as_u16(), "couch response");
                        return Ok(resp);
                    }
                    if status == StatusCode::UNAUTHORIZED
                        && matches!(self.inner.auth, Auth::Cookie { .. })
                        && !renewed_session
                        && body.is_replayable()
                    {
                        // The session cookie expired: log in again once, then resend.
                        tracing::debug!(url = %shown, "couch session expired; renewing");
                        self.forget_session().await;
                        renewed_session = true;
                        continue;
                    }
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if transient && attempt < retries {
                        let wait = self.inner.retry.wait(attempt, retry_after(&resp));
                        tracing::warn!(method = %method, url = %shown, attempt, status = status.as_u16(),
                            ?wait, "couch request failed; retrying");
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(failure(&method, &shown, resp).await);
                }
            }
        }
    }

    /// Sends `call` and decodes its JSON body, read up to the client's
    /// `max_response_size`.
    pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(&self, call: Call) -> Result<T> {
        self.send_json_within(call, u64::MAX).await
    }

    /// [`CouchClient::send_json`] with a body of at most `limit` bytes (and never more than
    /// the client's `max_response_size`): a larger one is [`Error::ResponseTooLarge`].
    pub(crate) async fn send_json_within<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
        limit: u64,
    ) -> Result<T> {
        let method = call.method.clone();
        let shown = RedactedUrl::new(&call.url);
        let resp = self.send(call).await?;
        let limit = limit.min(self.inner.max_response);
        let bytes = read_body(resp, limit, &method, &shown).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid(&method, &shown, e))
    }

    /// Sends `call` and reads its body as bytes, up to the client's `max_response_size`.
    pub(crate) async fn send_bytes(&self, call: Call) -> Result<Bytes> {
        let method = call.method.clone();
        let shown = RedactedUrl::new(&call.url);
        let resp = self.send(call).await?;
        read_body(resp, self.inner.max_response, &method, &shown).await
    }
}

/// Reads a response body of at most `limit` bytes (as decoded, so a gzip bomb is limited
/// too). A `Content-Length` above the limit fails before anything is read; a body that
/// grows past it fails as soon as it does, with what was read dropped.
pub(crate) async fn read_body(
    resp: Response,
    limit: u64,
    method: &Method,
    url: &RedactedUrl,
) -> Result<Bytes> {
    let too_large = || Error::ResponseTooLarge {
        method: method.clone(),
        url: url.clone(),
        limit,
    };
    // `content_length` is the decoded length when known (reqwest drops it for gzip).
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // INVARIANT: `announced` is at most `limit` here; the capacity is only a hint, so a
    // server's Content-Length never makes us allocate more than a small first buffer.
    const FIRST_BUFFER: u64 = 1 << 20;
    let hint = announced.unwrap_or(0).min(FIRST_BUFFER);
    let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::transport(method, url, e))?;
        let len = u64::try_from(buf.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
        if len > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 allows both; a date in the past means
/// now).
fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The most of an error response's body that is read: CouchDB's `{"error", "reason"}` is
/// small, and a proxy's error page is shown only in part.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Reads an error response into an [`Error`] with CouchDB's `error` and `reason`.
pub(crate) async fn failure(method: &Method, url: &RedactedUrl, resp: Response) -> Error {
    #[derive(serde::Deserialize)]
    struct CouchError {
        #[serde(default)]
        error: serde_json::Value,
        #[serde(default)]
        reason: serde_json::Value,
    }
    let status = resp.status().as_u16();
    let retry_after = retry_after(&resp);
    // Only the start of an error body is shown, so only that much is read. A body cut
    // before that is a transport failure, whatever the status line said: a 404 whose
    // `reason` never arrived cannot say whether the document or the database is missing
    // (issue 19: a checkpoint read cut mid-body ended a live sync as "database gone").
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Error::transport(method, url, e),
        };
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    let (error, reason) = match serde_json::from_slice::<CouchError>(&body) {
        Ok(e) => (as_text(e.error), as_text(e.reason)),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    let err = Error::from_failure(Failure {
        method: method.clone(),
        url: url.clone(),
        status,
        error,
        reason,
        retry_after,
    });
    tracing::debug!(error = %err, "couch request failed");
    err
}

fn as_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Marks a header value as sensitive, so that reqwest and hyper never print it.
pub(crate) fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

pub(crate) const COOKIE_HEADER: reqwest::header::HeaderName = COOKIE;

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn seconds_and_http_dates_are_both_understood() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 20:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 20:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 19:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // Numbers a server may send that do not fit: never a panic.
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("99999999999999999999999", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        let policy = crate::RetryPolicy::default();
        assert_eq!(
            policy.wait(0, parse_retry_after("18446744073709551615", now)),
            policy.max_delay
        );
    }
}
