//! Giving disk space back: [`Database::rewrite`] copies every live key of every sled tree
//! into fresh sled files and swaps them in, crash-safely; opening a store finishes or
//! undoes a swap a crash interrupted ([`SwapLock::for_open`]). What is live is
//! `maintenance.rs`'s decision (`compact`, which `rewrite` runs first).
//!
//! Why a copy: sled 0.34 writes a log and cleans a segment only once less than half of it
//! is live, and its `db` file never shrinks, so after many updates a store's file is several
//! times its live bytes and no in-place cleanup makes it smaller.
//!
//! The swap, in the store directory, where sled keeps `conf`, `db`, `blobs/` and `snap.*`
//! (the `attachments/` directory and the other files stay where they are):
//!
//! 1. the copy is written to `compact.new/`, flushed, closed and fsynced;
//! 2. the marker `compact.swap` is created (and the directory fsynced): from here on the
//!    copy is complete, and the swap is finished by whoever gets to it;
//! 3. the old sled files move into `compact.old/`, then `compact.old/moved` is created;
//! 4. the new files move from `compact.new/` into the store directory;
//! 5. the marker is removed, then `compact.old/` and `compact.new/`.
//!
//! Every step is a rename or a create followed by an fsync of the directory, and every step
//! can be done again, so a crash at any point leaves a state the next open resolves: with
//! the marker, it finishes the swap from where it stopped (step 3 is redone until `moved`
//! exists, since until then no new file has moved in); without it, the copy is incomplete
//! or the swap is done, and the leftover directories are removed.
//!
//! **Invariant:** nobody opens the sled files while a swap is under way. The store's lock
//! is sled's lock on `db`, which the swap must release (sled must be closed before its
//! files move), so the swap holds a second lock, on `compact.lock`, from before the copy
//! to after the new files are open; every open of an existing store takes that lock first
//! (and waits for it as for sled's).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::{Database, Error, OpenOptions, Result};

/// The directory the copy is written to.
const NEW_DIR: &str = "compact.new";
/// The directory the old sled files move to.
const OLD_DIR: &str = "compact.old";
/// Present while a complete copy is being swapped in.
const MARKER: &str = "compact.swap";
/// In [`OLD_DIR`]: every old sled file has moved there.
const MOVED: &str = "moved";
/// The lock a swap and every open take (see the module doc).
const LOCK_FILE: &str = "compact.lock";
/// Entries copied per sled batch: bounds the memory the copy holds.
const COPY_BATCH: usize = 1000;
/// How long a swap waits for sled to close a database it dropped (sled closes its files on
/// its own threads, shortly after the last handle goes).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Whether `name` is one of sled's files in a store directory.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Where a rewrite stops early (the test hook, [`Database::rewrite_stopping_after`]): the
/// number of steps still allowed, or `None` to run to the end.
struct Steps(Option<usize>);

impl Steps {
    /// Counts one step done; [`Error::Io`] (`Interrupted`) once the allowance is used up.
    fn tick(&mut self, path: &Path) -> Result<()> {
        match &mut self.0 {
            Some(0) => Err(Error::Io {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::Interrupted, "stopped by the test hook"),
            }),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The swap lock ([`LOCK_FILE`]), held until dropped.
pub(crate) struct SwapLock {
    _file: File,
}

impl SwapLock {
    /// Takes the swap lock of the store at `path` before it is opened, waiting up to
    /// `wait` for a swap under way, and resolves what an interrupted swap left. `None` when
    /// there is no store there yet (a missing or empty directory, or a foreign one, which
    /// the open then refuses).
    ///
    /// # Errors
    /// [`Error::StoreInUse`] if the lock stays busy for `wait`; [`Error::Io`] if the lock
    /// file or the swap's renames fail.
    pub(crate) fn for_open(path: &Path, wait: Duration) -> Result<Option<SwapLock>> {
        let is_store = ["db", MARKER, LOCK_FILE]
            .iter()
            .any(|f| path.join(f).exists());
        if !path.is_dir() || !is_store {
            return Ok(None);
        }
        let file = lock_file(path)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => break,
                Err(e) if is_busy(&e) && started.elapsed() < wait => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) if is_busy(&e) => {
                    return Err(Error::StoreInUse {
                        path: path.to_owned(),
                        source: sled::Error::Io(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "the store is being compacted (compact.lock is held)",
                        )),
                    })
                }
                Err(e) => return Err(io_error(path, e)),
            }
        }
        settle(path, &mut Steps(None))?;
        Ok(Some(SwapLock { _file: file }))
    }

    /// Takes the swap lock, waiting as long as it takes (an open holds it for at most its
    /// lock wait).
    fn acquire(path: &Path) -> Result<SwapLock> {
        let file = lock_file(path)?;
        file.lock_exclusive().map_err(|e| io_error(path, e))?;
        Ok(SwapLock { _file: file })
    }
}

fn lock_file(path: &Path) -> Result<File> {
    let lock = path.join(LOCK_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| io_error(&lock, e))
}

/// Whether a lock attempt failed because someone else holds the lock.
fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Database {
    /// Compacts the store ([`Database::compact`]), then gives the disk space back: copies
    /// every live key into fresh sled files and swaps them in, so that the store's files
    /// hold about its live bytes. Returns the store opened again (with the same durability
    /// and revs limit, and the default cache capacity).
    ///
    /// The swap needs sled closed, so it needs the only handle: other clones of this
    /// [`Database`] (in this process; another process cannot have it open) make it
    /// [`Error::StoreInUse`] after the compaction, and they stay usable. Another process
    /// that opens the store meanwhile waits, as for any open store. A crash at any point
    /// leaves a store that opens with all its data (the open finishes or undoes the swap).
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let mut rev = db.put(json!({"_id": "a", "v": 0}))?.rev.unwrap();
    /// for v in 1..100 {
    ///     rev = db.put(json!({"_id": "a", "_rev": rev.to_string(), "v": v}))?.rev.unwrap();
    /// }
    /// let db = db.rewrite()?;
    /// assert_eq!(db.get("a", &Default::default())?["v"], 99);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::compact`]; [`Error::StoreInUse`] if other handles exist;
    /// [`Error::Storage`] / [`Error::Io`] if the copy or the swap fails (the store then
    /// opens as it was, or with the swap finished).
    pub fn rewrite(self) -> Result<Database> {
        match self.rewrite_steps(&mut Steps(None))? {
            Some(db) => Ok(db),
            None => Err(Error::corrupt(
                "a rewrite without a step limit stopped early",
            )),
        }
    }

    /// [`Database::rewrite`] stopping after `steps` steps as a crash would (every handle
    /// closed, the files as they are): `false` if it stopped, `true` if it finished.
    /// For tests of the recovery at open; not public API.
    ///
    /// # Errors
    /// As [`Database::rewrite`].
    #[doc(hidden)]
    pub fn rewrite_stopping_after(self, steps: usize) -> Result<bool> {
        match self.rewrite_steps(&mut Steps(Some(steps))) {
            Ok(db) => Ok(db.is_some()),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::Interrupted => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn rewrite_steps(self, steps: &mut Steps) -> Result<Option<Database>> {
        self.compact()?;
        self.inner.check_writable()?;
        let path = self.inner.path.clone();
        let inner = Arc::try_unwrap(self.inner).map_err(|_| Error::StoreInUse {
            path: path.clone(),
            source: sled::Error::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                "other handles of the store are open in this process; rewriting it needs the only one",
            )),
        })?;
        let opts = OpenOptions {
            durability: inner.durability,
            revs_limit: inner.revs_limit(),
            create: false,
            ..OpenOptions::new(&path)
        };
        let lock = SwapLock::acquire(&path)?;
        let new_dir = path.join(NEW_DIR);
        let before = inner.db.size_on_disk().map_err(|e| inner.storage(e))?;
        copy(&inner.db, &new_dir, steps)?;
        // sled must be closed before its files move: it writes snapshots by path.
        drop(inner);
        wait_closed(&path.join("db"))?;
        steps.tick(&path)?;
        create_durably(&path.join(MARKER))?;
        steps.tick(&path)?;
        finish_swap(&path, steps)?;
        let db = Database::open_unlocked(opts)?;
        drop(lock);
        let after = db
            .inner
            .db
            .size_on_disk()
            .map_err(|e| db.inner.storage(e))?;
        tracing::info!(path = %path.display(), before, after, "rewrote the store's files");
        Ok(Some(db))
    }
}

/// Copies every tree of `db` into a new sled database in `dir` (replacing what a failed
/// copy left there), then closes it and makes its files durable.
fn copy(db: &sled::Db, dir: &Path, steps: &mut Steps) -> Result<()> {
    remove_dir(dir)?;
    let storage = |e| Error::sled(dir, e);
    let new = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .map_err(storage)?;
    for name in db.tree_names() {
        // The default tree is the `Db` itself (`open_tree` of its name would open it again).
        if name.as_ref() == b"__sled__default" {
            copy_tree(db, &new, dir, steps)?;
        } else {
            let from = db.open_tree(&name).map_err(storage)?;
            let to = new.open_tree(&name).map_err(storage)?;
            copy_tree(&from, &to, dir, steps)?;
        }
    }
    new.flush().map_err(storage)?;
    drop(new);
    wait_closed(&dir.join("db"))?;
    sync_all(dir)
}

fn copy_tree(from: &sled::Tree, to: &sled::Tree, dir: &Path, steps: &mut Steps) -> Result<()> {
    let storage = |e| Error::sled(dir, e);
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in from.iter() {
        let (k, v) = item.map_err(storage)?;
        batch.insert(k, v);
        n += 1;
        if n == COPY_BATCH {
            to.apply_batch(std::mem::take(&mut batch))
                .map_err(storage)?;
            // sled frees a segment whose pages moved only once the move is durable: without
            // a flush the copy's garbage (page versions a later insert superseded) stays
            // in the file until the end.
            to.flush().map_err(storage)?;
            n = 0;
            // A crash in the middle of the copy leaves an incomplete `compact.new`.
            steps.tick(dir)?;
        }
    }
    to.apply_batch(batch).map_err(storage)
}

/// Waits until nothing holds the lock on the sled file `db` (sled has closed it).
fn wait_closed(db: &Path) -> Result<()> {
    let file = File::open(db).map_err(|e| io_error(db, e))?;
    let started = Instant::now();
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => return Ok(()),
            Err(e) if is_busy(&e) && started.elapsed() < CLOSE_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if is_busy(&e) => {
                return Err(io_error(
                    db,
                    io::Error::new(io::ErrorKind::TimedOut, "sled did not close the file"),
                ))
            }
            Err(e) => return Err(io_error(db, e)),
        }
    }
}

/// What a crash left: with the marker, the swap is finished; without it, the leftover
/// copy or old files are removed.
fn settle(path: &Path, steps: &mut Steps) -> Result<()> {
    if path.join(MARKER).exists() {
        tracing::warn!(path = %path.display(), "finishing a compaction a crash interrupted");
        return finish_swap(path, steps);
    }
    for dir in [NEW_DIR, OLD_DIR] {
        if path.join(dir).exists() {
            tracing::warn!(path = %path.display(), dir, "removing what an interrupted compaction left");
            remove_dir(&path.join(dir))?;
        }
    }
    Ok(())
}

/// Steps 3 to 5 of the swap (see the module doc), from wherever they stopped.
fn finish_swap(path: &Path, steps: &mut Steps) -> Result<()> {
    let old = path.join(OLD_DIR);
    let new = path.join(NEW_DIR);
    if !old.join(MOVED).exists() {
        // The marker is written after the copy is complete, so this cannot happen unless
        // someone removed files by hand; moving the old files out would then lose them.
        if !(new.join("db").exists() && new.join("conf").exists()) {
            return Err(Error::corrupt(format!(
                "{} says a compaction is being swapped in, and {} has no sled files; \
                 remove the marker to keep the current files",
                path.join(MARKER).display(),
                new.display()
            )));
        }
        std::fs::create_dir_all(&old).map_err(|e| io_error(&old, e))?;
        // No new file has moved in yet (that starts after `moved` exists): every sled
        // file in the store directory is an old one.
        for name in entries(path)? {
            if is_sled_file(&name) {
                rename(&path.join(&name), &old.join(&name))?;
                steps.tick(path)?;
            }
        }
        sync_dir(&old)?;
        create_durably(&old.join(MOVED))?;
        steps.tick(path)?;
    }
    for name in entries(&new)? {
        rename(&new.join(&name), &path.join(&name))?;
        steps.tick(path)?;
    }
    remove_file(&path.join(MARKER))?;
    sync_dir(path)?;
    steps.tick(path)?;
    remove_dir(&old)?;
    steps.tick(path)?;
    remove_dir(&new)?;
    sync_dir(path)
}

/// The names in a directory.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Renames `from` to `to` and fsyncs the directory `to` is in (so is `from`'s, when it is
/// the same; a crash may leave the entry in both places only across directories, and each
/// step redoes its renames).
fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| io_error(from, e))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    if let Some(parent) = from.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates an empty file and makes its entry durable.
fn create_durably(file: &Path) -> Result<()> {
    File::create(file)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(file, e))?;
    match file.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn remove_file(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(file, e)),
        _ => Ok(()),
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(dir, e)),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// fsyncs every file and directory under `dir`, and `dir`.
fn sync_all(dir: &Path) -> Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io_error(&d, e))? {
            let entry = entry.map_err(|e| io_error(&d, e))?;
            let p = entry.path();
            if entry.file_type().map_err(|e| io_error(&p, e))?.is_dir() {
                stack.push(p);
            } else {
                File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_error(&p, e))?;
            }
        }
        sync_dir(&d)?;
    }
    Ok(())
}
