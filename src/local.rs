//! [`Local`]: a local store, open in this process or held by another one (then reached
//! through that process). What only a local store has lives here: opening and closing it,
//! destroying it, compaction, and the sync with a [`crate::Remote`] (the sync-state calls are in
//! `sync_state.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use settee_replicate::AnyPeer;
use settee_store::{Database, Durability, OpenOptions};

use crate::calls::{blocking, Target};
use crate::documents::sealed::Sealed;
use crate::owned::HeldStore;
use crate::{Error, Result};

/// A local store: a sled directory this process opened, or one another process holds
/// (`settee serve`, `settee sync --live`, an app serving its store), reached through that
/// process as sled lets one process open a store at a time. Its documents are the
/// [`crate::Documents`] calls; what it knows of a [`crate::Remote`], offline, is
/// [`Local::sync_state`], [`Local::unsynced`], [`Local::sync_status`] and
/// [`Local::status`]; [`Local::sync`] syncs it.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use serde_json::json;
/// use settee::Documents;
/// # let dir = tempfile::tempdir().unwrap();
/// let notes = settee::Local::open(dir.path().join("notes"))?; // created if missing
/// let written = notes.put(json!({"_id": "note:1", "title": "written offline"})).await?;
/// let doc = notes.get("note:1", &Default::default()).await?;
/// assert_eq!(doc["_rev"], written["rev"]);
/// notes.close().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Local {
    pub(crate) kind: LocalKind,
}

/// Where a local store is.
#[derive(Debug, Clone)]
pub(crate) enum LocalKind {
    /// Open in this process.
    Open(Database),
    /// Held by another process (boxed: the holder's two clients are much bigger than a
    /// store handle).
    Held(Box<HeldStore>),
}

/// Opens a [`Local`] with options (C-BUILDER): [`Local::builder`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let err = settee::Local::builder(dir.path().join("none")).create(false).open().unwrap_err();
/// assert!(err.is_not_found());
/// ```
#[derive(Debug, Clone)]
pub struct LocalBuilder {
    opts: OpenOptions,
}

impl LocalBuilder {
    /// Whether a path with no store gets a new one (default true). Without it, opening
    /// such a path is [`Error::NoStore`] and nothing is created there.
    pub fn create(mut self, create: bool) -> Self {
        self.opts.create = create;
        self
    }

    /// Tuned for replication: writes are flushed every second instead of one by one, and
    /// the page cache is 16 MiB (a replication streams through the store; a bigger cache
    /// measured no faster and raised peak memory). Safe for replication: the replicator
    /// makes the store durable before every checkpoint, so a crash loses at most what the
    /// next run fetches again. Not for an application's own writes, which it expects
    /// durable when the call returns.
    pub fn for_replication(mut self) -> Self {
        self.opts.durability = Durability::Relaxed {
            flush_every: Duration::from_secs(1),
        };
        self.opts.cache_capacity = 16 * 1024 * 1024;
        self
    }

    /// How long opening waits for a store that another process is closing before it
    /// answers `store_in_use` (default 1.5 s).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.opts.lock_wait = wait;
        self
    }

    /// sled's page cache, in bytes (default 128 MiB).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.opts.cache_capacity = bytes;
        self
    }

    /// Opens the store. A store another process holds is reached through that process
    /// when it advertises itself (see [`settee_store::Advert`]).
    ///
    /// # Errors
    /// [`Error::NoStore`] without [`LocalBuilder::create`]; `store_in_use` when another
    /// process holds it without advertising; the store's open errors (`not_a_store`, a
    /// damaged store, a newer format...).
    pub fn open(self) -> Result<Local> {
        let path = self.opts.path.clone();
        let create = self.opts.create;
        match Database::open_with(self.opts) {
            Ok(db) => Ok(Local {
                kind: LocalKind::Open(db),
            }),
            Err(settee_store::Error::NotFound { .. }) if !create => Err(Error::NoStore {
                path: path.display().to_string(),
            }),
            Err(e) => held_elsewhere(&path, e),
        }
    }
}

/// After `store_in_use`: the holder's database over HTTP if it advertises one, else the
/// error.
fn held_elsewhere(path: &Path, err: settee_store::Error) -> Result<Local> {
    if matches!(err, settee_store::Error::StoreInUse { .. }) {
        if let Some(advert) = settee_store::Advert::read(path) {
            tracing::info!(store = %path.display(), url = %advert.url, pid = advert.pid,
                "the store is held by another process; talking to it");
            return Ok(Local {
                kind: LocalKind::Held(Box::new(HeldStore::new(
                    &path.display().to_string(),
                    &advert,
                )?)),
            });
        }
    }
    Err(err.into())
}

impl Local {
    /// Opens the store at `path`, creating it if missing, with the default options (every
    /// write durable when its call returns). See [`Local::builder`] for the others.
    ///
    /// # Errors
    /// As [`LocalBuilder::open`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Local> {
        Local::builder(path).open()
    }

    /// Options for opening the store at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> LocalBuilder {
        LocalBuilder {
            opts: OpenOptions::new(path),
        }
    }

    /// A store already open in this process (for code that uses [`settee_store`] too).
    pub fn from_store(db: Database) -> Local {
        Local {
            kind: LocalKind::Open(db),
        }
    }

    /// The store, when it is open in this process (`None` when another process holds it).
    pub fn store(&self) -> Option<&Database> {
        match &self.kind {
            LocalKind::Open(db) => Some(db),
            LocalKind::Held(_) => None,
        }
    }

    /// The process that holds the store, when it is not open here: its id.
    pub fn held_by(&self) -> Option<u32> {
        match &self.kind {
            LocalKind::Open(_) => None,
            LocalKind::Held(h) => Some(h.pid()),
        }
    }

    /// The store's path.
    pub fn path(&self) -> PathBuf {
        match &self.kind {
            LocalKind::Open(db) => db.path().to_path_buf(),
            LocalKind::Held(h) => PathBuf::from(h.path()),
        }
    }

    /// This store as a replication peer (for [`settee_replicate`]'s own calls; an
    /// application syncs with [`Local::sync`]).
    pub fn to_peer(&self) -> AnyPeer {
        match &self.kind {
            LocalKind::Open(d) => AnyPeer::Local(d.clone()),
            LocalKind::Held(h) => AnyPeer::Remote(h.owner().clone()),
        }
    }

    /// Makes every write durable and lets go of this handle. The store closes (and its
    /// lock is released) when its last handle is dropped: clones, running syncs and
    /// streams hold it too.
    ///
    /// # Errors
    /// The flush's errors (`disk_full`...).
    pub async fn close(self) -> Result<()> {
        match &self.kind {
            LocalKind::Open(db) => blocking(db, |d| d.flush()).await,
            LocalKind::Held(_) => Ok(()),
        }
    }

    /// Deletes the store from disk, with everything in it (documents, sync state,
    /// checkpoints). Other handles of it (clones, running syncs) must be dropped first.
    ///
    /// # Errors
    /// `store_in_use` while another handle, here or in another process, holds it; the
    /// file system's errors.
    pub async fn destroy(self) -> Result<()> {
        let path = self.path();
        let Local { kind } = self;
        match kind {
            LocalKind::Held(h) => Err(Error::BadRequest(format!(
                "the store {} is held by process {}; destroy it when that process has stopped",
                h.path(),
                h.pid()
            ))),
            LocalKind::Open(db) => {
                drop(db);
                tokio::task::spawn_blocking(move || Database::destroy(&path))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                Ok(())
            }
        }
    }

    /// Compacts the store: gives back the space of old revisions' bodies and unused
    /// attachments.
    ///
    /// # Errors
    /// `bad_request` for a store another process holds (compact it there); the store's
    /// errors.
    pub async fn compact(&self) -> Result<()> {
        match &self.kind {
            LocalKind::Open(db) => blocking(db, |d| d.compact()).await,
            LocalKind::Held(h) => Err(Error::BadRequest(format!(
                "the store {} is held by process {}; compact it when that process has stopped",
                h.path(),
                h.pid()
            ))),
        }
    }

    /// Compacts the store ([`Local::compact`]), then gives its disk space back: the live
    /// data is copied into fresh files that replace the old ones, crash-safely
    /// ([`Database::rewrite`]). Returns the store opened again.
    ///
    /// # Errors
    /// `store_in_use` if clones of this `Local` are alive (the files can only be replaced
    /// by the only handle; the compaction is done and the clones stay usable);
    /// `bad_request` for a store another process holds; the store's errors.
    pub async fn rewrite(self) -> Result<Local> {
        match self.kind {
            LocalKind::Open(db) => {
                let db = tokio::task::spawn_blocking(move || db.rewrite())
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                Ok(Local::from_store(db))
            }
            LocalKind::Held(h) => Err(Error::BadRequest(format!(
                "the store {} is held by process {}; compact it when that process has stopped",
                h.path(),
                h.pid()
            ))),
        }
    }

    /// Database information, as CouchDB's `GET /db`.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn info(&self) -> Result<settee_store::DbInfo> {
        match &self.kind {
            LocalKind::Open(db) => blocking(db, |d| d.info()).await,
            LocalKind::Held(h) => {
                let info = h.owner().info().await?;
                Ok(
                    serde_json::from_value(serde_json::to_value(info).unwrap_or_default())
                        .map_err(|e| {
                            Error::BadRequest(format!("the holder's database info: {e}"))
                        })?,
                )
            }
        }
    }
}

impl Sealed for Local {
    fn target(&self) -> Target {
        match &self.kind {
            LocalKind::Open(db) => Target::Store(db.clone()),
            LocalKind::Held(h) => Target::Http(h.owner().clone()),
        }
    }
}

impl crate::Documents for Local {}
