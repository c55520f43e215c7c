//! What one request is before it is sent: its method, URL, headers, body (replayable or
//! not) and whether it may be sent again after a failure whose outcome is unknown. Each
//! endpoint builds its `Call`s; `transport.rs` sends them.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::Method;
use serde::Serialize;
use url::Url;

use crate::{Error, RedactedUrl, Result};

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

    pub(crate) fn is_replayable(&self) -> bool {
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

/// Marks a header value as sensitive, so that reqwest and hyper never print it.
pub(crate) fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

pub(crate) const COOKIE_HEADER: reqwest::header::HeaderName = COOKIE;
