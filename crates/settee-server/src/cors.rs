//! CORS for browser clients (CouchDB's `[cors]`): preflight `OPTIONS` answers, and the
//! `Access-Control-*` headers on responses to an allowed `Origin`.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::Cors;

/// The methods browsers may use (CouchDB's default `[cors] methods`).
const METHODS: &str = "GET, PUT, POST, HEAD, DELETE";
/// The request headers browsers may send (CouchDB's defaults).
const ALLOW_HEADERS: &str =
    "accept, authorization, content-type, origin, referer, x-csrf-token, if-match, destination, x-requested-with";
/// The response headers scripts may read (CouchDB's list).
const EXPOSE_HEADERS: &str =
    "content-type, cache-control, accept-ranges, etag, server, x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time";

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed, and whether
    /// credentials may go with it. As CouchDB's `[cors]`: credentials only when configured,
    /// and then only for an origin listed by name: never for `*` (a browser refuses `*` with
    /// credentials, and echoing any origin instead would hand every web page the user's
    /// session; issue 20). `null` (sandboxed pages, files) matches only if listed.
    fn allowed(&self, origin: &str) -> Option<(HeaderValue, bool)> {
        if self.origins.iter().any(|o| o == origin) {
            return HeaderValue::from_str(origin)
                .ok()
                .map(|v| (v, self.credentials));
        }
        self.origins
            .iter()
            .any(|o| o == "*")
            .then(|| (HeaderValue::from_static("*"), false))
    }

    /// The answer to a preflight request, or `None` if this is not one.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
        headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut res = Response::new(axum::body::Body::empty());
        *res.status_mut() = StatusCode::OK;
        if let Some((allow, credentials)) = self.allowed(origin) {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            if let Ok(v) = HeaderValue::from_str(&self.max_age.as_secs().to_string()) {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
            }
            if credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
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
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        if credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
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
        let res = cors.preflight(&Method::OPTIONS, &req).unwrap();
        assert!(res
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
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
            (Some("*".into()), false)
        );
        assert_eq!(answer(&any, "null"), (Some("*".into()), false));
        let with = Cors {
            origins: vec!["*".into(), "https://app.example".into()],
            credentials: true,
            ..Default::default()
        };
        assert_eq!(
            answer(&with, "https://evil.example"),
            (Some("*".into()), false)
        );
        assert_eq!(answer(&with, "null"), (Some("*".into()), false));
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
