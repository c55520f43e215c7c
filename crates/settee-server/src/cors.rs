//! CORS for browser clients, as CouchDB's `[cors]` (`chttpd_cors`): preflight `OPTIONS`
//! answers, and the `Access-Control-*` headers on responses to an allowed `Origin`.
//! Origins match exactly (scheme, host and port, case and all). A preflight asking for a
//! method or request header CouchDB does not allow is not answered as one: the request goes
//! on as any `OPTIONS` request (the browser then refuses the cross-origin call).

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::options::Cors;

/// The methods a preflight may ask for (CouchDB's `SUPPORTED_METHODS`, its default `[cors]
/// methods`), in the order CouchDB lists them.
const METHODS: [&str; 9] = [
    "CONNECT", "COPY", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE",
];
/// The request headers a preflight may ask for (CouchDB's `SUPPORTED_HEADERS`).
const ALLOW_HEADERS: [&str; 19] = [
    "accept",
    "accept-language",
    "authorization",
    "content-length",
    "content-range",
    "content-type",
    "destination",
    "expires",
    "if-match",
    "last-modified",
    "origin",
    "pragma",
    "x-couch-full-commit",
    "x-couch-id",
    "x-couch-persist",
    "x-couchdb-www-authenticate",
    "x-http-method-override",
    "x-requested-with",
    "x-couchdb-vhost-path",
];
/// CouchDB's response headers that scripts may read (its `COUCH_HEADERS`), exposed
/// whether or not a response has them.
const COUCH_HEADERS: [&str; 6] = [
    "accept-ranges",
    "etag",
    "server",
    "x-couch-request-id",
    "x-couch-update-newrev",
    "x-couchdb-body-time",
];
/// The "simple" response headers: exposed when a response has them (`content-type`
/// always, as CouchDB does).
const SIMPLE_HEADERS: [&str; 6] = [
    "cache-control",
    "content-language",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed, and whether
    /// credentials may go with it. An allowed origin is echoed, as CouchDB does (also for
    /// `*`). Credentials only when configured, and then only for an origin listed by name:
    /// never through `*` (CouchDB's `*` with credentials would hand every web page the
    /// user's session; issue 20). `null` (sandboxed pages, files) is an origin like any
    /// other.
    fn allowed(&self, origin: &str) -> Option<(HeaderValue, bool)> {
        let listed = self.origins.iter().any(|o| o == origin);
        if !listed && !self.origins.iter().any(|o| o == "*") {
            return None;
        }
        HeaderValue::from_str(origin)
            .ok()
            .map(|v| (v, listed && self.credentials))
    }

    /// The answer to a preflight request, or `None` if this is not one CouchDB answers: no
    /// `Origin` or `Access-Control-Request-Method`, an origin not allowed, a method or a
    /// requested header CouchDB does not support.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
        let (allow, credentials) = self.allowed(origin)?;
        let asked = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
            .to_str()
            .ok()?;
        if !METHODS.contains(&asked) {
            return None;
        }
        let asked_headers = match headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            Some(v) => v.clone(),
            None => HeaderValue::from_static(""),
        };
        let supported = asked_headers
            .to_str()
            .ok()?
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| ALLOW_HEADERS.contains(&h.as_str()));
        if !supported {
            return None;
        }
        let mut res = Response::new(axum::body::Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_str(&METHODS.join(", ")).ok()?,
        );
        // The headers asked for, as asked (CouchDB's answer).
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked_headers);
        if let Ok(v) = HeaderValue::from_str(&self.max_age.as_secs().to_string()) {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
        }
        credentials_and_vary(h, credentials);
        Some(res)
    }

    /// Adds the CORS headers to a response to a request from an allowed origin.
    pub(crate) fn decorate(&self, request: &HeaderMap, res: &mut Response) {
        let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return;
        };
        let Some((allow, credentials)) = self.allowed(origin) else {
            return;
        };
        let mut expose = vec!["content-type"];
        expose.extend(
            SIMPLE_HEADERS
                .iter()
                .filter(|h| **h != "content-type" && res.headers().contains_key(**h)),
        );
        expose.extend(COUCH_HEADERS);
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if let Ok(v) = HeaderValue::from_str(&expose.join(", ")) {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
        credentials_and_vary(h, credentials);
    }
}

/// What both answers to an allowed origin end with: whether it may send credentials, and
/// `Vary: Origin` (the answer depends on who asks, so caches must keep them apart).
fn credentials_and_vary(h: &mut HeaderMap, credentials: bool) {
    if credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origin_is_echoed_and_others_get_nothing() {
        let cors = Cors {
            origins: vec!["https://app.example".into()],
            ..Default::default()
        };
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        let res = cors.preflight(&Method::OPTIONS, &req).unwrap();
        assert_eq!(
            res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cors.preflight(&Method::OPTIONS, &req).is_none());
    }

    /// Issue 20, finding 7: `*` never goes with credentials, and credentials are off unless
    /// configured; `null` is an origin like any other (allowed only if listed).
    #[test]
    fn credentials_only_when_asked_and_never_with_a_wildcard() {
        let answer = |cors: &Cors, origin: &'static str| {
            let mut req = HeaderMap::new();
            req.insert(header::ORIGIN, HeaderValue::from_static(origin));
            let mut res = Response::new(axum::body::Body::empty());
            cors.decorate(&req, &mut res);
            let h = res.headers();
            (
                h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .map(|v| v.to_str().unwrap().to_owned()),
                h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_some(),
            )
        };
        let any = Cors::default();
        assert!(!any.credentials, "off unless asked");
        assert_eq!(
            answer(&any, "https://evil.example"),
            (Some("https://evil.example".into()), false)
        );
        assert_eq!(answer(&any, "null"), (Some("null".into()), false));
        let with = Cors {
            origins: vec!["*".into(), "https://app.example".into()],
            credentials: true,
            ..Default::default()
        };
        assert_eq!(
            answer(&with, "https://evil.example"),
            (Some("https://evil.example".into()), false)
        );
        assert_eq!(answer(&with, "null"), (Some("null".into()), false));
        assert_eq!(
            answer(&with, "https://app.example"),
            (Some("https://app.example".into()), true)
        );
        let listed = Cors {
            origins: vec!["https://app.example".into()],
            credentials: true,
            ..Default::default()
        };
        assert_eq!(answer(&listed, "null"), (None, false));
    }
}
