//! The CouchDB database the app syncs with: its URL and credentials, checked, kept out of
//! every message and log, and remembered in the local store across restarts.
//!
//! The remote is stored in the `_local/settee-notes-remote` document of the local store:
//! `_local` documents never replicate, so the credentials stay on this machine (in the
//! store's files, as a desktop app keeps a password in its profile). Nothing the app shows
//! or logs carries them: the page sees [`Remote::shown`], the URL without user or password.

use std::time::Duration;

use serde_json::{json, Value};
use settee::couch::{CouchClient, RemoteDb, RetryPolicy};
use settee::Database;
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
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .field("user", &self.user.is_some())
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
        })
    }

    /// The database URL without credentials, for the page and logs.
    pub fn shown(&self) -> String {
        self.url.to_string()
    }

    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A client for the database. Retrying is left to the replicator alone.
    ///
    /// # Errors
    /// [`Error::BadRequest`] if the client cannot be built from the URL.
    pub fn open(&self) -> Result<RemoteDb> {
        let path = self.url.path().to_owned();
        let (prefix, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let mut server = self.url.clone();
        server.set_path(&format!("{prefix}/"));
        let mut builder = CouchClient::builder(server.as_str())
            .connect_timeout(CONNECT_TIMEOUT)
            .retry(RetryPolicy::none());
        if let Some(user) = &self.user {
            builder = builder.basic_auth(user, self.password.clone().unwrap_or_default());
        }
        let client = builder
            .build()
            .map_err(|e| Error::BadRequest(format!("cannot use {}: {e}", self.shown())))?;
        Ok(client.db(&decode(name)))
    }

    /// Reads the remembered remote, if any. Blocking.
    ///
    /// # Errors
    /// The store's errors.
    pub fn load(db: &Database) -> Result<Option<Remote>> {
        let doc = match db.get_local(SETTINGS_DOC) {
            Ok(doc) => doc,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        match text("url") {
            None => Ok(None),
            Some(url) => match Remote::parse(&url, text("user"), text("password")) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring the remembered server");
                    Ok(None)
                }
            },
        }
    }

    /// Remembers `remote` (or forgets the remote with `None`). Blocking.
    ///
    /// # Errors
    /// The store's errors.
    pub fn save(db: &Database, remote: Option<&Remote>) -> Result<()> {
        let rev = match db.get_local(SETTINGS_DOC) {
            Ok(doc) => doc.get("_rev").cloned(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let mut doc = match remote {
            Some(r) => json!({
                "_id": SETTINGS_DOC,
                "url": r.url.as_str(),
                "user": r.user,
                "password": r.password,
            }),
            None => json!({"_id": SETTINGS_DOC, "_deleted": true}),
        };
        match rev {
            Some(rev) => doc["_rev"] = rev,
            None if remote.is_none() => return Ok(()),
            None => {}
        }
        db.put_local(doc)?;
        Ok(())
    }
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

    #[test]
    fn remote_is_remembered_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("s")).unwrap();
        assert_eq!(Remote::load(&db).unwrap(), None);
        let r = Remote::parse("http://h:1/a%2Fb", Some("u".into()), Some("p".into())).unwrap();
        Remote::save(&db, Some(&r)).unwrap();
        assert_eq!(Remote::load(&db).unwrap(), Some(r.clone()));
        assert_eq!(r.open().unwrap().name(), "a/b");
        Remote::save(&db, None).unwrap();
        assert_eq!(Remote::load(&db).unwrap(), None);
    }
}
