//! [`Remote`]: a CouchDB database over HTTP (Apache CouchDB, a cluster's node,
//! pouchdb-server, `settee serve`), built with its credentials by the caller. What only a
//! server database has lives here: creating and destroying it, checking the credentials.

use std::time::Duration;

use settee_couch::{CouchClient, RedactedUrl, RemoteDb, RetryPolicy};
use settee_replicate::AnyPeer;

use crate::calls::Target;
use crate::documents::sealed::Sealed;
use crate::Result;

/// A database on a CouchDB server. Its documents are the [`crate::Documents`] calls; a
/// [`crate::Local`] syncs with it and keeps, offline, what it holds.
///
/// Credentials are the caller's: in the URL (`http://alice:pw@host:5984/notes`) or given to
/// [`Remote::builder`]. Nothing is read from the environment, and nothing is sent until the
/// first call, whose error is `unauthorized` when they are wrong ([`Remote::check`] asks at
/// once).
///
/// ```
/// # fn demo() -> Result<(), settee::Error> {
/// let server = settee::Remote::builder("http://127.0.0.1:5984/notes")
///     .credentials("alice", "secret")
///     .build()?;
/// assert_eq!(server.name(), "notes");
/// assert!(!format!("{server:?}").contains("secret"));
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Remote {
    pub(crate) db: RemoteDb,
}

/// Builds a [`Remote`] (C-BUILDER): [`Remote::builder`].
///
/// ```
/// use std::time::Duration;
/// # fn demo() -> Result<(), settee::Error> {
/// // A user named in the URL, the password from where the app keeps it.
/// let server = settee::Remote::builder("https://alice@couch.example.com/notes")
///     .credentials("alice", "from the keychain")
///     .cookie_session()
///     .connect_timeout(Duration::from_secs(5))
///     .retry(settee::RetryPolicy::none())
///     .build()?;
/// assert_eq!(server.url().as_str(), "https://couch.example.com/notes");
/// // A URL that names no database is refused at once.
/// let err = settee::Remote::builder("http://127.0.0.1:5984/").build().unwrap_err();
/// assert_eq!(err.kind(), settee::ErrorKind::BadRequest);
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Debug)]
pub struct RemoteBuilder {
    url: String,
    credentials: Option<(String, String)>,
    password_var: Option<String>,
    cookie_session: bool,
    retry: Option<RetryPolicy>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl RemoteBuilder {
    /// Sends this user name and password (HTTP basic; see [`RemoteBuilder::cookie_session`]).
    /// They take precedence over any in the URL.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// For a URL that names a user without a password, takes the password from the
    /// environment variable `var` (the `settee` command uses `SETTEE_PASSWORD`, so that no
    /// password appears in a command line). Without this call, nothing is read from the
    /// environment.
    pub fn password_from_env(mut self, var: impl Into<String>) -> Self {
        self.password_var = Some(var.into());
        self
    }

    /// Logs in once (`POST /_session`) and sends the session cookie, as PouchDB does,
    /// instead of the password with every request.
    pub fn cookie_session(mut self) -> Self {
        self.cookie_session = true;
        self
    }

    /// How failed requests are retried (default: the client's, a few quick retries of
    /// transient failures). A sync has its own policy in [`crate::ReplicateOptions`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long the server may stay silent while answering.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// The database. Sends nothing.
    ///
    /// # Errors
    /// `bad_request` (`invalid_url`) for a URL that does not parse or names no database.
    pub fn build(self) -> Result<Remote> {
        let (server, name) = settee_couch::split_db_url(&self.url)?;
        let mut client = CouchClient::builder(&server);
        let credentials = match (self.credentials, self.password_var) {
            (Some(c), _) => Some(c),
            (None, Some(var)) => url_user_without_password(&server)
                .and_then(|user| std::env::var(var).ok().map(|pw| (user, pw))),
            (None, None) => None,
        };
        if let Some((user, password)) = credentials {
            client = client.basic_auth(user, password);
        }
        if self.cookie_session {
            client = client.cookie_session();
        }
        if let Some(policy) = self.retry {
            client = client.retry(policy);
        }
        if let Some(t) = self.connect_timeout {
            client = client.connect_timeout(t);
        }
        if let Some(t) = self.read_timeout {
            client = client.read_timeout(t);
        }
        Ok(Remote {
            db: client.build()?.db(&name),
        })
    }
}

/// The user a URL names when it gives no password.
fn url_user_without_password(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    (!u.username().is_empty() && u.password().is_none()).then(|| {
        percent_encoding::percent_decode_str(u.username())
            .decode_utf8_lossy()
            .into_owned()
    })
}

impl Remote {
    /// The database at `url` (`http://[user:password@]host:5984[/prefix]/dbname`), with
    /// the credentials the URL carries. Sends nothing.
    ///
    /// # Errors
    /// As [`RemoteBuilder::build`].
    pub fn new(url: &str) -> Result<Remote> {
        Remote::builder(url).build()
    }

    /// Options for the database at `url`: credentials, cookie sessions, retries, timeouts.
    pub fn builder(url: impl Into<String>) -> RemoteBuilder {
        RemoteBuilder {
            url: url.into(),
            credentials: None,
            password_var: None,
            cookie_session: false,
            retry: None,
            connect_timeout: None,
            read_timeout: None,
        }
    }

    /// A database of [`settee_couch`] (for code that uses the client too).
    pub fn from_couch(db: RemoteDb) -> Remote {
        Remote { db }
    }

    /// The client's database.
    pub fn couch(&self) -> &RemoteDb {
        &self.db
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        self.db.name()
    }

    /// The database's URL, without credentials.
    pub fn url(&self) -> &RedactedUrl {
        self.db.url()
    }

    /// This database as a replication peer (for [`settee_replicate`]'s own calls).
    pub fn to_peer(&self) -> AnyPeer {
        AnyPeer::Remote(self.db.clone())
    }

    /// Asks the server now whether the database answers with these credentials.
    ///
    /// # Errors
    /// `unauthorized` for a wrong name or password, `not_found` for a missing database,
    /// [`crate::ErrorKind::Offline`] when the server cannot be reached.
    pub async fn check(&self) -> Result<()> {
        self.db.info().await?;
        Ok(())
    }

    /// Whether the database exists.
    ///
    /// # Errors
    /// `unauthorized`, offline, the server's errors.
    pub async fn exists(&self) -> Result<bool> {
        Ok(self.db.exists().await?)
    }

    /// Creates the database (`PUT /db`; needs a server admin on CouchDB).
    ///
    /// # Errors
    /// `file_exists` when it exists; `unauthorized`; the server's errors.
    pub async fn create(&self) -> Result<()> {
        Ok(self.db.create().await?)
    }

    /// Deletes the database and everything in it (`DELETE /db`).
    ///
    /// # Errors
    /// `not_found` when it does not exist; `unauthorized`; the server's errors.
    pub async fn destroy(&self) -> Result<()> {
        Ok(self.db.delete().await?)
    }

    /// Database information, as CouchDB's `GET /db`.
    ///
    /// # Errors
    /// The server's errors.
    pub async fn info(&self) -> Result<settee_couch::DbInfo> {
        Ok(self.db.info().await?)
    }
}

impl Sealed for Remote {
    fn target(&self) -> Target {
        Target::Http(self.db.clone())
    }
}

impl crate::Documents for Remote {}
