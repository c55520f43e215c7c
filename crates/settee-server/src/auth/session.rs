//! The `/_session` endpoint, as CouchDB's `couch_httpd_auth:handle_session_req`: `GET` says
//! who the request is (an anonymous one asking `?basic=true` gets 401), `POST` logs in by
//! name and password (JSON or a form) and sets the `AuthSession` cookie, `DELETE` clears it.
//! A login redirects to `?next=` when it succeeds and to `?fail=` when it fails, and a
//! logout to `?next=`, as CouchDB's do (Fauxton and old CouchApps log in through forms).
//! Who may log in, and how, is `Auth::login`'s.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::{Auth, UserCtx};
use crate::body;
use crate::error::HttpError;
use crate::query::Query;
use crate::registry::Registry;

/// A login's name and password, as CouchDB's `extract_username` reads the body: `name`, or
/// `username` (which must then agree with `name`); a missing password is the empty one.
fn credentials(fields: &Map<String, Value>) -> Result<(String, String), HttpError> {
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = match (text("name"), text("username")) {
        (None, None) => {
            return Err(HttpError::bad_request(
                "request body must contain a username",
            ))
        }
        (Some(n), Some(u)) if n != u => {
            return Err(HttpError::bad_request(
                "request body contains different usernames",
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
    };
    Ok((name, text("password").unwrap_or_default()))
}

/// The fields of a login body: a form or JSON, the two types CouchDB takes (415 otherwise).
fn login_fields(headers: &HeaderMap, bytes: &[u8]) -> Result<Map<String, Value>, HttpError> {
    match body::media_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => {
            let q = Query::parse(Some(&String::from_utf8_lossy(bytes)));
            let mut m = Map::new();
            for key in ["name", "username", "password"] {
                if let Some(v) = q.str(key) {
                    m.insert(key.to_owned(), Value::from(v));
                }
            }
            Ok(m)
        }
        Some("application/json") => match body::parse_json(bytes)? {
            Value::Object(m) => Ok(m),
            _ => Err(HttpError::bad_request("Request body must be a JSON object")),
        },
        _ => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'",
        )),
    }
}

/// `res` turned into CouchDB's redirect to `path` (`?next=`/`?fail=`): 302 with an absolute
/// `Location` on this server (so `//host` cannot send the browser elsewhere), 400 for a
/// path that does not begin with `/`.
fn redirect(mut res: Response, headers: &HeaderMap, path: &str) -> Response {
    if !path.starts_with('/') {
        return HttpError::bad_request("path must begin with a /.").into_response();
    }
    let Ok(location) = HeaderValue::from_str(&crate::location::absolute_url(headers, path)) else {
        return HttpError::bad_request("the path cannot be sent in a Location header")
            .into_response();
    };
    *res.status_mut() = StatusCode::FOUND;
    res.headers_mut().insert(header::LOCATION, location);
    res
}

impl Auth {
    /// `GET /_session`: the request's user and how it authenticated.
    pub(crate) fn session_info(
        &self,
        user: &UserCtx,
        query: &Query,
    ) -> Result<Response, HttpError> {
        // `?basic=true` asks anonymous clients to log in (CouchDB's "force basic login").
        if user.name.is_none() && query.str("basic") == Some("true") {
            return Err(HttpError::unauthorized("Please login."));
        }
        let mut info = json!({"authentication_handlers": ["cookie", "default"]});
        if let Some(m) = user.method {
            info["authenticated"] = Value::from(m);
        }
        Ok(body::json(
            StatusCode::OK,
            &json!({"ok": true, "userCtx": user.to_json(), "info": info}),
        ))
    }

    /// `POST /_session` with `{name, password}` (JSON or form): a cookie, 401, or 403
    /// while the name is locked out; 302 to `?next=`/`?fail=` when given.
    pub(crate) async fn login_session(
        &self,
        registry: &Registry,
        headers: &HeaderMap,
        query: &Query,
        bytes: &[u8],
        peer: Option<IpAddr>,
    ) -> Response {
        let (name, password) = match login_fields(headers, bytes).and_then(|f| credentials(&f)) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        let login = match self.login(registry, &name, &password, peer, "cookie").await {
            Ok(login) => login,
            Err(e) => return e.into_response(),
        };
        let Some(login) = login else {
            let mut res = HttpError::unauthorized("Name or password is incorrect.").into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, self.cookie.clear());
            return match query.str("fail") {
                Some(path) => redirect(res, headers, path),
                None => res,
            };
        };
        let name = login.user.name.clone().unwrap_or_default();
        let mut res = body::json(
            StatusCode::OK,
            &json!({"ok": true, "name": login.user.name, "roles": login.user.roles}),
        );
        res.headers_mut().insert(
            header::SET_COOKIE,
            self.cookie.header(&self.secret, &name, &login.salt),
        );
        match query.str("next") {
            Some(path) => redirect(res, headers, path),
            None => res,
        }
    }

    /// `DELETE /_session`: clears the cookie; 302 to `?next=` when given.
    pub(crate) fn logout_session(&self, headers: &HeaderMap, query: &Query) -> Response {
        let mut res = body::ok();
        res.headers_mut()
            .insert(header::SET_COOKIE, self.cookie.clear());
        match query.str("next") {
            Some(path) => redirect(res, headers, path),
            None => res,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_or_username_as_couchdb_reads_them() {
        let f = |v: Value| credentials(v.as_object().unwrap());
        assert_eq!(
            f(json!({"name": "a", "password": "p"})).unwrap(),
            ("a".into(), "p".into())
        );
        assert_eq!(
            f(json!({"username": "a", "name": "a"})).unwrap(),
            ("a".into(), String::new())
        );
        assert_eq!(
            f(json!({"password": "p"})).unwrap_err().reason,
            "request body must contain a username"
        );
        assert_eq!(
            f(json!({"username": "a", "name": "b"})).unwrap_err().reason,
            "request body contains different usernames"
        );
    }
}
