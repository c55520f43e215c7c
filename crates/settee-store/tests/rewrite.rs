//! `Database::rewrite` (issue 24, "Disk"): the store's files shrink to about its live
//! bytes, every key of every sled tree is the same after, a crash at each step of the swap
//! leaves a store that opens with all its data, and a rewrite with other handles open is
//! refused after compacting in place.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use settee_store::{Database, FindRequest, GetOptions, Rev};

use common::{raw_sled, reopen};

const REMOTE: &str = "http://couch.example/db";

/// Every key and value of every sled tree, read with plain sled from a closed store.
fn dump(path: &Path) -> BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> {
    let db = raw_sled(path);
    let mut out = BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        let kv = tree
            .iter()
            .map(|r| r.unwrap())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        out.insert(name.to_vec(), kv);
    }
    out
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// A store with the kinds of records a rewrite must carry over: documents written many
/// times, deleted ones, a conflict, attachments, `_local` docs (a checkpoint), a Mango
/// index and a registered remote's sync state.
fn fill(db: &Database, docs: usize, edits: usize) {
    db.register_remote(REMOTE, Default::default()).unwrap();
    db.create_index(&json!({"index": {"fields": ["n"]}, "ddoc": "by", "name": "n"}))
        .unwrap();
    let mut revs: Vec<Rev> = Vec::new();
    for chunk in (0..docs).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"_id": format!("d{i:05}"), "n": i, "text": "x".repeat(200)}))
            .collect();
        for r in db.bulk_docs(batch, true).unwrap() {
            revs.push(r.rev.unwrap());
        }
    }
    for round in 0..edits {
        for (i, rev) in revs.iter_mut().enumerate().take(docs / 2) {
            let doc = json!({"_id": format!("d{i:05}"), "_rev": rev.to_string(), "n": i, "round": round, "text": "y".repeat(200)});
            *rev = db.put(doc).unwrap().rev.unwrap();
        }
    }
    for (i, rev) in revs.iter().enumerate().skip(docs / 2).take(docs / 10) {
        db.delete(&format!("d{i:05}"), rev).unwrap();
    }
    db.bulk_docs(
        vec![json!({"_id": "d00000", "_rev": "1-ffff", "theirs": true})],
        false,
    )
    .unwrap();
    db.put(json!({"_id": "att", "_attachments": {"t.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}}))
        .unwrap();
    db.put_local(json!({"_id": "_local/checkpoint", "last_seq": 42}))
        .unwrap();
    let held: BTreeMap<String, Vec<Rev>> = [("d00001".to_owned(), vec![revs[1].clone()])].into();
    db.record_remote_revs(REMOTE, &held, &[]).unwrap();
}

/// What the public API reads of the store [`fill`] made.
fn reads(db: &Database) -> Value {
    let find = db
        .find(&FindRequest::parse(&json!({"selector": {"n": {"$lt": 5}}})).unwrap())
        .unwrap();
    json!({
        "conflicted": db.get("d00000", &GetOptions { conflicts: true, ..Default::default() }).unwrap(),
        "edited": db.get("d00001", &GetOptions::default()).unwrap(),
        "attachment": db.attachment("att", None, "t.txt").unwrap().data,
        "local": db.get_local("_local/checkpoint").unwrap(),
        "find": serde_json::to_value(&find.docs).unwrap(),
        "sync": format!("{:?} {:?}", db.sync_counts(REMOTE).unwrap(), db.sync_state(REMOTE, "d00001").unwrap()),
        "verify": serde_json::to_value(db.verify().unwrap()).unwrap(),
        "info": [db.info().unwrap().doc_count, db.info().unwrap().doc_del_count, db.info().unwrap().update_seq],
    })
}

#[test]
fn rewrite_gives_space_back_and_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    fill(&db, 500, 6);
    db.compact().unwrap();
    let expected = reads(&db);
    drop(db);
    let keys = dump(&path);
    let before = disk_bytes(&path);

    let db = reopen(&path).unwrap().rewrite().unwrap();
    assert_eq!(reads(&db), expected);
    drop(db);
    let after = disk_bytes(&path);
    assert_eq!(
        dump(&path),
        keys,
        "every tree holds the same keys and values"
    );
    let live: usize = keys
        .values()
        .flat_map(|t| t.iter())
        .map(|(k, v)| k.len() + v.len())
        .sum();
    eprintln!("before {before} B, after {after} B, live {live} B");
    assert!(
        after * 2 < before,
        "the rewrite gives space back: {before} B before, {after} B after"
    );
    for leftover in ["compact.new", "compact.old", "compact.swap"] {
        assert!(!path.join(leftover).exists(), "{leftover} is left");
    }
    // The store keeps working: a write after the rewrite, and another rewrite.
    let db = reopen(&path).unwrap();
    db.put(json!({"_id": "after"})).unwrap();
    let db = db.rewrite().unwrap();
    assert_eq!(
        db.get("after", &GetOptions::default()).unwrap()["_id"],
        "after"
    );
    db.verify().unwrap();
}

/// Which of the swap's files and directories are in the store directory.
fn layout(path: &Path) -> String {
    [
        "compact.new",
        "compact.swap",
        "compact.old",
        "compact.old/moved",
        "db",
    ]
    .iter()
    .filter(|f| path.join(f).exists())
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}

#[test]
fn a_crash_at_each_step_of_a_rewrite_leaves_a_store_with_all_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    // More keys than one copy batch, so that a crash can stop the copy half-way.
    fill(&db, 800, 1);
    db.compact().unwrap();
    let expected = reads(&db);
    drop(db);
    let keys = dump(&path);
    let mut seen = Vec::new();
    for steps in 0.. {
        let done = reopen(&path)
            .unwrap()
            .rewrite_stopping_after(steps)
            .unwrap();
        let left = layout(&path);
        seen.push(left.clone());
        // Nothing runs at open but the recovery; the data must all be there.
        let db = reopen(&path).unwrap_or_else(|e| panic!("after step {steps} ({left}): {e}"));
        assert_eq!(reads(&db), expected, "after step {steps} ({left})");
        drop(db);
        assert_eq!(dump(&path), keys, "after step {steps} ({left})");
        assert_eq!(
            layout(&path),
            "db",
            "after step {steps} ({left}), the open cleaned up"
        );
        if done {
            break;
        }
        assert!(steps < 100, "the rewrite never finished");
    }
    eprintln!("{seen:#?}");
    // The stops covered each phase: a copy half-made and complete without the marker; the
    // marker with no file moved, with the old files partly and wholly out, with the new
    // files partly in, and after the marker is gone.
    for state in [
        "compact.new db",
        "compact.new compact.swap db",
        "compact.new compact.swap compact.old db",
        "compact.new compact.swap compact.old",
        "compact.new compact.swap compact.old compact.old/moved",
        "compact.new compact.swap compact.old compact.old/moved db",
        "compact.new compact.old compact.old/moved db",
        "db",
    ] {
        assert!(
            seen.iter().any(|s| s == state),
            "no stop left {state:?}: {seen:#?}"
        );
    }
}

#[test]
fn a_rewrite_with_other_handles_open_compacts_in_place_and_is_refused() {
    let (_dir, db) = common::db();
    let r1 = db.put(json!({"_id": "a", "v": 1})).unwrap().rev.unwrap();
    db.put(json!({"_id": "a", "_rev": r1.to_string(), "v": 2}))
        .unwrap();
    let other = db.clone();
    let err = db.rewrite().unwrap_err();
    assert_eq!(err.name(), "store_in_use", "{err}");
    // The compaction ran: the old revision's body is gone. The other handle works.
    let old = other.get(
        "a",
        &GetOptions {
            rev: Some(r1),
            ..Default::default()
        },
    );
    assert_eq!(old.unwrap_err().name(), "not_found");
    other.put(json!({"_id": "b"})).unwrap();
    assert_eq!(other.info().unwrap().doc_count, 2);
    other.verify().unwrap();
}

#[test]
fn a_marker_without_a_copy_is_refused_not_applied() {
    let (dir, db) = common::db();
    db.put(json!({"_id": "a"})).unwrap();
    let path = db.path().to_owned();
    drop(db);
    std::fs::write(path.join("compact.swap"), b"").unwrap();
    let err = reopen(&path).unwrap_err();
    assert_eq!(err.name(), "corrupt", "{err}");
    assert!(path.join("db").exists(), "the current files stay");
    std::fs::remove_file(path.join("compact.swap")).unwrap();
    assert_eq!(common::get(&reopen(&path).unwrap(), "a")["_id"], "a");
    drop(dir);
}
