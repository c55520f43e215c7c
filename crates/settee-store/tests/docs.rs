//! Document writes and reads with `new_edits=true`, checked against CouchDB's documented
//! behaviour (api/document/common.rst, api/database/bulk-api.rst, couch_db_updater rules).
#![allow(clippy::unwrap_used)]

mod common;

use common::{db, get, put_rev, rev};
use serde_json::json;
use settee_store::{GetOptions, OpenRevResult, OpenRevs};

#[test]
fn create_then_update_gives_pos_1_then_2_and_body() {
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a", "n": 1}));
    assert_eq!(r1.pos(), 1);
    assert_eq!(r1.hash().len(), 32);
    let r2 = put_rev(&db, json!({"_id": "a", "_rev": r1.to_string(), "n": 2}));
    assert_eq!(r2.pos(), 2);
    assert_eq!(
        get(&db, "a"),
        json!({"_id": "a", "_rev": r2.to_string(), "n": 2})
    );
}

#[test]
fn same_edit_gives_same_rev_on_two_stores() {
    // Deterministic revs: the same edit on two replicas is not a conflict.
    let (_d1, a) = db();
    let (_d2, b) = db();
    assert_eq!(
        put_rev(&a, json!({"_id": "x", "v": [1, 2]})),
        put_rev(&b, json!({"v": [1, 2], "_id": "x"}))
    );
}

#[test]
fn stale_rev_is_409_conflict_and_writes_nothing() {
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a", "n": 1}));
    put_rev(&db, json!({"_id": "a", "_rev": r1.to_string(), "n": 2}));
    let e = db
        .put(json!({"_id": "a", "_rev": r1.to_string(), "n": 3}))
        .unwrap_err();
    assert_eq!((e.name(), e.status()), ("conflict", 409));
    assert_eq!(get(&db, "a")["n"], 2);
    assert_eq!(db.info().unwrap().update_seq, 2);
}

#[test]
fn create_over_live_doc_without_rev_is_conflict() {
    let (_d, db) = db();
    put_rev(&db, json!({"_id": "a"}));
    assert_eq!(
        db.put(json!({"_id": "a", "x": 1})).unwrap_err().name(),
        "conflict"
    );
}

#[test]
fn rev_for_missing_doc_is_conflict() {
    // couch_db:prep_and_validate_updates: "old revs specified but none exist" -> conflict.
    let (_d, db) = db();
    let e = db.put(json!({"_id": "a", "_rev": "1-abc"})).unwrap_err();
    assert_eq!(e.name(), "conflict");
}

#[test]
fn get_deleted_is_not_found_deleted_and_missing_is_not_found_missing() {
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a"}));
    let del = db.delete("a", &r1).unwrap();
    assert_eq!(del.rev.as_ref().unwrap().pos(), 2);
    let e = db.get("a", &GetOptions::default()).unwrap_err();
    assert_eq!((e.name(), e.reason().as_str()), ("not_found", "deleted"));
    let e = db.get("nope", &GetOptions::default()).unwrap_err();
    assert_eq!((e.name(), e.reason().as_str()), ("not_found", "missing"));
    // The tombstone can be read by rev: {_id, _rev, _deleted: true}.
    let tomb = db
        .get(
            "a",
            &GetOptions {
                rev: del.rev.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        tomb,
        json!({"_id": "a", "_rev": del.rev.unwrap().to_string(), "_deleted": true})
    );
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.doc_del_count), (0, 1));
}

#[test]
fn delete_missing_doc_is_not_found() {
    let (_d, db) = db();
    assert_eq!(
        db.delete("nope", &rev("1-a")).unwrap_err().name(),
        "not_found"
    );
}

#[test]
fn recreating_deleted_doc_extends_the_tombstone() {
    // CouchDB/PouchDB: a write without _rev over a deleted doc becomes a child of the
    // winning tombstone (pos 3 here), not a new 1- root.
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a", "v": 1}));
    let r2 = db.delete("a", &r1).unwrap().rev.unwrap();
    let r3 = put_rev(&db, json!({"_id": "a", "v": 2}));
    assert_eq!(r3.pos(), 3);
    let doc = db
        .get(
            "a",
            &GetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["v"], 2);
    assert_eq!(
        doc["_revisions"],
        json!({"start": 3, "ids": [r3.hash(), r2.hash(), r1.hash()]})
    );
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.doc_del_count), (1, 0));
}

#[test]
fn illegal_ids_are_rejected_with_couchdb_names() {
    let (_d, db) = db();
    for id in ["_foo", "", "_design/", "_local/"] {
        let e = db.put(json!({"_id": id})).unwrap_err();
        assert_eq!(e.name(), "illegal_docid", "{id:?}");
        assert_eq!(e.status(), 400);
    }
    let e = db.put(json!({"_id": "_foo"})).unwrap_err();
    assert_eq!(
        e.reason(),
        "Only reserved document ids may start with underscore."
    );
    assert!(db.put(json!({"_id": "_design/app", "views": {}})).is_ok());
    assert_eq!(db.info().unwrap().update_seq, 1);
}

#[test]
fn unknown_underscore_field_is_doc_validation_and_nothing_is_written() {
    let (_d, db) = db();
    let e = db.put(json!({"_id": "a", "_bogus": 1})).unwrap_err();
    assert_eq!(e.name(), "doc_validation");
    assert_eq!(e.reason(), "Bad special document member: _bogus");
    assert_eq!(db.info().unwrap().update_seq, 0);
    assert!(db.get("a", &GetOptions::default()).is_err());
}

#[test]
fn doc_without_id_gets_a_generated_id() {
    let (_d, db) = db();
    let r = db.put(json!({"v": 1})).unwrap();
    assert_eq!(r.id.len(), 32);
    assert_eq!(get(&db, &r.id)["v"], 1);
}

#[test]
fn bulk_docs_reports_per_doc_results_like_couchdb() {
    let (_d, db) = db();
    put_rev(&db, json!({"_id": "taken"}));
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "a"}),
                json!({"_id": "taken"}),
                json!({"_id": "_bad"}),
            ],
            true,
        )
        .unwrap();
    let js = serde_json::to_value(&res).unwrap();
    assert_eq!(js[0]["ok"], true);
    assert_eq!(js[0]["id"], "a");
    assert_eq!(
        js[1],
        json!({"id": "taken", "error": "conflict", "reason": "Document update conflict."})
    );
    assert_eq!(js[2]["error"], "illegal_docid");
    assert_eq!(db.info().unwrap().doc_count, 2);
}

#[test]
fn bulk_docs_same_id_twice_applies_in_order() {
    let (_d, db) = db();
    let res = db
        .bulk_docs(
            vec![json!({"_id": "a", "v": 1}), json!({"_id": "a", "v": 2})],
            true,
        )
        .unwrap();
    // The second has no _rev, so it conflicts with the first, as in CouchDB.
    assert!(res[0].is_ok());
    assert_eq!(res[1].error.as_deref(), Some("conflict"));
    let r1 = res[0].rev.clone().unwrap();
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "b", "v": 1}),
                json!({"_id": "a", "_rev": r1.to_string(), "v": 3}),
            ],
            true,
        )
        .unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    assert_eq!(get(&db, "a")["v"], 3);
}

fn conflicted() -> (tempfile::TempDir, settee_store::Database) {
    let (d, db) = db();
    // 1-a -> 2-b (live), 1-a -> 2-c (live), 1-a -> 2-d -> 3-e (deleted).
    for (revs, deleted) in [
        (json!({"start": 2, "ids": ["b", "a"]}), false),
        (json!({"start": 2, "ids": ["c", "a"]}), false),
        (json!({"start": 3, "ids": ["e", "d", "a"]}), true),
    ] {
        let res = db
            .bulk_docs(vec![json!({"_id": "x", "_revisions": revs, "_deleted": deleted, "who": revs["ids"][0]})], false)
            .unwrap();
        assert!(res[0].is_ok(), "{res:?}");
    }
    (d, db)
}

#[test]
fn winner_conflicts_and_deleted_conflicts() {
    // Winner: live beats deleted, then higher pos, then greater hash: 2-c.
    let (_d, db) = conflicted();
    let doc = db
        .get(
            "x",
            &GetOptions {
                conflicts: true,
                deleted_conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], "2-c");
    assert_eq!(doc["_conflicts"], json!(["2-b"]));
    assert_eq!(doc["_deleted_conflicts"], json!(["3-e"]));
    let meta = db
        .get(
            "x",
            &GetOptions {
                meta: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(meta["_conflicts"], json!(["2-b"]));
    assert_eq!(
        meta["_revs_info"],
        json!([{"rev": "2-c", "status": "available"}, {"rev": "1-a", "status": "missing"}])
    );
}

#[test]
fn revs_info_reports_deleted_status() {
    let (_d, db) = conflicted();
    let doc = db
        .get(
            "x",
            &GetOptions {
                rev: Some(rev("3-e")),
                revs_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_deleted"], true);
    assert_eq!(
        doc["_revs_info"],
        json!([
            {"rev": "3-e", "status": "deleted"},
            {"rev": "2-d", "status": "missing"},
            {"rev": "1-a", "status": "missing"}
        ])
    );
}

#[test]
fn latest_returns_newest_leaf_of_a_branch() {
    let (_d, db) = conflicted();
    // 2-d is an inner node; its newest leaf is 3-e.
    let doc = db
        .get(
            "x",
            &GetOptions {
                rev: Some(rev("2-d")),
                latest: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], "3-e");
    // Without latest, 2-d has no body: not_found missing.
    let e = db
        .get(
            "x",
            &GetOptions {
                rev: Some(rev("2-d")),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.reason(), "missing");
}

#[test]
fn open_revs_all_lists_every_leaf_including_deleted() {
    let (_d, db) = conflicted();
    let all = db
        .open_revs("x", OpenRevs::All, &GetOptions::default())
        .unwrap();
    let revs: Vec<String> = all
        .iter()
        .map(|r| match r {
            OpenRevResult::Ok(d) => d["_rev"].as_str().unwrap().to_owned(),
            OpenRevResult::Missing(r) => panic!("missing {r}"),
        })
        .collect();
    assert_eq!(revs, ["2-c", "2-b", "3-e"]);
    let listed = db
        .open_revs(
            "x",
            OpenRevs::Revs(vec![rev("2-b"), rev("9-z")]),
            &GetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    let js = serde_json::to_value(&listed).unwrap();
    assert_eq!(
        js[0]["ok"]["_revisions"],
        json!({"start": 2, "ids": ["b", "a"]})
    );
    assert_eq!(js[1], json!({"missing": "9-z"}));
}

#[test]
fn editing_a_losing_branch_keeps_the_conflict() {
    let (_d, db) = conflicted();
    let r = put_rev(&db, json!({"_id": "x", "_rev": "2-b", "who": "edited"}));
    assert_eq!(r.pos(), 3);
    // The edited branch is now the longest live leaf: it wins.
    let doc = db
        .get(
            "x",
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], r.to_string());
    assert_eq!(doc["_conflicts"], json!(["2-c"]));
    // Deleting the conflict resolves it.
    db.delete("x", &rev("2-c")).unwrap();
    let doc = db
        .get(
            "x",
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(doc.get("_conflicts").is_none());
    assert_eq!(db.info().unwrap().doc_count, 1);
}

#[test]
fn local_seq_is_the_docs_sequence() {
    let (_d, db) = db();
    put_rev(&db, json!({"_id": "a"}));
    put_rev(&db, json!({"_id": "b"}));
    let doc = db
        .get(
            "a",
            &GetOptions {
                local_seq: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_local_seq"], 1);
}

#[test]
fn concurrent_writers_on_one_base_rev_get_exactly_one_success() {
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a"}));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let r1 = r1.to_string();
            std::thread::spawn(move || db.put(json!({"_id": "a", "_rev": r1, "writer": i})))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.name() == "conflict"));
    let doc = db
        .get(
            "a",
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(doc.get("_conflicts").is_none());
}

#[test]
fn revs_limit_stems_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = settee_store::Database::open_with(settee_store::OpenOptions {
        revs_limit: 3,
        ..settee_store::OpenOptions::new(dir.path().join("db"))
    })
    .unwrap();
    let mut r = put_rev(&db, json!({"_id": "a", "n": 0}));
    for n in 1..6 {
        r = put_rev(&db, json!({"_id": "a", "_rev": r.to_string(), "n": n}));
    }
    let doc = db
        .get(
            "a",
            &GetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_revisions"]["start"], 6);
    assert_eq!(doc["_revisions"]["ids"].as_array().unwrap().len(), 3);
}
