//! [`Db`]: a database by location, a local store path or a CouchDB URL, for code that
//! treats both kinds alike (the `settee` command's document commands). The kinds themselves
//! are [`Local`] and [`Remote`]; this module only picks one from a location.

use settee_replicate::AnyPeer;

use crate::calls::Target;
use crate::documents::sealed::Sealed;
use crate::{Local, Remote, Result};

/// A database by location: a [`Local`] store or a [`Remote`] database, with the
/// [`crate::Documents`] calls either way. What only one kind has (a store's sync state, a
/// server's credentials) is on that kind: match, or use [`Db::local`] / [`Db::remote`].
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use serde_json::json;
/// use settee::Documents;
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// // A path opens (or creates) a local store; an `http://` URL a CouchDB database.
/// let notes = settee::Db::open(path)?;
/// assert!(notes.local().is_some());
/// let written = notes.put(json!({"_id": "note:1", "title": "written offline"})).await?;
/// let doc = notes.get("note:1", &Default::default()).await?;
/// assert_eq!(doc["_rev"], written["rev"]);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub enum Db {
    /// A local store (open here, or held by another process).
    Local(Local),
    /// A CouchDB database over HTTP.
    Remote(Remote),
}

/// A location with any password removed, for messages.
///
/// ```
/// assert_eq!(
///     settee::redact("http://alice:secret@127.0.0.1:5984/notes"),
///     "http://alice:***@127.0.0.1:5984/notes"
/// );
/// assert_eq!(settee::redact("notes.settee"), "notes.settee");
/// ```
pub fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.scheme().starts_with("http") => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        _ => location.to_owned(),
    }
}

/// Whether a location is a server's URL rather than a store's path.
pub fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

impl Db {
    /// Opens a location: an `http://` or `https://` URL is a [`Remote`] (with the
    /// credentials the URL carries: [`Remote::builder`] gives others), anything else a
    /// [`Local`] store path (created if missing).
    ///
    /// # Errors
    /// A malformed URL, or the store's open errors (`store_in_use`, `not_a_store`...).
    pub fn open(location: &str) -> Result<Db> {
        if is_url(location) {
            Ok(Db::Remote(Remote::new(location)?))
        } else {
            Ok(Db::Local(Local::open(location)?))
        }
    }

    /// The local store, if this is one.
    pub fn local(&self) -> Option<&Local> {
        match self {
            Db::Local(l) => Some(l),
            Db::Remote(_) => None,
        }
    }

    /// The remote database, if this is one.
    pub fn remote(&self) -> Option<&Remote> {
        match self {
            Db::Remote(r) => Some(r),
            Db::Local(_) => None,
        }
    }

    /// This database as a replication peer (for [`settee_replicate`]'s own calls).
    pub fn to_peer(&self) -> AnyPeer {
        match self {
            Db::Local(l) => l.to_peer(),
            Db::Remote(r) => r.to_peer(),
        }
    }
}

impl From<Local> for Db {
    fn from(l: Local) -> Db {
        Db::Local(l)
    }
}

impl From<Remote> for Db {
    fn from(r: Remote) -> Db {
        Db::Remote(r)
    }
}

impl Sealed for Db {
    fn target(&self) -> Target {
        match self {
            Db::Local(l) => l.target(),
            Db::Remote(r) => r.target(),
        }
    }
}

impl crate::Documents for Db {}
