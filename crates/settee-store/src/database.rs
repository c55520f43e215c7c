//! `Database`: opening a store (format and lock checks), its handle, `info`, `flush` and
//! `destroy`. Document writes are in `write.rs`, reads in `read.rs`, the feed in
//! `changes.rs`; they all share [`Inner`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::changes::Notifier;
use crate::index::{Catalog, Indexes};
use crate::keys::{self, FORMAT_VERSION};
use crate::sync_state::{Registry, Watchers};
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

/// The counters a write changes, held under the write lock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) update_seq: u64,
    pub(crate) doc_count: u64,
    pub(crate) doc_del_count: u64,
    pub(crate) purge_seq: u64,
}

impl Counters {
    /// The `Mcounters` record: four u64 big-endian, in field order.
    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, v) in [
            self.update_seq,
            self.doc_count,
            self.doc_del_count,
            self.purge_seq,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Counters> {
        if bytes.len() != 32 {
            return Err(Error::corrupt(format!(
                "counters record has {} bytes, expected 32",
                bytes.len()
            )));
        }
        let at = |i: usize| keys::decode_u64(&bytes[i * 8..i * 8 + 8], "counter");
        Ok(Counters {
            update_seq: at(0)?,
            doc_count: at(1)?,
            doc_del_count: at(2)?,
            purge_seq: at(3)?,
        })
    }
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
    /// The Mango index catalog (`index.rs`).
    pub(crate) indexes: Indexes,
    /// The remotes the store syncs with and their counts (`sync_state.rs`). Changed only
    /// under the writer lock, once a batch that changes it is applied.
    pub(crate) sync: RwLock<Registry>,
    /// Live sync-state subscribers.
    pub(crate) watchers: Watchers,
    /// Set when a write found the disk full ([`Error::DiskFull`]): later writes are refused
    /// and dropping the handle leaves sled's handles alive (see `Drop`).
    pub(crate) disk_full: AtomicBool,
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
    /// Opens the store at `path`, creating it if needed, with default options.
    ///
    /// # Errors
    /// [`Error::StoreInUse`] if another process or handle has it open (after retrying for
    /// [`OpenOptions::LOCK_WAIT`], to let a store closed just before finish closing);
    /// [`Error::NotAStore`] for a file, a foreign directory or damaged files;
    /// [`Error::UnsupportedFormat`] for a store written by another format version;
    /// [`Error::Storage`] for I/O errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with(OpenOptions::new(path.as_ref()))
    }

    /// Opens a store with explicit options.
    ///
    /// ```
    /// use settee_store::{Database, Durability, OpenOptions};
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = Database::open_with(OpenOptions {
    ///     durability: Durability::Relaxed { flush_every: Duration::from_millis(200) },
    ///     revs_limit: 100,
    ///     ..OpenOptions::new(dir.path().join("bulk"))
    /// })?;
    /// db.flush()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::open`]; also [`Error::NotFound`] when `create` is false and there is
    /// no store at the path.
    pub fn open_with(opts: OpenOptions) -> Result<Database> {
        let path = opts.path.clone();
        let not_a_store = |reason: &str| Error::NotAStore {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_dir() => return Err(not_a_store("is not a directory")),
            Ok(_) => {
                let has_db = path.join("db").exists() && path.join("conf").exists();
                let empty = std::fs::read_dir(&path)
                    .map_err(|source| Error::Io {
                        path: path.clone(),
                        source,
                    })?
                    .next()
                    .is_none();
                if !has_db && !empty {
                    return Err(not_a_store(
                        "the directory holds other files, not a sled database",
                    ));
                }
                if !has_db && !opts.create {
                    return Err(Error::not_found(&path.display().to_string(), "missing"));
                }
            }
            Err(_) if !opts.create => {
                return Err(Error::not_found(&path.display().to_string(), "missing"))
            }
            Err(_) => {}
        }
        let flush_every = match opts.durability {
            // sled's background flusher still runs in Immediate mode; it is harmless there
            // and bounds the window for writes made through other paths.
            Durability::Immediate => Some(500),
            Durability::Relaxed { flush_every } => Some(
                u64::try_from(flush_every.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
        };
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(opts.cache_capacity)
            .flush_every_ms(flush_every);
        // sled panics on some kinds of damaged files instead of returning an error; a store
        // that cannot be read must be an error, never a crash of the application.
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut cleared_snapshots = false;
        let db = loop {
            let opened = catch_unwind(AssertUnwindSafe(|| config.open())).map_err(|_| {
                not_a_store("sled could not read its files (they are damaged or not sled's)")
            })?;
            match opened.map_err(|e| map_open_error(&path, e)) {
                // sled closes its files asynchronously (its thread pool may still hold the
                // lock file for a moment after a `Db` is dropped), and a child process being
                // spawned holds inherited descriptors until it execs. So a lock that is busy
                // is retried for a bounded time before it is reported: a store closed just
                // now opens, a store really in use fails after `lock_wait`, never hangs.
                Err(Error::StoreInUse { .. }) if started.elapsed() < opts.lock_wait => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                // A snapshot sled did not finish (the disk filled up, or the process died, as
                // it wrote one) is read as the newest one and reported as corruption: sled
                // 0.34 does not skip its `.generating` files. It is unfinished by definition,
                // and the data is in the log, so remove it and open again, once. sled had the
                // store's lock when it failed (it locks before it reads snapshots), so no
                // other process was writing that file.
                Err(Error::NotAStore { .. })
                    if !cleared_snapshots && remove_unfinished_snapshots(&path) =>
                {
                    cleared_snapshots = true;
                }
                other => break other?,
            }
        };
        // Someone else's sled database: refuse before creating our tree in it.
        let has_our_tree = db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == keys::TREE_NAME);
        if !has_our_tree && (db.tree_names().len() > 1 || !db.is_empty()) {
            return Err(not_a_store("a sled database without Settee's tree"));
        }
        let tree = db
            .open_tree(keys::TREE_NAME)
            .map_err(|e| map_open_error(&path, e))?;
        let storage = |source| Error::sled(&path, source);
        let uuid = match tree.get(keys::META_FORMAT).map_err(storage)? {
            Some(v) => {
                let mut found = String::from_utf8_lossy(&v).into_owned();
                if found == "1" {
                    tracing::info!(path = %path.display(), "upgrading the store from format 1");
                    crate::migrate::upgrade_v1(&tree, &storage)?;
                    found = "2".into();
                }
                if ["2", "3", "4"].contains(&found.as_str()) {
                    tracing::info!(path = %path.display(), from = %found, "upgrading the store's format");
                    crate::migrate::upgrade_to_indexes(&tree, &storage)?;
                    found = FORMAT_VERSION.to_string();
                }
                if found == "5" {
                    // Format 6 only added pending intervals, which a format 5 store has
                    // none of: its entries are all explicit and stay valid.
                    tracing::info!(path = %path.display(), from = %found, "upgrading the store's format");
                    tree.insert(keys::META_FORMAT, FORMAT_VERSION.to_string().as_bytes())
                        .map_err(storage)?;
                    tree.flush().map_err(storage)?;
                    found = FORMAT_VERSION.to_string();
                }
                if found != FORMAT_VERSION.to_string() {
                    return Err(Error::UnsupportedFormat {
                        path,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                let uuid = tree
                    .get(keys::META_UUID)
                    .map_err(storage)?
                    .ok_or_else(|| not_a_store("the store has no uuid"))?;
                String::from_utf8_lossy(&uuid).into_owned()
            }
            None => {
                let foreign = !tree.is_empty() || db.tree_names().len() > 2 || !db.is_empty();
                if foreign {
                    return Err(not_a_store("a sled database without Settee's format key"));
                }
                let uuid = new_uuid();
                let mut batch = sled::Batch::default();
                batch.insert(keys::META_UUID, uuid.as_bytes());
                batch.insert(keys::META_COUNTERS, &Counters::default().encode()[..]);
                // The format key goes in the same batch: a store either has all its meta
                // keys or none (and is then initialised again on the next open).
                batch.insert(keys::META_FORMAT, FORMAT_VERSION.to_string().as_bytes());
                tree.apply_batch(batch).map_err(storage)?;
                tree.flush().map_err(storage)?;
                uuid
            }
        };
        let counters = match tree.get(keys::META_COUNTERS).map_err(storage)? {
            Some(v) => Counters::decode(&v)?,
            None => return Err(not_a_store("the store has no counters record")),
        };
        let catalog = Catalog::load(&tree, &storage)?;
        let registry = Registry::load(&tree, &storage)?;
        crate::sync_state::clear_unregistered(&tree, &registry, &storage)?;
        let revs_limit = match tree.get(keys::META_REVS_LIMIT).map_err(storage)? {
            Some(v) => keys::decode_u64(&v, "revs limit")?,
            None => opts.revs_limit,
        };
        tracing::debug!(path = %path.display(), update_seq = counters.update_seq, "opened store");
        Ok(Database {
            inner: Arc::new(Inner {
                path,
                db,
                tree,
                revs_limit: AtomicU64::new(revs_limit.max(1)),
                durability: opts.durability,
                writer: Mutex::new(counters),
                notifier: Notifier::new(counters.update_seq),
                uuid,
                indexes: Indexes::new(catalog),
                sync: RwLock::new(registry),
                watchers: Watchers::default(),
                disk_full: AtomicBool::new(false),
            }),
        })
    }

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
            purge_seq: counters.purge_seq,
            uuid: inner.uuid.clone(),
            sizes: Sizes {
                file: inner.db.size_on_disk().map_err(|e| inner.storage(e))?,
                active: None,
                external: None,
            },
            disk_format_version: FORMAT_VERSION,
            instance_start_time: "0".into(),
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

/// Removes sled's unfinished snapshots (`snap.*.generating`) from the store directory;
/// whether there were any.
fn remove_unfinished_snapshots(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(path = %path.display(), file = %name, "removing an unfinished sled snapshot");
            removed |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    removed
}

fn map_open_error(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
            Error::StoreInUse {
                path: path.to_owned(),
                source: e,
            }
        }
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => Error::NotAStore {
            path: path.to_owned(),
            reason: format!("sled cannot read it: {e}"),
        },
        other => Error::sled(path, other),
    }
}

/// A random 128-bit id as 32 lowercase hex characters (store uuids, generated doc ids).
pub(crate) fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
