//! The CouchDB database the app syncs with: its URL and credentials, checked, kept out of
//! every message and log, and remembered beside the local store across restarts.
//!
//! The remote is remembered in a file beside the store (`<store>.remote.json`, readable
//! by its owner only), as a desktop app keeps a password in its profile: it never
//! replicates. Earlier versions kept it in the store's `_local/settee-notes-remote`
//! document, which is still read when there is no file yet; the facade
//! (`settee::Documents`) reads `_local` documents but cannot write them, hence the file.
//! Nothing the app shows or logs carries the credentials: the page sees [`Remote::shown`],
//! the URL without user or password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use settee::{Documents, Local, RetryPolicy};
use url::Url;

use crate::{Error, Result};

const SETTINGS_DOC: &str = "_local/settee-notes-remote";

/// How long to wait for a connection to the server: short, so that "offline" shows soon
/// when the server's machine is unreachable (a refused connection shows at once anyway).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A CouchDB database URL and the credentials to use with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// The database URL without credentials.
    url: Url,
    user: Option<String>,
    password: Option<String>,
    /// A file holding the password, read again at every start of a sync (so a server whose
    /// password changed is signed in to again once the file says the new one).
    password_file: Option<PathBuf>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .field("user", &self.user.is_some())
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Remote {
    /// Checks a database URL (`http(s)://[user[:password]@]host[:port]/db`); a user and
    /// password given separately win over ones in the URL. A user without a password takes
    /// it from `SETTEE_PASSWORD`, as the `settee` command does.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a URL that does not parse, is not http(s), or names no
    /// database. The message never contains the password.
    pub fn parse(url: &str, user: Option<String>, password: Option<String>) -> Result<Remote> {
        let mut parsed = Url::parse(url.trim()).map_err(|e| {
            Error::BadRequest(format!(
                "the server address is not a URL ({e}); give http://host:5984/database"
            ))
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(Error::BadRequest(format!(
                "the server address must start with http:// or https://, not {}:",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::BadRequest("the server address has no host".into()));
        }
        let url_user = (!parsed.username().is_empty()).then(|| decode(parsed.username()));
        let url_password = parsed.password().map(decode);
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        parsed.set_query(None);
        parsed.set_fragment(None);
        let path = parsed.path().trim_end_matches('/').to_owned();
        if path.rsplit('/').next().is_none_or(str::is_empty) {
            return Err(Error::BadRequest(format!(
                "{parsed} names no database; give http://host:5984/database"
            )));
        }
        parsed.set_path(&path);
        let user = user.filter(|u| !u.is_empty()).or(url_user);
        let password = password
            .filter(|p| !p.is_empty())
            .or(url_password)
            .or_else(|| {
                user.as_ref()
                    .and_then(|_| std::env::var("SETTEE_PASSWORD").ok())
            });
        Ok(Remote {
            url: parsed,
            user,
            password,
            password_file: None,
        })
    }

    /// The same remote, with its password read from `path` (its first line, without
    /// surrounding spaces) whenever a sync starts: a password changed on the server and
    /// written there is picked up at the next attempt, with no restart. The file wins over
    /// a password given otherwise, while it can be read.
    #[must_use]
    pub fn with_password_file(mut self, path: impl Into<PathBuf>) -> Remote {
        self.password_file = Some(path.into());
        self
    }

    /// The password to use now: the password file's, else the one given.
    fn password_now(&self) -> Option<String> {
        if let Some(path) = &self.password_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    if let Some(line) = text.lines().next() {
                        return Some(line.trim().to_owned());
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "reading the password file")
                }
            }
        }
        self.password.clone()
    }

    /// The database URL without credentials, for the page and logs.
    pub fn shown(&self) -> String {
        self.url.to_string()
    }

    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database, as Settee's [`settee::Remote`]. Retrying is left to the sync alone.
    ///
    /// # Errors
    /// [`Error::BadRequest`] if the URL cannot be used.
    pub fn open(&self) -> Result<settee::Remote> {
        let mut builder = settee::Remote::builder(self.url.as_str())
            .connect_timeout(CONNECT_TIMEOUT)
            .retry(RetryPolicy::none());
        if let Some(user) = &self.user {
            builder = builder.credentials(user, self.password_now().unwrap_or_default());
        }
        builder
            .build()
            .map_err(|e| Error::BadRequest(format!("cannot use {}: {e}", self.shown())))
    }

    /// Reads the remembered remote, if any: the file beside the store, or (when there is no
    /// file yet) the `_local` document earlier versions wrote.
    ///
    /// # Errors
    /// The store's and the file system's errors.
    pub async fn load(db: &Local) -> Result<Option<Remote>> {
        let doc = match tokio::fs::read(settings_file(db)).await {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                Error::Internal(format!("the remembered server cannot be read: {e}"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match db.get(SETTINGS_DOC, &Default::default()).await {
                    Ok(doc) => doc,
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => {
                return Err(Error::Internal(format!(
                    "reading the remembered server: {e}"
                )))
            }
        };
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        match text("url") {
            None => Ok(None),
            Some(url) => match Remote::parse(&url, text("user"), text("password")) {
                Ok(r) => Ok(Some(Remote {
                    password_file: text("password_file").map(PathBuf::from),
                    ..r
                })),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the remembered server");
                    Ok(None)
                }
            },
        }
    }

    /// Remembers `remote` (or forgets the remote with `None`: the file then says "none",
    /// so that an older `_local` document is not read again).
    ///
    /// # Errors
    /// The file system's errors.
    pub async fn save(db: &Local, remote: Option<&Remote>) -> Result<()> {
        let doc = match remote {
            Some(r) => json!({
                "url": r.url.as_str(),
                "user": r.user,
                "password": r.password,
                "password_file": r.password_file,
            }),
            None => json!({"url": null}),
        };
        let path = settings_file(db);
        let text = doc.to_string();
        tokio::task::spawn_blocking(move || write_private(&path, text.as_bytes()))
            .await
            .map_err(Error::task)?
            .map_err(|e| Error::Internal(format!("remembering the server: {e}")))
    }
}

/// Where the remote is remembered: beside the store's directory.
fn settings_file(db: &Local) -> PathBuf {
    let mut path = db.path().into_os_string();
    path.push(".remote.json");
    PathBuf::from(path)
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed over it), readable
/// by its owner only: it may hold a password.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_never_show() {
        let r = Remote::parse("http://alice:s3cret@127.0.0.1:5984/notes/?x=1", None, None).unwrap();
        assert_eq!(r.shown(), "http://127.0.0.1:5984/notes");
        assert_eq!(r.user(), Some("alice"));
        assert!(!format!("{r:?}").contains("s3cret"));
        let db = r.open().unwrap();
        assert_eq!(db.name(), "notes");
        assert!(!db.url().to_string().contains("s3cret"));
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        for (url, says) in [
            ("not a url", "not a URL"),
            ("ftp://h/db", "http://"),
            ("http://127.0.0.1:5984/", "names no database"),
            ("http://u:pw@127.0.0.1:5984", "names no database"),
        ] {
            let err = Remote::parse(url, None, None).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[tokio::test]
    async fn remote_is_remembered_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        assert_eq!(Remote::load(&db).await.unwrap(), None);
        let r = Remote::parse("http://h:1/a%2Fb", Some("u".into()), Some("p".into())).unwrap();
        Remote::save(&db, Some(&r)).await.unwrap();
        assert_eq!(Remote::load(&db).await.unwrap(), Some(r.clone()));
        assert_eq!(r.open().unwrap().name(), "a/b");
        Remote::save(&db, None).await.unwrap();
        assert_eq!(Remote::load(&db).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_remote_remembered_by_an_earlier_version_is_read_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        let old =
            json!({"_id": SETTINGS_DOC, "url": "http://h:1/notes", "user": "u", "password": "p"});
        db.store().unwrap().put_local(old).unwrap();
        let want = Remote::parse("http://h:1/notes", Some("u".into()), Some("p".into())).unwrap();
        assert_eq!(Remote::load(&db).await.unwrap(), Some(want));
        Remote::save(&db, None).await.unwrap();
        assert_eq!(Remote::load(&db).await.unwrap(), None);
    }
}
