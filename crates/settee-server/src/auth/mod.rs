//! Who a request is and what it may do. A request authenticates by basic auth or an
//! `AuthSession` cookie (`/_session`) as a server admin (`--admin`, or the advertised
//! owner credential) or as a user of the `_users` database (`users.rs`), or is anonymous.
//! Failed logins are counted and lock a name out for an address (`lockout.rs`); the
//! `_security` rules are in `security.rs`, the cookie in `cookie.rs`, the `/_session`
//! endpoint in `session.rs`. Without a configured admin every request is an admin (CouchDB
//! 1's "admin party", loopback only).

mod cookie;
mod lockout;
mod security;
mod session;
pub(crate) mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use serde_json::{json, Value};
use settee_store::GetOptions;
use sha2::{Digest, Sha256};

use crate::error::HttpError;
use crate::options::{Admin, Lockout, SameSite};
use crate::registry::{Registry, USERS_DB};

pub(crate) use security::{check, require_db_admin_to_maintain, require_server_admin, Need};
use users::{CredentialCache, StoredUser};

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
    /// The advertised owner credential (see `settee_store::Advert`): an admin too.
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
                    user: self.admin_user(registry, &admin.name, method).await?,
                    salt: String::new(),
                }));
            }
            self.failures.failed(peer, name, "");
            return Ok(None);
        }
        let stored = stored_user(registry, name).await?;
        if stored.as_ref().is_some_and(|u| u.has_totp) {
            // CouchDB asks a user with a `totp` secret for a one-time token as well;
            // Settee has no TOTP, and a login by password alone would drop the second
            // factor, so such a user cannot log in (CouchDB's basic-auth answer to them).
            return Ok(None);
        }
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

    /// A configured admin: `_admin` and the roles of a `_users` document of the same name,
    /// if there is one (CouchDB's `couch_auth_cache:get_user_creds` adds them).
    async fn admin_user(
        &self,
        registry: &Registry,
        name: &str,
        method: &'static str,
    ) -> Result<UserCtx, HttpError> {
        let mut user = Auth::admin_ctx(Some(name.to_owned()), Some(method));
        if let Some(doc) = user_doc(registry, name).await? {
            for role in users::doc_roles(&doc, name) {
                if !user.roles.contains(&role) {
                    user.roles.push(role);
                }
            }
        }
        Ok(user)
    }

    /// Who sent the request. Wrong basic credentials are a 401 (CouchDB's), a locked
    /// name 403, basic credentials that are not base64 and a cookie not of CouchDB's
    /// shape 400; a forged or expired cookie is ignored (the request is anonymous).
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
        if let Some((name, password)) = basic_credentials(headers)? {
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
        let Some(token) = cookie::parse(value)? else {
            return Ok(None);
        };
        let (user, salt) = match self.configured(&token.name) {
            Some(admin) => (
                self.admin_user(registry, &admin.name, "cookie").await?,
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
}

/// The `_users` document of user `name` (with its `_conflicts`), if that database and
/// document exist.
async fn user_doc(registry: &Registry, name: &str) -> Result<Option<Value>, HttpError> {
    let Some(open) = registry.get(USERS_DB).await? else {
        return Ok(None);
    };
    let id = users::user_doc_id(name);
    let opts = GetOptions {
        conflicts: true,
        ..Default::default()
    };
    open.run(move |db| match db.get(&id, &opts) {
        Ok(doc) => Ok(Some(doc)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    })
    .await
}

/// The stored credentials of user `name` in `_users`, if that database and user exist.
/// A user document in conflict logs nobody in: 401, as CouchDB's
/// `couch_auth_cache:validate_user_creds` (which revision's password would count?).
async fn stored_user(registry: &Registry, name: &str) -> Result<Option<StoredUser>, HttpError> {
    let Some(doc) = user_doc(registry, name).await? else {
        return Ok(None);
    };
    if doc
        .get("_conflicts")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        return Err(HttpError::unauthorized(users::CONFLICTED));
    }
    // A document whose name disagrees with its id is nobody's.
    Ok(StoredUser::from_doc(&doc).filter(|u| u.name == name))
}

/// Base64 with or without its padding (CouchDB refuses it unpadded; some clients leave the
/// padding out, and taking it costs nothing).
const BASIC_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Name and password of an `Authorization: Basic` header (the scheme in any case, as RFC
/// 7235 has it), read as CouchDB's `basic_name_pw`: none for another scheme, a value
/// without `:`, or `_:_` (what a page sends to make a browser forget its basic credentials:
/// CouchDB's basic-auth logout); 400 for a value that is not base64. The password is
/// everything after the first `:`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, HttpError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = BASIC_BASE64
        .decode(rest.trim())
        .map_err(|_| HttpError::bad_request("Authorization header has invalid base64 value"))?;
    // Names and passwords are text; other bytes match no user.
    let text = String::from_utf8(decoded)
        .map_err(|_| HttpError::unauthorized("Name or password is incorrect."))?;
    Ok(match text.split_once(':') {
        Some(("_", "_")) | None => None,
        Some((name, password)) => Some((name.to_owned(), password.to_owned())),
    })
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
