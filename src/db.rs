//! `Db`: a database by location, a local store path or a CouchDB URL, with CouchDB-shaped
//! JSON in and out. What the `settee` command needs for its document commands, and what an
//! application can use to treat both kinds alike.
//!
//! This module opens a location and owns what every call shares (the blocking pool, the
//! redaction of a location); the calls themselves live by concept: `documents` (one
//! document or the changes feed, as CouchDB's JSON) and `sync_state` (what a local store
//! knows of a remote, and `settee status`). Typed documents, Mango, attachments, feeds and
//! background syncs are the facade's other modules.

use serde_json::{json, Value};
use settee_replicate::AnyPeer;
use settee_store::Database;

use crate::owned::HeldStore;
use crate::{Error, Result};

mod documents;
mod sync_state;

pub use documents::GetArgs;
pub use sync_state::{status, Status};

/// A database: a local store or a remote CouchDB database, opened by location and used
/// with the same calls either way.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use serde_json::json;
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// // A path opens (or creates) a local store; an `http://` URL a CouchDB database.
/// let notes = settee::Db::open(path)?;
/// assert!(matches!(notes, settee::Db::Local(_)));
/// let written = notes.put(json!({"_id": "note:1", "title": "written offline"})).await?;
/// let doc = notes.get("note:1", &settee::GetArgs::default()).await?;
/// assert_eq!(doc["title"], "written offline");
/// assert_eq!(doc["_rev"], written["rev"]);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub enum Db {
    /// A local store.
    Local(Database),
    /// A CouchDB database over HTTP.
    Remote(settee_couch::RemoteDb),
    /// A local store that another process holds (it advertises itself, see
    /// [`settee_store::Advert`]): documents go through that process over HTTP as to a
    /// server, and the sync-state calls ([`Db::sync_state`], [`Db::unsynced`],
    /// [`Db::sync_status`], [`status`]) are answered by it, as for a store opened here.
    Held(HeldStore),
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

/// After `store_in_use`: the holder's database over HTTP if it advertises one, else the
/// error.
fn held_elsewhere(location: &str, err: settee_store::Error) -> Result<Db> {
    if matches!(err, settee_store::Error::StoreInUse { .. }) {
        if let Some(advert) = settee_store::Advert::read(std::path::Path::new(location)) {
            tracing::info!(store = location, url = %advert.url, pid = advert.pid,
                "the store is held by another process; talking to it");
            return Ok(Db::Held(HeldStore::new(location, &advert)?));
        }
    }
    Err(err.into())
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    db: &Database,
    f: impl FnOnce(Database) -> settee_store::Result<R> + Send + 'static,
) -> Result<R> {
    let db = db.clone();
    Ok(tokio::task::spawn_blocking(move || f(db))
        .await
        .map_err(|e| Error::Task(e.to_string()))??)
}

fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// The store options of a replication peer (see [`Db::open_for_replication`]).
fn replication_options(location: &str, create: bool) -> settee_store::OpenOptions {
    settee_store::OpenOptions {
        durability: settee_store::Durability::Relaxed {
            flush_every: std::time::Duration::from_secs(1),
        },
        cache_capacity: 16 * 1024 * 1024,
        create,
        ..settee_store::OpenOptions::new(location)
    }
}

/// Opens a local store; without `opts.create`, a path with no store is [`Error::NoStore`].
fn open_local(location: &str, opts: settee_store::OpenOptions) -> Result<Db> {
    let create = opts.create;
    match Database::open_with(opts) {
        Ok(db) => Ok(Db::Local(db)),
        Err(settee_store::Error::NotFound { .. }) if !create => Err(Error::NoStore {
            path: location.to_owned(),
        }),
        Err(e) => held_elsewhere(location, e),
    }
}

impl Db {
    /// Opens a location: `http://` or `https://` URLs are remote databases (credentials from
    /// the URL, or the password from `SETTEE_PASSWORD`), anything else a local store path
    /// (created if missing).
    ///
    /// # Errors
    /// A malformed URL, or the store's open errors (`store_in_use`, `not_a_store`...).
    ///
    /// A store another process holds is reached through that process when it advertises
    /// itself (`settee serve`, `settee sync --continuous`: see [`settee_store::Advert`]):
    /// the result is then a [`Db::Held`], reached through its loopback server.
    pub fn open(location: &str) -> Result<Db> {
        if is_url(location) {
            Ok(Db::Remote(settee_couch::RemoteDb::from_url(location)?))
        } else {
            Database::open(location)
                .map(Db::Local)
                .or_else(|e| held_elsewhere(location, e))
        }
    }

    /// Opens a location that must already hold a database: like [`Db::open`], but a local
    /// path without a store is [`Error::NoStore`] and nothing is created there. For
    /// commands that only read (a read of a new empty store would just answer "nothing").
    ///
    /// # Errors
    /// [`Error::NoStore`]; otherwise as [`Db::open`].
    pub fn open_existing(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(
            location,
            settee_store::OpenOptions {
                create: false,
                ..settee_store::OpenOptions::new(location)
            },
        )
    }

    /// Opens a location for replication: like [`Db::open`], but a local store flushes on an
    /// interval instead of on every write, and keeps a smaller page cache (16 MiB: a
    /// replication streams through the store, and a bigger cache measured no faster while
    /// it raised peak memory). That is safe for
    /// replication: the replicator makes the target durable (`Peer::commit`) before every
    /// checkpoint, so a crash loses at most what the next run fetches again.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open_for_replication(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(location, replication_options(location, true))
    }

    /// Opens a replication source: as [`Db::open_for_replication`], but a local path must
    /// hold a store already ([`Error::NoStore`] otherwise; nothing is created).
    ///
    /// # Errors
    /// As [`Db::open_existing`].
    pub fn open_source_for_replication(location: &str) -> Result<Db> {
        if is_url(location) {
            return Db::open(location);
        }
        open_local(location, replication_options(location, false))
    }

    /// This database as a replication peer.
    pub fn to_peer(&self) -> AnyPeer {
        match self {
            Db::Local(d) => AnyPeer::Local(d.clone()),
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => AnyPeer::Remote(r.clone()),
        }
    }

    /// Database information, as CouchDB's `GET /db`.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn info(&self) -> Result<Value> {
        match self {
            Db::Local(d) => {
                Ok(serde_json::to_value(blocking(d, |d| d.info()).await?).unwrap_or_default())
            }
            Db::Remote(r) | Db::Held(HeldStore { owner: r, .. }) => {
                Ok(serde_json::to_value(r.info().await?).unwrap_or_default())
            }
        }
    }

    /// Compacts the database.
    ///
    /// # Errors
    /// The peer's errors.
    pub async fn compact(&self) -> Result<Value> {
        match self {
            Db::Local(d) => {
                blocking(d, |d| d.compact()).await?;
                Ok(json!({"ok": true}))
            }
            Db::Remote(r) => Err(Error::BadRequest(format!(
                "compacting {} is the server's job (POST /db/_compact as an admin); settee compacts local stores",
                r.url()
            ))),
            Db::Held(h) => Err(Error::BadRequest(format!(
                "the store {} is held by process {}; compact it when that process has stopped",
                h.path(),
                h.pid()
            ))),
        }
    }
}
