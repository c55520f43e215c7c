//! Opening, locking, format checks, `_local` docs, `compact`, `purge`, `info`, `destroy`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{db, put_rev, raw_sled, rev};
use serde_json::json;
use settee_store::{Database, GetOptions, OpenOptions};

const CHILD_ENV: &str = "SETTEE_STORE_TEST_HOLD";

/// Child role: open the store named by the env var, say so, and hold it until stdin closes.
#[test]
fn child_hold_store_open() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // Not the child: nothing to do.
    };
    let _db = Database::open(&path).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn second_process_gets_store_in_use_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held");
    Database::open(&path).unwrap(); // create, then close
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_hold_store_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before opening the store"
        );
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    let err = Database::open(&path).unwrap_err();
    assert_eq!(err.name(), "store_in_use");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    drop(child.stdin.take());
    child.wait().unwrap();
    // Once the child is gone, the store opens again.
    assert!(Database::open(&path).is_ok());
}

#[test]
fn second_handle_in_the_same_process_gets_store_in_use() {
    let (dir, _db) = db();
    let err = Database::open(dir.path().join("db")).unwrap_err();
    assert_eq!(err.name(), "store_in_use");
}

#[test]
fn reopen_keeps_data_uuid_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (uuid, r) = {
        let db = Database::open(&path).unwrap();
        let r = put_rev(&db, json!({"_id": "a", "v": 1}));
        (db.info().unwrap().uuid, r)
    };
    let db = Database::open(&path).unwrap();
    let info = db.info().unwrap();
    assert_eq!(info.uuid, uuid);
    assert_eq!(info.uuid.as_deref().map(str::len), Some(32));
    assert_eq!((info.update_seq, info.doc_count), (1, 1));
    assert_eq!(
        db.get("a", &GetOptions::default()).unwrap()["_rev"],
        r.to_string()
    );
    let js = serde_json::to_value(&info).unwrap();
    assert_eq!(js["db_name"], "db");
    assert!(js["sizes"]["file"].as_u64().unwrap() > 0);
}

#[test]
fn foreign_directory_and_file_are_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let e = Database::open(dir.path()).unwrap_err();
    assert_eq!(e.name(), "not_a_store");
    assert!(dir.path().join("notes.txt").exists());
    let e = Database::open(dir.path().join("notes.txt")).unwrap_err();
    assert_eq!(e.name(), "not_a_store");
}

#[test]
fn sled_database_of_someone_else_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other");
    {
        let other = sled::open(&path).unwrap();
        other.insert("k", "v").unwrap();
        other.flush().unwrap();
    }
    let e = Database::open(&path).unwrap_err();
    assert_eq!(e.name(), "not_a_store", "{e}");
    // Refused without writing to it: no tree of ours was created.
    let other = raw_sled(&path);
    assert!(!other.tree_names().iter().any(|n| n.as_ref() == b"settee"));
    assert_eq!(other.get("k").unwrap().unwrap().as_ref(), b"v");
}

#[test]
fn other_format_version_is_unsupported_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    Database::open(&path).unwrap();
    {
        let raw = raw_sled(&path);
        raw.open_tree("settee")
            .unwrap()
            .insert("Mformat", "0")
            .unwrap();
        raw.flush().unwrap();
    }
    let e = Database::open(&path).unwrap_err();
    assert_eq!(e.name(), "unsupported_format");
    assert!(e.to_string().contains("format 0"), "{e}");
}

#[test]
fn garbage_sled_files_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
    std::fs::write(path.join("db"), vec![0xa5u8; 70_000]).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(
        matches!(e.name(), "not_a_store" | "internal_server_error"),
        "{e}"
    );
}

#[test]
fn open_without_create_on_missing_path_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let e = Database::open_with(OpenOptions {
        create: false,
        ..OpenOptions::new(dir.path().join("no"))
    })
    .unwrap_err();
    assert_eq!(e.name(), "not_found");
}

#[test]
fn destroy_removes_a_closed_store_and_refuses_an_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    assert_eq!(Database::destroy(&path).unwrap_err().name(), "store_in_use");
    drop(db);
    Database::destroy(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn local_docs_have_0_n_revs_and_need_the_current_rev() {
    let (_d, db) = db();
    let r = db.put_local(json!({"_id": "_local/ck", "seq": 1})).unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"ok": true, "id": "_local/ck", "rev": "0-1"})
    );
    assert_eq!(
        db.put_local(json!({"_id": "ck", "seq": 2}))
            .unwrap_err()
            .name(),
        "conflict"
    );
    assert_eq!(
        db.put_local(json!({"_id": "ck", "_rev": "0-7", "seq": 2}))
            .unwrap_err()
            .name(),
        "conflict"
    );
    assert_eq!(
        db.put_local(json!({"_id": "ck", "_rev": "0-1", "seq": 2}))
            .unwrap()
            .rev,
        "0-2"
    );
    assert_eq!(
        db.get_local("_local/ck").unwrap(),
        json!({"_id": "_local/ck", "_rev": "0-2", "seq": 2})
    );
    assert_eq!(
        db.get("_local/ck", &GetOptions::default()).unwrap()["seq"],
        2
    );
    assert_eq!(db.delete_local("ck", "0-1").unwrap_err().name(), "conflict");
    assert_eq!(db.delete_local("ck", "0-2").unwrap().rev, "0-0");
    assert_eq!(db.get_local("ck").unwrap_err().name(), "not_found");
    // Writing _local docs through bulk_docs is refused; put_local is the way.
    assert_eq!(
        db.put(json!({"_id": "_local/x"})).unwrap_err().name(),
        "bad_request"
    );
    assert_eq!(db.info().unwrap().update_seq, 0);
}

#[test]
fn compact_drops_inner_bodies_keeps_tree_and_sweeps_attachments() {
    let (_d, db) = db();
    let r1 = put_rev(
        &db,
        json!({"_id": "a", "v": 1, "_attachments": {"t": {"content_type": "text/plain", "data": "aGVsbG8="}}}),
    );
    let r2 = put_rev(&db, json!({"_id": "a", "_rev": r1.to_string(), "v": 2}));
    let before = db.verify().unwrap();
    assert_eq!((before.bodies, before.attachments), (2, 1));
    db.compact().unwrap();
    let after = db.verify().unwrap();
    assert_eq!((after.bodies, after.attachments), (1, 0));
    let doc = db
        .get(
            "a",
            &GetOptions {
                revs: true,
                revs_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], r2.to_string());
    assert_eq!(doc["_revisions"]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc["_revs_info"][1],
        json!({"rev": r1.to_string(), "status": "missing"})
    );
    assert_eq!(db.info().unwrap().update_seq, 2);
}

#[test]
fn purge_removes_leaves_and_whole_docs() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![
            json!({"_id": "x", "_revisions": {"start": 2, "ids": ["b", "a"]}}),
            json!({"_id": "x", "_revisions": {"start": 2, "ids": ["c", "a"]}}),
            json!({"_id": "y", "_rev": "1-y"}),
        ],
        false,
    )
    .unwrap();
    let res = db
        .purge(BTreeMap::from([
            ("x".to_string(), vec![rev("2-c"), rev("1-a")]),
            ("y".to_string(), vec![rev("1-y")]),
            ("z".to_string(), vec![rev("1-z")]),
        ]))
        .unwrap();
    assert_eq!(res.purge_seq, 1);
    assert_eq!(res.purged["x"], [rev("2-c")]); // 1-a is not a leaf: ignored
    assert_eq!(res.purged["y"], [rev("1-y")]);
    assert!(res.purged["z"].is_empty());
    let doc = db
        .get(
            "x",
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], "2-b");
    assert!(doc.get("_conflicts").is_none());
    assert_eq!(
        db.get("y", &GetOptions::default()).unwrap_err().reason(),
        "missing"
    );
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.purge_seq), (1, Some(1)));
    let ch = db.changes(&Default::default()).unwrap();
    assert_eq!(
        ch.results.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["x"]
    );
    // The purged revision can be replicated in again (revs_diff asks for it).
    let diff = db
        .revs_diff(BTreeMap::from([("x".to_string(), vec![rev("2-c")])]))
        .unwrap();
    assert_eq!(diff["x"].missing, [rev("2-c")]);
    db.verify().unwrap();
}

#[test]
fn relaxed_durability_with_explicit_flush_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open_with(OpenOptions {
            durability: settee_store::Durability::Relaxed {
                flush_every: std::time::Duration::from_secs(60),
            },
            ..OpenOptions::new(&path)
        })
        .unwrap();
        db.bulk_docs(
            (0..100).map(|i| json!({"_id": format!("d{i}")})).collect(),
            true,
        )
        .unwrap();
        db.flush().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.info().unwrap().doc_count, 100);
}
