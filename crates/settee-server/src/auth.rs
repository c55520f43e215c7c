//! Who a request is and what it may do: the admin by basic auth or an `AuthSession` cookie
//! (`/_session`), anyone else anonymous; and CouchDB's `_security` rules for a database
//! (members may read and write documents, admins also design documents and settings).
//! Without a configured admin every request is an admin (CouchDB 1's "admin party").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::body;
use crate::error::HttpError;
use crate::Admin;

type HmacSha256 = Hmac<Sha256>;

const COOKIE: &str = "AuthSession";
const ADMIN_ROLE: &str = "_admin";

/// The user a request acts as (CouchDB's `userCtx`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserCtx {
    pub(crate) name: Option<String>,
    pub(crate) roles: Vec<String>,
    /// How the request authenticated (`cookie`, `default` for basic), if it did.
    pub(crate) method: Option<&'static str>,
}

impl UserCtx {
    pub(crate) fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "roles": self.roles})
    }
}

/// Checks credentials and issues session cookies.
pub(crate) struct Auth {
    admin: Option<Admin>,
    /// The advertised owner credential (see `advert.rs`): an admin too.
    owner: Option<Admin>,
    /// No admin and no owner: every request is an admin.
    admin_party: bool,
    /// Signs session cookies; new at each start, so a restart logs everyone out.
    secret: [u8; 32],
    timeout: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares two secrets in time independent of where they differ (both are hashed first,
/// so their lengths leak nothing either).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// What authenticating a request gave: who it is, and a renewed cookie to send back.
pub(crate) struct Authenticated {
    pub(crate) user: UserCtx,
    pub(crate) renew_cookie: Option<HeaderValue>,
}

impl Auth {
    pub(crate) fn new(
        admin: Option<Admin>,
        owner: Option<Admin>,
        admin_party: bool,
        timeout: Duration,
    ) -> Auth {
        Auth {
            admin_party: admin_party && admin.is_none(),
            admin,
            owner,
            secret: rand::random(),
            timeout,
        }
    }

    fn admin_ctx(name: Option<String>, method: Option<&'static str>) -> UserCtx {
        UserCtx {
            name,
            roles: vec![ADMIN_ROLE.to_owned()],
            method,
        }
    }

    /// The user for `name`/`password`, if they are right.
    fn login(&self, name: &str, password: &str) -> Option<UserCtx> {
        [&self.admin, &self.owner]
            .into_iter()
            .flatten()
            .find_map(|admin| {
                // Both compared, always, so timing does not tell which was wrong.
                let ok = same_secret(name, &admin.name) & same_secret(password, &admin.password);
                ok.then(|| Auth::admin_ctx(Some(admin.name.clone()), Some("default")))
            })
    }

    /// Who sent the request. Wrong basic credentials are a 401 (CouchDB's); a bad or
    /// expired cookie is ignored (the request is anonymous).
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, HttpError> {
        if self.admin_party {
            // DNS rebinding (issue 20): a web page whose own name resolves to 127.0.0.1
            // reaches a loopback server with its name in `Host`, and would be an admin here.
            // Admin party answers only requests that name the server by a loopback name.
            if let Some(host) = headers.get(axum::http::header::HOST) {
                let host = host.to_str().unwrap_or_default();
                if !names_loopback(host) {
                    return Err(HttpError::forbidden(format!(
                        "without an admin, settee serve answers only requests to localhost or a loopback address, not {host:?}: give an admin (--admin) to serve other names"
                    )));
                }
            }
            return Ok(Authenticated {
                user: Auth::admin_ctx(None, None),
                renew_cookie: None,
            });
        }
        if let Some((name, password)) = basic_credentials(headers) {
            let user = self
                .login(&name, &password)
                .ok_or_else(|| HttpError::unauthorized("Name or password is incorrect."))?;
            return Ok(Authenticated {
                user,
                renew_cookie: None,
            });
        }
        if let Some(cookie) = cookie_value(headers, COOKIE) {
            if let Some((name, issued)) = self.verify_cookie(&cookie) {
                let renew = (now_secs().saturating_sub(issued) > self.timeout.as_secs() / 2)
                    .then(|| self.cookie_header(&name));
                // Only admins get cookies, so a valid one names an admin.
                let user = Auth::admin_ctx(Some(name), Some("cookie"));
                return Ok(Authenticated {
                    user,
                    renew_cookie: renew,
                });
            }
        }
        Ok(Authenticated {
            user: UserCtx::default(),
            renew_cookie: None,
        })
    }

    fn sign(&self, payload: &str) -> Vec<u8> {
        // INVARIANT: HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("hmac accepts any key");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// `name:issued-time-hex:signature-hex`, base64url: opaque to clients, as CouchDB's is.
    fn cookie_token(&self, name: &str, issued: u64) -> String {
        let payload = format!("{name}:{issued:X}");
        let sig = hex_encode(&self.sign(&payload));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{payload}:{sig}"))
    }

    /// The name and issue time in a valid, unexpired cookie.
    fn verify_cookie(&self, token: &str) -> Option<(String, u64)> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (payload, sig) = raw.rsplit_once(':')?;
        let (name, issued) = payload.rsplit_once(':')?;
        let issued = u64::from_str_radix(issued, 16).ok()?;
        let sig = hex_decode(sig)?;
        // INVARIANT: HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("hmac accepts any key");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let age = now_secs().checked_sub(issued)?;
        (age < self.timeout.as_secs()).then(|| (name.to_owned(), issued))
    }

    fn cookie_header(&self, name: &str) -> HeaderValue {
        let token = self.cookie_token(name, now_secs());
        let max_age = self.timeout.as_secs();
        let expires = httpdate::fmt_http_date(SystemTime::now() + self.timeout);
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Version=1; Expires={expires}; Max-Age={max_age}; Path=/; HttpOnly"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("AuthSession=; Path=/"))
    }

    fn clear_cookie() -> HeaderValue {
        HeaderValue::from_static(
            "AuthSession=; Version=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly",
        )
    }

    /// `GET /_session`.
    pub(crate) fn session_info(&self, user: &UserCtx) -> Response {
        let mut info = json!({"authentication_handlers": ["cookie", "default"]});
        if let Some(m) = user.method {
            info["authenticated"] = Value::from(m);
        }
        body::json(
            StatusCode::OK,
            &json!({"ok": true, "userCtx": user.to_json(), "info": info}),
        )
    }

    /// `POST /_session` with `{name, password}` (JSON or form): a cookie, or 401.
    pub(crate) fn login_session(&self, headers: &HeaderMap, bytes: &[u8]) -> Response {
        let form =
            body::media_type(headers).as_deref() == Some("application/x-www-form-urlencoded");
        let (name, password) = if form {
            let q = crate::query::Query::parse(std::str::from_utf8(bytes).ok());
            (
                q.str("name").map(str::to_owned),
                q.str("password").map(str::to_owned),
            )
        } else {
            match serde_json::from_slice::<Map<String, Value>>(bytes) {
                Ok(m) => (
                    m.get("name").and_then(Value::as_str).map(str::to_owned),
                    m.get("password").and_then(Value::as_str).map(str::to_owned),
                ),
                Err(_) => {
                    return axum::response::IntoResponse::into_response(HttpError::invalid_json())
                }
            }
        };
        let user = match (name, password) {
            (Some(n), Some(p)) => self.login(&n, &p),
            _ => None,
        };
        let Some(user) = user else {
            let mut res = axum::response::IntoResponse::into_response(HttpError::unauthorized(
                "Name or password is incorrect.",
            ));
            res.headers_mut()
                .insert(header::SET_COOKIE, Auth::clear_cookie());
            return res;
        };
        let name = user.name.clone().unwrap_or_default();
        let mut res = body::json(
            StatusCode::OK,
            &json!({"ok": true, "name": user.name, "roles": user.roles}),
        );
        res.headers_mut()
            .insert(header::SET_COOKIE, self.cookie_header(&name));
        res
    }

    /// `DELETE /_session`.
    pub(crate) fn logout_session() -> Response {
        let mut res = body::ok();
        res.headers_mut()
            .insert(header::SET_COOKIE, Auth::clear_cookie());
        res
    }
}

/// Name and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The security object CouchDB 3 gives a database nobody has set one on: admins only.
pub(crate) fn default_security() -> Map<String, Value> {
    let v = json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}});
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// What a request needs on a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Read and write documents: a member (or any user when the database has no members).
    Member,
    /// Design documents and settings: a database or server admin.
    Admin,
}

fn names_roles(sec: &Map<String, Value>, part: &str) -> (Vec<String>, Vec<String>) {
    let list = |key: &str| -> Vec<String> {
        sec.get(part)
            .and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    (list("names"), list("roles"))
}

fn listed(user: &UserCtx, names: &[String], roles: &[String]) -> bool {
    user.name.as_ref().is_some_and(|n| names.contains(n))
        || user.roles.iter().any(|r| roles.contains(r))
}

/// CouchDB's `_security` check: 401 for an anonymous request that lacks access, 403 for a
/// logged-in one.
pub(crate) fn check(
    security: &Map<String, Value>,
    user: &UserCtx,
    need: Need,
) -> Result<(), HttpError> {
    if user.is_admin() {
        return Ok(());
    }
    let (admin_names, admin_roles) = names_roles(security, "admins");
    if listed(user, &admin_names, &admin_roles) {
        return Ok(());
    }
    if need == Need::Admin {
        return Err(if user.name.is_none() {
            HttpError::unauthorized("You are not a db or server admin.")
        } else {
            HttpError::forbidden("You are not a db or server admin.")
        });
    }
    // A security object without `members` uses its legacy `readers`, as CouchDB does
    // (`couch_db:get_members`); ignoring them left such a database open to anyone (issue 20).
    let part = if security.contains_key("members") {
        "members"
    } else {
        "readers"
    };
    let (names, roles) = names_roles(security, part);
    if (names.is_empty() && roles.is_empty()) || listed(user, &names, &roles) {
        return Ok(());
    }
    Err(if user.name.is_none() {
        HttpError::unauthorized("You are not authorized to access this db.")
    } else {
        HttpError::forbidden("You are not allowed to access this db.")
    })
}

/// 401/403 unless the request is a server admin.
pub(crate) fn require_server_admin(user: &UserCtx) -> Result<(), HttpError> {
    if user.is_admin() {
        Ok(())
    } else if user.name.is_none() {
        Err(HttpError::unauthorized("You are not a server admin."))
    } else {
        Err(HttpError::forbidden("You are not a server admin."))
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost` (or a name under
/// `.localhost`, which resolvers keep on loopback), an address in 127.0.0.0/8, or `::1`,
/// with or without a port.
fn names_loopback(host: &str) -> bool {
    // A bare IPv6 address (`::1`) has colons of its own.
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        // `[::1]:5984`
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {

    /// Issue 20, finding 5: admin party answers loopback names only.
    #[test]
    fn only_loopback_names_reach_the_admin_party() {
        for ok in [
            "localhost",
            "localhost:5984",
            "LOCALHOST.:5984",
            "app.localhost:80",
            "127.0.0.1",
            "127.0.0.1:5984",
            "127.1.2.3:1",
            "[::1]:5984",
            "::1",
        ] {
            assert!(names_loopback(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:5984",
            "localhost.evil.example",
            "10.0.0.1:5984",
            "0.0.0.0:5984",
            "[::2]:80",
            "",
        ] {
            assert!(!names_loopback(bad), "{bad}");
        }
    }

    use super::*;

    fn auth() -> Auth {
        Auth::new(
            Some(Admin {
                name: "boss".into(),
                password: "pw".into(),
            }),
            Some(Admin {
                name: "_owner".into(),
                password: "tok".into(),
            }),
            true,
            Duration::from_secs(600),
        )
    }

    #[test]
    fn cookie_round_trips_and_tampering_is_rejected() {
        let a = auth();
        let token = a.cookie_token("boss", now_secs());
        assert_eq!(
            a.verify_cookie(&token).map(|(n, _)| n).as_deref(),
            Some("boss")
        );
        let raw = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .unwrap(),
        )
        .unwrap();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(raw.replacen("boss", "bosx", 1));
        assert!(a.verify_cookie(&forged).is_none());
        let old = a.cookie_token("boss", now_secs() - 601);
        assert!(a.verify_cookie(&old).is_none());
        // Another server's secret does not verify it.
        assert!(auth().verify_cookie(&token).is_none());
    }

    /// Issue 20, finding 10: legacy `readers` count when `members` is absent, as in
    /// CouchDB; `members` wins when both are there.
    #[test]
    fn legacy_readers_are_members_when_members_is_absent() {
        let sec = |v: serde_json::Value| v.as_object().unwrap().clone();
        let anonymous = UserCtx::default();
        let alice = UserCtx {
            name: Some("alice".into()),
            ..Default::default()
        };
        let readers = sec(serde_json::json!({"readers": {"names": ["alice"]}}));
        assert!(check(&readers, &alice, Need::Member).is_ok());
        assert!(check(&readers, &anonymous, Need::Member).is_err());
        let both = sec(
            serde_json::json!({"members": {"names": ["bob"]}, "readers": {"names": ["alice"]}}),
        );
        assert!(check(&both, &alice, Need::Member).is_err());
        let open = sec(serde_json::json!({"members": {}, "readers": {"names": ["alice"]}}));
        assert!(check(&open, &anonymous, Need::Member).is_ok());
    }

    #[test]
    fn security_members_and_admins() {
        let sec = serde_json::json!({"members": {"names": ["alice"], "roles": ["team"]},
            "admins": {"names": ["carol"]}});
        let sec = sec.as_object().unwrap();
        let user = |n: &str, roles: &[&str]| UserCtx {
            name: Some(n.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            method: Some("default"),
        };
        assert!(check(sec, &user("alice", &[]), Need::Member).is_ok());
        assert!(check(sec, &user("bob", &["team"]), Need::Member).is_ok());
        assert_eq!(
            check(sec, &user("bob", &[]), Need::Member)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            check(sec, &UserCtx::default(), Need::Member)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert!(check(sec, &user("alice", &[]), Need::Admin).is_err());
        assert!(check(sec, &user("carol", &[]), Need::Admin).is_ok());
        assert!(check(&Map::new(), &UserCtx::default(), Need::Member).is_ok());
        assert!(check(&default_security(), &UserCtx::default(), Need::Member).is_err());
    }

    #[test]
    fn wrong_basic_password_is_401() {
        let a = auth();
        let mut h = HeaderMap::new();
        let cred = base64::engine::general_purpose::STANDARD.encode("boss:nope");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {cred}").parse().unwrap(),
        );
        assert_eq!(
            a.authenticate(&h).err().unwrap().status,
            StatusCode::UNAUTHORIZED
        );
        let cred = base64::engine::general_purpose::STANDARD.encode("boss:pw");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {cred}").parse().unwrap(),
        );
        assert!(a.authenticate(&h).unwrap().user.is_admin());
        let cred = base64::engine::general_purpose::STANDARD.encode("_owner:tok");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {cred}").parse().unwrap(),
        );
        assert!(a.authenticate(&h).unwrap().user.is_admin());
        // With an owner but no admin and no admin party, anonymous requests are not admins.
        let owner_only = Auth::new(None, None, false, Duration::from_secs(1));
        assert!(!owner_only
            .authenticate(&HeaderMap::new())
            .unwrap()
            .user
            .is_admin());
    }
}
