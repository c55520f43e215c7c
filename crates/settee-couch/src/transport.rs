//! Sending one request: authentication (basic, bearer, cookie session renewed on 401),
//! retries of idempotent requests, and an error status turned into an [`Error`]. What a
//! request is (`call.rs`) and reading an answer (`answer.rs`) sit beside it; what to ask
//! for is each endpoint's business (`db.rs`, `changes.rs`, ...).

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Response, StatusCode};

use crate::answer::{failure, read_body, retry_after};
use crate::call::{Body, Call, Idempotency};
use crate::client::{Auth, CouchClient};
use crate::{Error, RedactedUrl, Result};

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
