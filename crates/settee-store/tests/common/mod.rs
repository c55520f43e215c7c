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
