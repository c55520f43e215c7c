//! Reading what a server answers: a body within a size limit, and an error status turned
//! into an [`Error`] with CouchDB's `error` and `reason` (and `Retry-After`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::{Method, Response};

use crate::{Error, Failure, RedactedUrl, Result};

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
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
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
