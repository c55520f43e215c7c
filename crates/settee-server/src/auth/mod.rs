//! Who a request is and what it may do. A request authenticates by basic auth or an
//! `AuthSession` cookie (`/_session`) as a server admin (`--admin`, or the advertised
//! owner credential) or as a user of the `_users` database (`users.rs`), or is anonymous.
//! Failed logins are counted and lock a name out for an address (`lockout.rs`); the
//! `_security` rules are in `security.rs`, the cookie in `cookie.rs`. Without a
//! configured admin every request is an admin (CouchDB 1's "admin party", loopback only).

mod cookie;
mod lockout;
mod security;
pub(crate) mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};
use settee_store::GetOptions;
use sha2::{Digest, Sha256};

use crate::body;
use crate::error::HttpError;
use crate::registry::Registry;
use crate::Admin;

pub use cookie::SameSite;
pub use lockout::{Lockout, LockoutMode};
pub(crate) use security::{
    check, default_security, require_db_admin_to_maintain, require_server_admin, Need,
};
use users::{CredentialCache, StoredUser, USERS_DB};

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

/// How users log in: the settings [`Auth`] is made with.
pub(crate) struct AuthSettings {
    pub(crate) admin: Option<Admin>,
    /// The advertised owner credential (see `advert.rs`): an admin too.
    pub(crate) owner: Option<Admin>,
    pub(crate) admin_party: bool,
    pub(crate) session_timeout: Duration,
    pub(crate) same_site: SameSite,
    pub(crate) secure_cookie: bool,
    pub(crate) lockout: Lockout,
}

/// Checks credentials and issues session cookies.
pub(crate) struct Auth {
    admin: Option<Admin>,
    owner: Option<Admin>,
    /// No admin and no owner: every request is an admin.
    admin_party: bool,
    /// Signs session cookies (with the user's salt); new at each start, so a restart logs
    /// everyone out.
    secret: [u8; 32],
    cookie: cookie::CookieSettings,
    failures: lockout::Failures,
    cache: CredentialCache,
    /// PBKDF2 runs at once: each is ~0.1-1 s of one core, so a login flood waits here
    /// instead of taking every core from the requests of others.
    hashing: Arc<tokio::sync::Semaphore>,
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

/// A successful login: the user and the salt their cookies are signed with.
struct Login {
    user: UserCtx,
    salt: String,
}

impl Auth {
    pub(crate) fn new(s: AuthSettings) -> Auth {
        // Half the cores at most hash passwords, so a login flood leaves the rest to
        // other requests.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hashers = (cores / 2).max(1);
        Auth {
            admin_party: s.admin_party && s.admin.is_none(),
            admin: s.admin,
            owner: s.owner,
            secret: rand::random(),
            cookie: cookie::CookieSettings {
                timeout: s.session_timeout,
                same_site: s.same_site,
                secure: s.secure_cookie,
            },
            failures: lockout::Failures::new(s.lockout),
            cache: CredentialCache::new(Duration::from_secs(60), 4096),
            hashing: Arc::new(tokio::sync::Semaphore::new(hashers)),
        }
    }

    fn admin_ctx(name: Option<String>, method: Option<&'static str>) -> UserCtx {
        UserCtx {
            name,
            roles: vec![ADMIN_ROLE.to_owned()],
            method,
        }
    }

    /// The configured admin (or owner) named `name`, if any.
    fn configured(&self, name: &str) -> Option<&Admin> {
        [&self.admin, &self.owner]
            .into_iter()
            .flatten()
            .find(|a| same_secret(name, &a.name))
    }

    /// The user `name`/`password` logs in as: `Ok(None)` if wrong, 403 while the name is
    /// locked for `peer` (even with the right password). Configured admins come first, as
    /// CouchDB's `[admins]` do.
    async fn login(
        &self,
        registry: &Registry,
        name: &str,
        password: &str,
        peer: Option<IpAddr>,
        method: &'static str,
    ) -> Result<Option<Login>, HttpError> {
        if let Some(admin) = self.configured(name) {
            self.failures.check(peer, name, "")?;
            if same_secret(password, &admin.password) {
                return Ok(Some(Login {
                    user: Auth::admin_ctx(Some(admin.name.clone()), Some(method)),
                    salt: String::new(),
                }));
            }
            self.failures.failed(peer, name, "");
            return Ok(None);
        }
        let stored = stored_user(registry, name).await?;
        let salt = stored.as_ref().map_or("", |u| u.salt.as_str());
        self.failures.check(peer, name, salt)?;
        let Some(stored) = stored else {
            self.failures.failed(peer, name, "");
            return Ok(None);
        };
        let ok =
            self.cache.hit(&stored, password) || {
                let permit =
                    self.hashing.clone().acquire_owned().await.map_err(|e| {
                        HttpError::internal(format!("password hashing closed: {e}"))
                    })?;
                let (user, pw) = (stored.clone(), password.to_owned());
                let ok = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    user.verify(&pw)
                })
                .await
                .map_err(|e| HttpError::internal(format!("password check failed: {e}")))?;
                if ok {
                    self.cache.insert(&stored, password);
                }
                ok
            };
        if !ok {
            self.failures.failed(peer, name, &stored.salt);
            return Ok(None);
        }
        Ok(Some(Login {
            user: stored.ctx(method),
            salt: stored.salt.clone(),
        }))
    }

    /// Who sent the request. Wrong basic credentials are a 401 (CouchDB's), a locked
    /// name 403; a bad or expired cookie is ignored (the request is anonymous).
    pub(crate) async fn authenticate(
        &self,
        registry: &Registry,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Authenticated, HttpError> {
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
            let login = self
                .login(registry, &name, &password, peer, "default")
                .await?
                .ok_or_else(|| HttpError::unauthorized("Name or password is incorrect."))?;
            return Ok(Authenticated {
                user: login.user,
                renew_cookie: None,
            });
        }
        if let Some(value) = cookie::cookie_value(headers, cookie::COOKIE) {
            if let Some(found) = self.cookie_user(registry, &value).await? {
                return Ok(found);
            }
        }
        Ok(Authenticated {
            user: UserCtx::default(),
            renew_cookie: None,
        })
    }

    /// The user of a valid cookie: a configured admin, or a user whose document still
    /// exists with the salt the cookie was signed with.
    async fn cookie_user(
        &self,
        registry: &Registry,
        value: &str,
    ) -> Result<Option<Authenticated>, HttpError> {
        let Some(token) = cookie::parse(value) else {
            return Ok(None);
        };
        let (user, salt) = match self.configured(&token.name) {
            Some(admin) => (
                Auth::admin_ctx(Some(admin.name.clone()), Some("cookie")),
                String::new(),
            ),
            None => match stored_user(registry, &token.name).await? {
                Some(u) => (u.ctx("cookie"), u.salt),
                None => return Ok(None),
            },
        };
        let Some(issued) = token.verify(&self.secret, &salt, self.cookie.timeout) else {
            return Ok(None);
        };
        let half = self.cookie.timeout.as_secs() / 2;
        let renew = (cookie::now_secs().saturating_sub(issued) > half)
            .then(|| self.cookie.header(&self.secret, &token.name, &salt));
        Ok(Some(Authenticated {
            user,
            renew_cookie: renew,
        }))
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

    /// `POST /_session` with `{name, password}` (JSON or form): a cookie, 401, or 403
    /// while the name is locked out.
    pub(crate) async fn login_session(
        &self,
        registry: &Registry,
        headers: &HeaderMap,
        bytes: &[u8],
        peer: Option<IpAddr>,
    ) -> Response {
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
                Err(_) => return HttpError::invalid_json().into_response(),
            }
        };
        let login = match (name, password) {
            (Some(n), Some(p)) => match self.login(registry, &n, &p, peer, "cookie").await {
                Ok(login) => login,
                Err(e) => return e.into_response(),
            },
            _ => None,
        };
        let Some(login) = login else {
            let mut res = HttpError::unauthorized("Name or password is incorrect.").into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, self.cookie.clear());
            return res;
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
        res
    }

    /// `DELETE /_session`.
    pub(crate) fn logout_session(&self) -> Response {
        let mut res = body::ok();
        res.headers_mut()
            .insert(header::SET_COOKIE, self.cookie.clear());
        res
    }
}

/// The stored credentials of user `name` in `_users`, if that database and user exist.
async fn stored_user(registry: &Registry, name: &str) -> Result<Option<StoredUser>, HttpError> {
    let Some(open) = registry.get(USERS_DB).await? else {
        return Ok(None);
    };
    let id = users::user_doc_id(name);
    let doc = open
        .run(move |db| match db.get(&id, &GetOptions::default()) {
            Ok(doc) => Ok(Some(doc)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await?;
    // A document whose name disagrees with its id is nobody's.
    Ok(doc
        .as_ref()
        .and_then(StoredUser::from_doc)
        .filter(|u| u.name == name))
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
    use super::*;

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
}
