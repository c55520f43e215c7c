//! The store's core: [`Database`], the handle, and [`Inner`], the state every clone shares;
//! the commit path (one `sled::Batch` applied under the writer lock, then durability and the
//! published update seq); `info`, `flush` and `destroy`. Opening a store is `open.rs`.
//!
//! Every feature (writes, reads, the changes feed, Mango indexes, sync state, maintenance)
//! builds on this module and adds its calls to [`Database`]; the core imports none of them.
//! It holds only the in-memory state some of them keep in [`Inner`] (the index catalog, the
//! sync registry and its watchers), whose types live in files that know nothing of `Inner`
//! (`index/catalog.rs`, `sync_state/registry.rs`, `sync_state/watchers.rs`). A feature that
//! must act when a batch commits passes that work to [`Inner::commit_with`] as a closure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

mod counters;
mod notifier;
mod open;

pub(crate) use counters::Counters;
pub(crate) use notifier::Notifier;

use crate::index::catalog::Indexes;
use crate::keys::{self, FORMAT_VERSION};
use crate::sync_state::registry::Registry;
use crate::sync_state::watchers::Watchers;
use crate::{DbInfo, Durability, Error, OpenOptions, Result, Sizes};

/// A Settee store: CouchDB's document API on a sled database in one directory.
///
/// Cheap to clone (an `Arc` inside) and `Send + Sync`: share one handle between threads.
/// All calls are synchronous; async callers wrap them in `spawn_blocking`.
///
/// ```
/// use settee_store::{Database, GetOptions};
/// let dir = tempfile::tempdir()?;
/// let db = Database::open(dir.path().join("notes"))?;
/// let res = db.put(serde_json::json!({"_id": "n1", "title": "hello"}))?;
/// let doc = db.get("n1", &GetOptions::default())?;
/// assert_eq!(doc["title"], "hello");
/// assert_eq!(doc["_rev"], res.rev.unwrap().to_string());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

// C-SEND-SYNC: the handle is shared between threads.
const _: fn() = || {
    fn is<T: Send + Sync + Clone + 'static>() {}
    is::<Database>();
};

/// Whether a commit waits for its batch to be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// As the store's durability says (`Immediate`: flushed before the call returns).
    AsConfigured,
    /// Left to the next flush: for batches that may be lost in a crash without harm, as
    /// long as every batch after them is not (sled recovers a prefix of its batches).
    Deferred,
}

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    /// Revisions kept per branch: the stored `_revs_limit` if one was set, else the open
    /// option. Atomic so that [`Database::set_revs_limit`] applies to every clone at once.
    pub(crate) revs_limit: AtomicU64,
    pub(crate) durability: Durability,
    /// The single writer lock. Every write reads the current document record, checks the
    /// given `_rev` against it, and writes a batch; sled batches do not re-check what was
    /// read, so without this lock two writers on the same base rev could both succeed (a
    /// lost update). Holding the lock across read-check-write gives exactly one success per
    /// base rev and 409 for the rest, as CouchDB's single `couch_db_updater` per database
    /// does. sled transactions would detect the conflict too, but they retry closures and
    /// cost more per document on bulk loads; one writer at a time is also what sled's log
    /// does anyway. Reads never take this lock. A std `Mutex`, not an async one: it is never
    /// held across an `.await` (the API is synchronous).
    pub(crate) writer: Mutex<Counters>,
    pub(crate) notifier: Notifier,
    pub(crate) uuid: String,
    /// The Mango index catalog (`index/catalog.rs`).
    pub(crate) indexes: Indexes,
    /// The remotes the store syncs with and their counts (`sync_state/registry.rs`). Changed only
    /// under the writer lock, once a batch that changes it is applied.
    pub(crate) sync: RwLock<Registry>,
    /// Live sync-state subscribers.
    pub(crate) watchers: Watchers,
    /// Set when a write found the disk full ([`Error::DiskFull`]): later writes are refused
    /// and dropping the handle leaves sled's handles alive (see `Drop`).
    pub(crate) disk_full: AtomicBool,
    /// The body dictionaries (`bodies/`), loaded at open.
    pub(crate) bodies: crate::bodies::Bodies,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.disk_full.load(Ordering::SeqCst) {
            // sled flushes when its last handle drops, and after a failed log write that
            // flush waits forever: keep a handle alive instead, so that the process can
            // report the error and exit. The store's lock is held until the process ends.
            std::mem::forget(self.db.clone());
            std::mem::forget(self.tree.clone());
        }
    }
}

impl Inner {
    /// The store's error for a sled error. A full disk also marks the handle
    /// ([`Inner::disk_full`]).
    pub(crate) fn storage(&self, source: sled::Error) -> Error {
        let err = Error::sled(&self.path, source);
        if err.is_disk_full() {
            self.disk_full.store(true, Ordering::SeqCst);
        }
        err
    }

    /// [`Error::DiskFull`] once a write has found the disk full: sled (0.34) is left unable
    /// to write its log (the next write or flush waits forever), so nothing reaches it again.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if !self.disk_full.load(Ordering::SeqCst) {
            return Ok(());
        }
        let io = std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "an earlier write found the disk full",
        );
        Err(Error::sled(&self.path, sled::Error::Io(io)))
    }

    /// The current revs limit (see the field).
    pub(crate) fn revs_limit(&self) -> u64 {
        self.revs_limit.load(Ordering::Relaxed)
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Counters> {
        // A writer that panicked left the counters as they were before its batch (they are
        // updated only after a successful apply), so a poisoned lock is safe to reuse.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a batch atomically, makes it durable if the durability mode says so, and
    /// publishes the new counters.
    pub(crate) fn commit(
        &self,
        guard: &mut MutexGuard<'_, Counters>,
        batch: sled::Batch,
        counters: Counters,
    ) -> Result<()> {
        self.commit_with(guard, batch, counters, Flush::AsConfigured, || {})
    }

    /// [`Inner::commit`], flushing as `flush` says, and running `applied` (under the writer
    /// lock) once the batch is applied, to update in-memory state that mirrors it; not run
    /// if applying fails.
    pub(crate) fn commit_with(
        &self,
        guard: &mut MutexGuard<'_, Counters>,
        mut batch: sled::Batch,
        counters: Counters,
        flush: Flush,
        applied: impl FnOnce(),
    ) -> Result<()> {
        self.check_writable()?;
        batch.insert(keys::META_COUNTERS, &counters.encode()[..]);
        let catalog = self.indexes.take_pending();
        self.tree.apply_batch(batch).map_err(|e| self.storage(e))?;
        **guard = counters;
        if let Some(c) = catalog {
            self.indexes.publish(c);
        }
        applied();
        let flushed = match (self.durability, flush) {
            (Durability::Immediate, Flush::AsConfigured) => self.tree.flush().map(|_| ()),
            _ => Ok(()),
        };
        // Publish even if the flush failed: the batch is applied and readers already see it.
        self.notifier.publish(counters.update_seq);
        flushed.map_err(|e| self.storage(e))
    }
}

impl Database {
    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The revs limit this store stems to: the one set with [`Database::set_revs_limit`],
    /// which is stored, or else [`OpenOptions::revs_limit`].
    pub fn revs_limit(&self) -> u64 {
        self.inner.revs_limit()
    }

    /// The store's uuid (fixed when it was created; also in [`Database::info`]). Reads
    /// nothing: it is kept in memory from the open.
    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    /// Database information, shaped like CouchDB's `GET /{db}`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let info = db.info()?;
    /// assert_eq!((info.doc_count, info.update_seq), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`] if the meta records cannot be read.
    pub fn info(&self) -> Result<DbInfo> {
        let inner = &self.inner;
        // One record holds all counters, written in the same batch as the documents they
        // count, so they agree with each other and with the last applied write.
        let counters = match inner
            .tree
            .get(keys::META_COUNTERS)
            .map_err(|e| inner.storage(e))?
        {
            Some(v) => Counters::decode(&v)?,
            None => return Err(Error::corrupt("the counters record is missing")),
        };
        Ok(DbInfo {
            db_name: inner
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            doc_count: counters.doc_count,
            doc_del_count: counters.doc_del_count,
            update_seq: counters.update_seq,
            purge_seq: Some(counters.purge_seq),
            uuid: Some(inner.uuid.clone()),
            sizes: Some(Sizes {
                file: inner.db.size_on_disk().map_err(|e| inner.storage(e))?,
                active: None,
                external: None,
            }),
            disk_format_version: FORMAT_VERSION,
            instance_start_time: Some("0".into()),
            other: serde_json::Map::new(),
        })
    }

    /// Makes everything written so far durable (fsyncs sled's log). The replicator calls
    /// this before it writes a checkpoint; with [`Durability::Immediate`] it is a no-op in
    /// effect, since each write already flushed.
    ///
    /// # Errors
    /// [`Error::Storage`] if the flush fails.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_writable()?;
        self.inner
            .tree
            .flush()
            .map(|_| ())
            .map_err(|e| self.inner.storage(e))
    }

    /// Deletes the store at `path` and all its files.
    ///
    /// # Errors
    /// [`Error::StoreInUse`] if it is open (in this process or another);
    /// [`Error::NotAStore`] if the directory is not a Settee store (nothing is deleted);
    /// [`Error::NotFound`] if there is nothing at `path`; [`Error::Io`] if removing fails.
    pub fn destroy(path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::not_found(&path.display().to_string(), "missing"));
        }
        // Opening checks that it is our store and takes the lock, so a store in use is
        // never deleted under its owner.
        let db = Database::open_with(OpenOptions {
            create: false,
            ..OpenOptions::new(path)
        })?;
        drop(db);
        std::fs::remove_dir_all(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// A random 128-bit id as 32 lowercase hex characters (store uuids, generated doc ids).
pub(crate) fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
