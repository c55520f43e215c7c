//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use serde_json::Value;
use settee_store::{Database, GetOptions, Rev};

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

/// Opens a store directory with plain sled. sled releases its lock asynchronously after a
/// handle is dropped (its flusher thread lets go of the file a moment later, longer on a busy
/// machine), so a busy lock is retried for a bounded time.
pub fn raw_sled(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
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
