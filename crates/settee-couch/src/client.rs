//! `CouchClient` (a server) and its builder: where credentials, headers, timeouts and the
//! connection pool live. Sending requests is `transport.rs`; databases are `db.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use reqwest::{Method, RequestBuilder, Response};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::call::{sensitive, Body, Call, COOKIE_HEADER};
use crate::ids::encode_segment;
use crate::{Error, RedactedUrl, RemoteDb, Result, RetryPolicy};

/// A password or token. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    /// Exchanged for an `AuthSession` cookie at `POST /_session`, renewed on 401.
    Cookie {
        user: String,
        password: Secret,
    },
    Bearer(Secret),
}

pub(crate) struct Inner {
    pub(crate) base: Url,
    pub(crate) shown: RedactedUrl,
    pub(crate) http: reqwest::Client,
    pub(crate) auth: Auth,
    pub(crate) headers: HeaderMap,
    pub(crate) retry: RetryPolicy,
    /// The largest response body read into memory (see [`ClientBuilder::max_response_size`]).
    pub(crate) max_response: u64,
    /// The `AuthSession` cookie. A tokio mutex because it is held across the `_session`
    /// request, so that concurrent requests log in once rather than once each.
    session: tokio::sync::Mutex<Option<HeaderValue>>,
}

/// A CouchDB server: its URL, credentials and connection pool. Cloning is cheap (an `Arc`),
/// and clones share the pool and the session cookie.
///
/// ```no_run
/// # async fn run() -> settee_couch::Result<()> {
/// let client = settee_couch::CouchClient::builder("http://admin:secret@127.0.0.1:5984").build()?;
/// let info = client.server_info().await?;
/// println!("CouchDB {}", info.version);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CouchClient {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for CouchClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.inner.auth {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Cookie { .. } => "cookie",
            Auth::Bearer(_) => "bearer",
        };
        f.debug_struct("CouchClient")
            .field("url", &self.inner.shown)
            .field("auth", &auth)
            .finish()
    }
}

/// The server's welcome document (`GET /`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `"Welcome"` on CouchDB (absent on pouchdb-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub couchdb: Option<String>,
    /// The server's version.
    pub version: String,
    /// The server's uuid (CouchDB 2+, pouchdb-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Optional features (CouchDB 2.1+), e.g. `"partitioned"`.
    #[serde(default)]
    pub features: Vec<String>,
    /// The vendor object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<serde_json::Value>,
}

impl CouchClient {
    /// Starts building a client for a server URL (`http://[user[:password]@]host:port[/prefix]`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    /// The server's URL, without credentials.
    pub fn url(&self) -> &RedactedUrl {
        &self.inner.shown
    }

    /// The user name requests are made as (basic or cookie authentication), if any; a
    /// bearer token's user is not known without asking the server. Never the password.
    ///
    /// ```
    /// let client = settee_couch::CouchClient::builder("http://alice:pw@127.0.0.1:5984").build()?;
    /// assert_eq!(client.user(), Some("alice"));
    /// # Ok::<(), settee_couch::Error>(())
    /// ```
    pub fn user(&self) -> Option<&str> {
        match &self.inner.auth {
            Auth::Basic { user, .. } | Auth::Cookie { user, .. } => Some(user),
            Auth::None | Auth::Bearer(_) => None,
        }
    }

    /// The largest response body this client reads into memory.
    pub fn max_response_size(&self) -> u64 {
        self.inner.max_response
    }

    /// `GET /`: version, uuid and features.
    ///
    /// # Errors
    /// [`Error::Unauthorized`], [`Error::Transport`], [`Error::InvalidResponse`].
    pub async fn server_info(&self) -> Result<ServerInfo> {
        self.send_json(Call::new(Method::GET, self.inner.base.clone()))
            .await
    }

    /// This client with another retry policy: the same server, credentials and connection
    /// pool, e.g. one that fails at once for a quick question such as "is the server there?".
    pub fn with_retry(&self, policy: RetryPolicy) -> CouchClient {
        let i = &self.inner;
        let cookie = i.session.try_lock().ok().and_then(|c| c.clone());
        CouchClient {
            inner: Arc::new(Inner {
                base: i.base.clone(),
                shown: i.shown.clone(),
                http: i.http.clone(),
                auth: i.auth.clone(),
                headers: i.headers.clone(),
                retry: policy,
                max_response: i.max_response,
                session: tokio::sync::Mutex::new(cookie),
            }),
        }
    }

    /// The database `name` on this server (no request is made).
    pub fn db(&self, name: &str) -> RemoteDb {
        let url = self.join(&[&encode_segment(name)]);
        RemoteDb::new(self.clone(), name.to_owned(), url)
    }

    /// The server URL with already-encoded path segments appended.
    pub(crate) fn join(&self, encoded_segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        let mut path = url.path().trim_end_matches('/').to_owned();
        for seg in encoded_segments {
            path.push('/');
            path.push_str(seg);
        }
        url.set_path(&path);
        url
    }

    /// Adds the credentials to a request.
    pub(crate) async fn authorize(&self, rb: RequestBuilder) -> Result<RequestBuilder> {
        Ok(match &self.inner.auth {
            Auth::None => rb,
            Auth::Basic { user, password } => rb.basic_auth(user, Some(&password.0)),
            Auth::Bearer(token) => rb.bearer_auth(&token.0),
            Auth::Cookie { user, password } => {
                let cookie = self.session_cookie(user, password).await?;
                rb.header(COOKIE_HEADER, cookie)
            }
        })
    }

    async fn session_cookie(&self, user: &str, password: &Secret) -> Result<HeaderValue> {
        let mut session = self.inner.session.lock().await;
        if let Some(cookie) = session.as_ref() {
            return Ok(cookie.clone());
        }
        let url = self.join(&["_session"]);
        let shown = RedactedUrl::new(&url);
        let method = Method::POST;
        let body = serde_json::json!({ "name": user, "password": password.0 });
        let resp = self
            .inner
            .http
            .post(url)
            .headers(self.inner.headers.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::transport(&method, &shown, e))?;
        if !resp.status().is_success() {
            return Err(crate::answer::failure(&method, &shown, resp).await);
        }
        let cookie = auth_session_cookie(&resp).ok_or_else(|| {
            Error::invalid(
                &method,
                &shown,
                "no AuthSession cookie in the _session response",
            )
        })?;
        tracing::debug!(url = %shown, "couch session started");
        *session = Some(cookie.clone());
        Ok(cookie)
    }

    pub(crate) async fn forget_session(&self) {
        *self.inner.session.lock().await = None;
    }

    /// CouchDB sends a fresh cookie before the old one expires; keep it.
    pub(crate) async fn remember_refreshed_cookie(&self, resp: &Response) {
        if matches!(self.inner.auth, Auth::Cookie { .. }) {
            if let Some(cookie) = auth_session_cookie(resp) {
                *self.inner.session.lock().await = Some(cookie);
            }
        }
    }

    /// Sends a request with no body to `url` and decodes the JSON answer.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T> {
        self.send_json(Call::new(Method::GET, url)).await
    }

    /// Sends `body` as JSON.
    pub(crate) fn json_call<T: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: &T,
    ) -> Result<Call> {
        let body = Body::json(body, &method, &url)?;
        Ok(Call::new(method, url).body(body))
    }
}

/// `AuthSession=...` from a response's `Set-Cookie` headers, marked sensitive.
fn auth_session_cookie(resp: &Response) -> Option<HeaderValue> {
    resp.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let pair = s.split(';').next()?.trim();
        let value = pair.strip_prefix("AuthSession=")?;
        if value.is_empty() {
            return None; // a logout clears the cookie
        }
        HeaderValue::from_str(pair).ok().map(sensitive)
    })
}

/// Builds a [`CouchClient`] (C-BUILDER).
///
/// Credentials come, in this order of preference, from [`basic_auth`](Self::basic_auth) /
/// [`cookie_auth`](Self::cookie_auth) / [`bearer_auth`](Self::bearer_auth), then from the
/// URL's userinfo. The client reads no environment variable: credentials are the caller's
/// (the `settee` command reads `SETTEE_PASSWORD` itself).
///
/// ```
/// use std::time::Duration;
/// let client = settee_couch::CouchClient::builder("http://alice:pw@127.0.0.1:5984")
///     .cookie_session()
///     .header("X-Request-Source", "settee")
///     .connect_timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(client.url().as_str(), "http://127.0.0.1:5984/");
/// assert!(!format!("{client:?}").contains("pw"));
/// # Ok::<(), settee_couch::Error>(())
/// ```
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    auth: Option<Auth>,
    cookie_session: bool,
    headers: Vec<(String, Secret)>,
    connect_timeout: Duration,
    read_timeout: Duration,
    request_timeout: Option<Duration>,
    retry: RetryPolicy,
    gzip: Option<bool>,
    max_response: u64,
}

/// The default of [`ClientBuilder::max_response_size`]: 1 GiB, above the largest document
/// CouchDB accepts by default with its attachments inline (`max_document_size` is 8 MB;
/// attachments are limited separately), and finite, so a server that sends a body without
/// end gets an error instead of all the memory there is.
pub const DEFAULT_MAX_RESPONSE: u64 = 1 << 30;

/// Whether `url`'s host is this machine: `localhost` or a loopback IP address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl ClientBuilder {
    fn new(url: String) -> ClientBuilder {
        ClientBuilder {
            url,
            auth: None,
            cookie_session: false,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(90),
            request_timeout: None,
            retry: RetryPolicy::default(),
            gzip: None,
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }

    /// Sends `user` and `password` with every request (HTTP basic auth).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Basic {
            user: user.into(),
            password: Secret(password.into()),
        });
        self
    }

    /// Logs in with `user` and `password` at `POST /_session` and sends the session cookie,
    /// logging in again when the server answers 401.
    pub fn cookie_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Cookie {
            user: user.into(),
            password: Secret(password.into()),
        });
        self
    }

    /// Uses a cookie session for whichever user and password the client ends up with (from
    /// the URL or [`basic_auth`](Self::basic_auth)).
    pub fn cookie_session(mut self) -> Self {
        self.cookie_session = true;
        self
    }

    /// Sends `Authorization: Bearer <token>` (JWT auth, CouchDB 3.1+).
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer(Secret(token.into())));
        self
    }

    /// Adds a header to every request (its value is treated as a secret: never printed).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Secret(value.into())));
        self
    }

    /// How long to wait for a TCP (and TLS) connection. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a response may stay silent before the request fails. Default 90 s: longer
    /// than CouchDB's 60 s longpoll timeout and than any sensible `heartbeat`.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// A limit on a whole request, response included. None by default, because a
    /// continuous `_changes` feed lasts as long as it is read.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Retries of idempotent requests. Default [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether to ask the server for gzip-compressed responses. By default they are asked
    /// for unless the server is on a loopback address (`localhost`, `127.0.0.0/8`, `::1`),
    /// where compressing costs both ends CPU and saves no bandwidth.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = Some(on);
        self
    }

    /// The largest response body read into memory, in bytes (after gzip decoding); a larger
    /// one fails with [`Error::ResponseTooLarge`] as soon as it is known to be larger, from its
    /// `Content-Length` or while it is read. Default [`DEFAULT_MAX_RESPONSE`] (1 GiB). A
    /// continuous `_changes` feed is read line by line and limits each line instead.
    pub fn max_response_size(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL that does not parse or is not `http`/`https`, or for a
    /// header that is not valid; [`Error::Transport`] if the HTTP client cannot be built.
    pub fn build(self) -> Result<CouchClient> {
        let mut base = Url::parse(&self.url).map_err(|e| Error::InvalidUrl {
            reason: format!("not a URL ({e})"),
        })?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(Error::InvalidUrl {
                reason: format!("scheme {} is not http or https", base.scheme()),
            });
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let url_user = (!base.username().is_empty()).then(|| decode(base.username()));
        let url_password = base.password().map(decode);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth = match (self.auth, url_user) {
            (Some(auth), _) => auth,
            (None, Some(user)) => Auth::Basic {
                user,
                password: Secret(url_password.unwrap_or_default()),
            },
            (None, None) => Auth::None,
        };
        if self.cookie_session {
            if let Auth::Basic { user, password } = auth {
                auth = Auth::Cookie { user, password };
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::InvalidUrl {
                reason: format!("bad header name {name:?}"),
            })?;
            let value = HeaderValue::from_str(&value.0).map_err(|_| Error::InvalidUrl {
                reason: format!("bad value for header {name}"),
            })?;
            headers.insert(name, sensitive(value));
        }
        let method = Method::GET;
        let shown = RedactedUrl::new(&base);
        let gzip = self.gzip.unwrap_or_else(|| !is_loopback(&base));
        let mut http = reqwest::Client::builder()
            .http1_only()
            .gzip(gzip)
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout);
        if let Some(t) = self.request_timeout {
            http = http.timeout(t);
        }
        let http = http
            .build()
            .map_err(|e| Error::transport(&method, &shown, e))?;
        Ok(CouchClient {
            inner: Arc::new(Inner {
                base,
                shown,
                http,
                auth,
                headers,
                retry: self.retry,
                max_response: self.max_response,
                session: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        let is = |u: &str| is_loopback(&Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}")));
        assert!(is("http://127.0.0.1:5984/"));
        assert!(is("http://127.8.9.1/"));
        assert!(is("http://LOCALHOST:5984/db"));
        assert!(is("http://[::1]:5984/"));
        assert!(!is("http://10.0.0.1/"));
        assert!(!is("https://couch.example.com/"));
        assert!(!is("http://localhost.example.com/"));
    }
}
