//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use serde_json::Value;
use settee_store::{Database, GetOptions, OpenOptions, Rev};

/// A fresh store in a temporary directory (kept alive by the returned guard).
pub fn db() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("db")).expect("open");
    (dir, db)
}

pub fn rev(s: &str) -> Rev {
    s.parse().expect("rev")
}

pub fn get(db: &Database, id: &str) -> Value {
    db.get(id, &GetOptions::default()).expect("get")
}

pub fn put_rev(db: &Database, doc: Value) -> Rev {
    db.put(doc).expect("put").rev.expect("rev")
}

/// How long a test waits for a store's lock after dropping its handle or killing the process
/// that held it: sled lets go of the lock file asynchronously (its flusher thread, a moment
/// later, longer on a loaded machine), and a killed child's descriptors close when the kernel
/// reaps it. Longer than the store's own [`OpenOptions::LOCK_WAIT`], which a user waits on.
pub const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store at `path` with the default options but [`REOPEN_WAIT`] for its lock: the
/// store's own retry, with the tests' longer deadline.
pub fn reopen(path: &std::path::Path) -> settee_store::Result<Database> {
    Database::open_with(OpenOptions {
        lock_wait: REOPEN_WAIT,
        ..OpenOptions::new(path)
    })
}

/// Opens a store directory with plain sled, retrying a busy lock until [`REOPEN_WAIT`] (see
/// there why).
pub fn raw_sled(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + REOPEN_WAIT;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("sled::open({}): {e}", path.display()),
        }
    }
}
