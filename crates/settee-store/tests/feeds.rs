//! `_changes` (normal and live) and `_all_docs`, against CouchDB's documented behaviour
//! (api/database/changes.rst, api/database/bulk-api.rst `_all_docs`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{db, put_rev};
use futures::StreamExt;
use serde_json::json;
use settee_store::{AllDocsOptions, ChangesOptions, ChangesStyle};

fn ids(ch: &settee_store::Changes) -> Vec<(&str, u64)> {
    ch.results.iter().map(|c| (c.id.as_str(), c.seq)).collect()
}

#[test]
fn each_doc_appears_once_at_its_latest_seq() {
    let (_d, db) = db();
    let a1 = put_rev(&db, json!({"_id": "a"})); // 1
    put_rev(&db, json!({"_id": "b"})); // 2
    let a2 = put_rev(&db, json!({"_id": "a", "_rev": a1.to_string()})); // 3
    let ch = db.changes(&ChangesOptions::default()).unwrap();
    assert_eq!(ids(&ch), [("b", 2), ("a", 3)]);
    assert_eq!(ch.results[1].changes, [a2]);
    assert_eq!((ch.last_seq, ch.pending), (3, Some(0)));
    let js = serde_json::to_value(&ch).unwrap();
    assert_eq!(
        js["results"][1]["changes"],
        json!([{"rev": ch.results[1].changes[0].to_string()}])
    );
    assert!(js["results"][1].get("deleted").is_none());
}

#[test]
fn since_limit_pending_and_descending() {
    let (_d, db) = db();
    for id in ["a", "b", "c", "d"] {
        put_rev(&db, json!({"_id": id}));
    }
    let ch = db
        .changes(&ChangesOptions {
            since: 1,
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&ch), [("b", 2), ("c", 3)]);
    assert_eq!((ch.last_seq, ch.pending), (3, Some(1)));
    let ch = db
        .changes(&ChangesOptions {
            descending: true,
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&ch), [("d", 4)]);
    assert_eq!((ch.last_seq, ch.pending), (4, Some(3)));
    assert_eq!(db.pending_since(1).unwrap(), 3);
    assert_eq!(db.pending_since(4).unwrap(), 0);
}

#[test]
fn deleted_flag_include_docs_and_doc_ids_filter() {
    let (_d, db) = db();
    let a = put_rev(&db, json!({"_id": "a", "v": 1}));
    put_rev(&db, json!({"_id": "b", "v": 2}));
    let del = db.delete("a", &a).unwrap().rev.unwrap();
    let ch = db
        .changes(&ChangesOptions {
            include_docs: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&ch), [("b", 2), ("a", 3)]);
    assert!(ch.results[1].deleted);
    assert_eq!(
        ch.results[1].doc,
        Some(json!({"_id": "a", "_rev": del.to_string(), "_deleted": true}))
    );
    assert_eq!(ch.results[0].doc.as_ref().unwrap()["v"], 2);
    let ch = db
        .changes(&ChangesOptions {
            doc_ids: Some(vec!["b".into()]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&ch), [("b", 2)]);
    // Filtered-out rows still advance last_seq (CouchDB).
    assert_eq!(ch.last_seq, 3);
}

#[test]
fn style_all_docs_lists_every_leaf() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![
            json!({"_id": "x", "_rev": "1-a"}),
            json!({"_id": "x", "_rev": "1-b"}),
        ],
        false,
    )
    .unwrap();
    let main = db.changes(&ChangesOptions::default()).unwrap();
    assert_eq!(main.results[0].changes, [common::rev("1-b")]);
    let all = db
        .changes(&ChangesOptions {
            style: ChangesStyle::AllDocs,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        all.results[0].changes,
        [common::rev("1-b"), common::rev("1-a")]
    );
    let with_conflicts = db
        .changes(&ChangesOptions {
            include_docs: true,
            conflicts: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        with_conflicts.results[0].doc.as_ref().unwrap()["_conflicts"],
        json!(["1-a"])
    );
}

#[test]
fn local_docs_are_never_in_changes_or_all_docs() {
    let (_d, db) = db();
    db.put_local(json!({"_id": "_local/ck", "seq": 1})).unwrap();
    put_rev(&db, json!({"_id": "a"}));
    assert_eq!(
        ids(&db.changes(&ChangesOptions::default()).unwrap()),
        [("a", 1)]
    );
    let all = db.all_docs(&AllDocsOptions::default()).unwrap();
    assert_eq!(all.rows.len(), 1);
    assert_eq!(db.info().unwrap().doc_count, 1);
}

#[test]
fn live_changes_catches_up_then_tails_without_missing_writes() {
    let (_d, db) = db();
    for i in 0..5 {
        put_rev(&db, json!({"_id": format!("pre{i}")}));
    }
    let mut feed = db.live_changes(ChangesOptions {
        since: 2,
        ..Default::default()
    });
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                db.put(json!({"_id": format!("live{i:03}")})).unwrap();
            }
        })
    };
    let seen = within("203 live changes", async move {
        let mut seen = Vec::new();
        while seen.len() < 203 {
            let c = feed.next().await.unwrap().unwrap();
            seen.push(c.seq);
        }
        seen
    });
    writer.join().unwrap();
    let expected: Vec<u64> = (3..=205).collect();
    assert_eq!(seen, expected);
}

/// Runs `fut` on a thread of its own and gives its output, failing the test when it has not
/// finished after 60 s: a feed that never delivers fails instead of hanging the suite.
fn within<T: Send + 'static>(
    what: &str,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let limit = std::time::Duration::from_secs(60);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(futures::executor::block_on(fut));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: not done after {limit:?}"))
}

#[test]
fn live_changes_respects_limit_and_doc_ids() {
    let (_d, db) = db();
    let feed = db.live_changes(ChangesOptions {
        limit: Some(2),
        doc_ids: Some(vec!["x".into(), "y".into()]),
        ..Default::default()
    });
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for id in ["a", "x", "b", "y", "z"] {
                db.put(json!({"_id": id})).unwrap();
                std::thread::yield_now();
            }
        })
    };
    let got: Vec<String> = within(
        "a live feed with a limit to end",
        feed.map(|c| c.unwrap().id).collect(),
    );
    writer.join().unwrap();
    assert_eq!(got, ["x", "y"]);
}

#[test]
fn dropped_live_stream_does_not_block_writers() {
    let (_d, db) = db();
    let feed = db.live_changes(ChangesOptions::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let db2 = db.clone();
    std::thread::spawn(move || {
        for i in 0..2000 {
            db2.bulk_docs(vec![json!({"_id": format!("d{i}")})], true)
                .unwrap();
        }
        tx.send(()).unwrap();
    });
    // An idle, never-polled stream must not stall writes.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("writes finished");
    drop(feed);
    assert_eq!(db.info().unwrap().update_seq, 2000);
}

fn abc_db() -> (tempfile::TempDir, settee_store::Database) {
    let (d, db) = db();
    for id in ["a", "b", "c", "d", "e"] {
        put_rev(&db, json!({"_id": id, "v": id}));
    }
    // A deleted doc is left out of _all_docs.
    let r = put_rev(&db, json!({"_id": "bb"}));
    db.delete("bb", &r).unwrap();
    (d, db)
}

fn keys_of(all: &settee_store::AllDocs) -> Vec<&str> {
    all.rows.iter().map(|r| r.key.as_str()).collect()
}

#[test]
fn all_docs_ranges_skip_limit_descending_inclusive_end() {
    let (_d, db) = abc_db();
    let q = |o: AllDocsOptions| db.all_docs(&o).unwrap();
    let all = q(AllDocsOptions::default());
    assert_eq!(keys_of(&all), ["a", "b", "c", "d", "e"]);
    assert_eq!((all.total_rows, all.offset), (5, Some(0)));
    let r = q(AllDocsOptions {
        startkey: Some("b".into()),
        endkey: Some("d".into()),
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["b", "c", "d"]);
    assert_eq!(r.offset, Some(1));
    let r = q(AllDocsOptions {
        startkey: Some("b".into()),
        endkey: Some("d".into()),
        inclusive_end: false,
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["b", "c"]);
    let r = q(AllDocsOptions {
        skip: 1,
        limit: Some(2),
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["b", "c"]);
    assert_eq!(r.offset, Some(1));
    let r = q(AllDocsOptions {
        descending: true,
        startkey: Some("d".into()),
        endkey: Some("b".into()),
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["d", "c", "b"]);
    assert_eq!(r.offset, Some(1));
    let r = q(AllDocsOptions {
        descending: true,
        startkey: Some("d".into()),
        endkey: Some("b".into()),
        inclusive_end: false,
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["d", "c"]);
    let r = q(AllDocsOptions {
        descending: true,
        limit: Some(2),
        ..Default::default()
    });
    assert_eq!(keys_of(&r), ["e", "d"]);
    // startkey after endkey: no rows (CouchDB answers 400 only when descending mismatches;
    // PouchDB answers an empty list).
    let r = q(AllDocsOptions {
        startkey: Some("d".into()),
        endkey: Some("b".into()),
        ..Default::default()
    });
    assert!(r.rows.is_empty());
}

#[test]
fn all_docs_include_docs_and_keys() {
    let (_d, db) = abc_db();
    let r = db
        .all_docs(&AllDocsOptions {
            include_docs: true,
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.rows[0].doc.as_ref().unwrap()["v"], "a");
    let r = db
        .all_docs(&AllDocsOptions {
            keys: Some(vec!["c".into(), "zz".into(), "bb".into()]),
            include_docs: true,
            ..Default::default()
        })
        .unwrap();
    let js = serde_json::to_value(&r).unwrap();
    assert_eq!(js["rows"][0]["id"], "c");
    assert_eq!(js["rows"][1], json!({"key": "zz", "error": "not_found"}));
    assert_eq!(js["rows"][2]["value"]["deleted"], true);
    assert_eq!(js["rows"][2]["doc"], serde_json::Value::Null);
}

#[test]
fn all_docs_orders_ids_by_utf8_bytes() {
    let (_d, db) = db();
    for id in ["b", "B", "a", "\u{e9}", "_design/x", "10", "9"] {
        put_rev(&db, json!({"_id": id}));
    }
    let all = db.all_docs(&AllDocsOptions::default()).unwrap();
    // Raw collation: digits < uppercase < '_' < lowercase < non-ASCII.
    assert_eq!(
        keys_of(&all),
        ["10", "9", "B", "_design/x", "a", "b", "\u{e9}"]
    );
}
