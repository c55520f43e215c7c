//! Opening a store: the directory, format and lock checks, the upgrade of an older format
//! (`migrate.rs`), and loading the state the features keep in memory (the index catalog,
//! the sync registry), and removing attachment writes a crash left staged. First it takes
//! the compaction's swap lock and finishes a swap a crash interrupted (`rewrite.rs`).
//! [`Database::destroy`] opens a store the same way before deleting it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{new_uuid, Counters, Database, Inner, Notifier};
use crate::attachments::staging;
use crate::index::catalog::{Catalog, Indexes};
use crate::keys::{self, FORMAT_VERSION};
use crate::sync_state::registry::{self, Registry};
use crate::sync_state::watchers::Watchers;
use crate::{Durability, Error, OpenOptions, Result};

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
        // Waits for a compaction's swap under way and finishes one a crash interrupted.
        let _swap = crate::rewrite::SwapLock::for_open(&opts.path, opts.lock_wait)?;
        Database::open_unlocked(opts)
    }

    /// [`Database::open_with`] for a caller that holds the swap lock (`rewrite.rs`).
    pub(crate) fn open_unlocked(opts: OpenOptions) -> Result<Database> {
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
                    tracing::info!(path = %path.display(), from = %found, "upgrading the store's format");
                    crate::migrate::upgrade_v5(&tree, &storage)?;
                    found = FORMAT_VERSION.to_string();
                }
                if ["6", "7", "8"].contains(&found.as_str()) {
                    tracing::info!(path = %path.display(), from = %found, "upgrading the store's format");
                    crate::migrate::upgrade_v6(&tree, &storage)?;
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
        registry::clear_unregistered(&tree, &registry, &storage)?;
        let unfinished = staging::remove_unfinished(&tree, &path, &storage)?;
        if unfinished > 0 {
            tracing::info!(path = %path.display(), unfinished, "removed attachment writes a crash left unfinished");
        }
        let revs_limit = match tree.get(keys::META_REVS_LIMIT).map_err(storage)? {
            Some(v) => keys::decode_u64(&v, "revs limit")?,
            None => opts.revs_limit,
        };
        let bodies = crate::bodies::Bodies::load(&tree, &storage)?;
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
                bodies,
            }),
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
