//! Mango on the store: creating, listing and deleting indexes, `find` with CouchDB's
//! semantics (sorts that need an index, fallback to a scan with a warning, bookmarks,
//! conflicts, deleted and design documents), indexes kept in step with every kind of write
//! (checked by `verify` after each), replicated index definitions, and an index that never
//! disagrees with a full scan on random data.
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{Database, FindRequest, GetOptions, Rev};

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    (dir, db)
}

fn find(db: &Database, q: Value) -> settee_store::FindResponse {
    db.find(&FindRequest::parse(&q).unwrap()).unwrap()
}

fn ids(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect()
}

fn notes(db: &Database) {
    let docs: Vec<Value> = (0..30)
        .map(|i| {
            let notebook = ["work", "home", "misc"][i % 3];
            json!({
                "_id": format!("n{i:02}"),
                "notebook": notebook,
                "updated_at": (i * 7) % 30,
                "tags": if i % 2 == 0 { json!(["a", "b"]) } else { json!(["c"]) },
            })
        })
        .collect();
    db.bulk_docs(docs, true).unwrap();
}

#[test]
fn index_lifecycle_follows_couchdb() {
    let (_d, db) = open();
    let body =
        json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "nb", "name": "by-nb"});
    let created = db.create_index(&body).unwrap();
    assert_eq!(
        (
            created.result.as_str(),
            created.id.as_str(),
            created.name.as_str()
        ),
        ("created", "_design/nb", "by-nb")
    );
    assert_eq!(db.create_index(&body).unwrap().result, "exists");
    // A second index in the same design document.
    db.create_index(&json!({"index": {"fields": ["tags"]}, "ddoc": "nb", "name": "by-tags"}))
        .unwrap();
    let list = db.get_indexes().unwrap();
    assert_eq!(list.total_rows, 3);
    assert_eq!(list.indexes[0]["name"], "_all_docs");
    assert_eq!(list.indexes[1]["name"], "by-nb");
    assert_eq!(
        list.indexes[1]["def"]["fields"],
        json!([{"notebook": "asc"}, {"updated_at": "asc"}])
    );
    let ddoc = db.get("_design/nb", &GetOptions::default()).unwrap();
    assert_eq!(ddoc["language"], "query");
    assert_eq!(
        ddoc["views"]["by-nb"]["map"]["fields"],
        json!({"notebook": "asc", "updated_at": "asc"})
    );
    db.delete_index("_design/nb", "by-nb").unwrap();
    assert!(db.get("_design/nb", &GetOptions::default()).is_ok());
    db.delete_index("nb", "by-tags").unwrap();
    // Its last view gone, the design document goes too.
    assert_eq!(
        db.get("_design/nb", &GetOptions::default())
            .unwrap_err()
            .name(),
        "not_found"
    );
    let err = db.delete_index("nb", "by-tags").unwrap_err();
    assert_eq!(err.name(), "not_found");
    assert_eq!(db.get_indexes().unwrap().total_rows, 1);
    assert_eq!(db.verify().unwrap().index_entries, 0);
    let err = db
        .create_index(&json!({"index": {"fields": []}}))
        .unwrap_err();
    assert_eq!(err.name(), "invalid_index");
    let err = db
        .create_index(&json!({"index": {"fields": ["a"]}, "bogus": 1}))
        .unwrap_err();
    assert_eq!(err.name(), "invalid_key");
}

#[test]
fn find_uses_the_index_in_its_order_with_limit_skip_and_fields() {
    let (_d, db) = open();
    notes(&db);
    db.create_index(
        &json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "nb", "name": "nb"}),
    )
    .unwrap();
    let r = find(
        &db,
        json!({"selector": {"notebook": "work"}, "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
               "limit": 4, "fields": ["_id", "updated_at"], "execution_stats": true}),
    );
    let mut expected: Vec<(i64, String)> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| (((i * 7) % 30) as i64, format!("n{i:02}")))
        .collect();
    expected.sort();
    expected.reverse();
    assert_eq!(
        r.docs,
        expected[..4]
            .iter()
            .map(|(u, id)| json!({"_id": id, "updated_at": u}))
            .collect::<Vec<_>>()
    );
    assert!(r.warning.is_none(), "{:?}", r.warning);
    let stats = r.execution_stats.unwrap();
    assert_eq!((stats.results_returned, stats.total_docs_examined), (4, 4));
    // Skip, ascending, a range on the second column.
    let r = find(
        &db,
        json!({"selector": {"notebook": "work", "updated_at": {"$gt": 5, "$lte": 24}},
               "sort": ["notebook", "updated_at"], "skip": 1}),
    );
    let mut asc: Vec<_> = expected
        .iter()
        .filter(|(u, _)| *u > 5 && *u <= 24)
        .cloned()
        .collect();
    asc.sort();
    assert_eq!(
        ids(&r.docs),
        asc[1..]
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn bookmarks_page_through_everything_once() {
    let (_d, db) = open();
    notes(&db);
    db.create_index(&json!({"index": {"fields": ["updated_at"]}}))
        .unwrap();
    for (dir, q) in [
        (
            "asc",
            json!({"selector": {"updated_at": {"$gte": 0}}, "sort": ["updated_at"], "limit": 7}),
        ),
        (
            "desc",
            json!({"selector": {"updated_at": {"$gte": 0}}, "sort": [{"updated_at": "desc"}], "limit": 7}),
        ),
        (
            "all_docs",
            json!({"selector": {"notebook": {"$ne": "misc"}}, "limit": 7}),
        ),
    ] {
        let mut seen = Vec::new();
        let mut q = q.clone();
        loop {
            let r = find(&db, q.clone());
            if r.docs.is_empty() {
                break;
            }
            seen.extend(ids(&r.docs));
            q["bookmark"] = json!(r.bookmark.unwrap());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        let expected = if dir == "all_docs" { 20 } else { 30 };
        assert_eq!(sorted.len(), expected, "{dir}: {seen:?}");
        assert_eq!(seen.len(), expected, "{dir}: a document came twice");
    }
    // A bookmark from another index is refused.
    let r = find(
        &db,
        json!({"selector": {"updated_at": {"$gte": 0}}, "limit": 1}),
    );
    let err = db
        .find(
            &FindRequest::parse(&json!({"selector": {"x": 1}, "bookmark": r.bookmark.unwrap()}))
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.name(), "invalid_bookmark");
}

#[test]
fn couchdb_rules_for_sorts_fallback_and_use_index() {
    let (_d, db) = open();
    notes(&db);
    let err = db
        .find(
            &FindRequest::parse(
                &json!({"selector": {"updated_at": {"$gt": 0}}, "sort": ["updated_at"]}),
            )
            .unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.name(), "no_usable_index");
    assert_eq!(err.status(), 400);
    let r = find(&db, json!({"selector": {"notebook": "home"}}));
    assert_eq!(r.docs.len(), 10);
    assert!(r.warning.unwrap().contains("No matching index found"));
    let ex = db
        .explain(&FindRequest::parse(&json!({"selector": {"notebook": "home"}})).unwrap())
        .unwrap();
    assert_eq!(ex["index"]["name"], "_all_docs");
    db.create_index(&json!({"index": {"fields": ["notebook"]}, "ddoc": "nb", "name": "nb"}))
        .unwrap();
    let ex = db
        .explain(&FindRequest::parse(&json!({"selector": {"notebook": "home"}})).unwrap())
        .unwrap();
    assert_eq!(ex["index"]["ddoc"], "_design/nb");
    assert_eq!(ex["mrargs"]["start_key"], json!(["home"]));
    let r = find(
        &db,
        json!({"selector": {"notebook": "home"}, "use_index": "nope"}),
    );
    assert!(r.warning.unwrap().contains("_design/nope was not used"));
    let err = db
        .find(&FindRequest::parse(&json!({"selector": {"notebook": "home"}, "use_index": "nope", "allow_fallback": false})).unwrap())
        .unwrap_err();
    assert_eq!(err.name(), "invalid_index");
}

#[test]
fn deleted_design_and_losing_documents_are_never_returned() {
    let (_d, db) = open();
    db.create_index(&json!({"index": {"fields": ["v"]}}))
        .unwrap();
    let r1 = db.put(json!({"_id": "a", "v": 1})).unwrap().rev.unwrap();
    db.put(json!({"_id": "b", "v": 2})).unwrap();
    db.put(json!({"_id": "_design/x", "v": 3})).unwrap();
    db.delete("a", &r1).unwrap();
    let q = json!({"selector": {"v": {"$gt": 0}}, "sort": ["v"]});
    assert_eq!(ids(&find(&db, q.clone()).docs), ["b"]);
    assert_eq!(ids(&find(&db, json!({"selector": {}})).docs), ["b"]);
    // A replicated branch wins: the index follows the winner, and conflicts show on request.
    db.bulk_docs(vec![json!({"_id": "b", "_rev": "1-zzzz", "v": 9})], false)
        .unwrap();
    let r = find(
        &db,
        json!({"selector": {"v": {"$gt": 0}}, "sort": ["v"], "conflicts": true}),
    );
    assert_eq!(r.docs.len(), 1);
    assert_eq!(r.docs[0]["v"], 9);
    assert_eq!(r.docs[0]["_conflicts"].as_array().unwrap().len(), 1);
    assert!(find(&db, json!({"selector": {"v": 2}, "sort": ["v"]}))
        .docs
        .is_empty());
    db.verify().unwrap();
    // Purging the winning branch brings the other back.
    let purge: BTreeMap<String, Vec<Rev>> =
        [("b".to_owned(), vec!["1-zzzz".parse().unwrap()])].into();
    db.purge(purge).unwrap();
    assert_eq!(find(&db, q).docs[0]["v"], 2);
    assert_eq!(db.verify().unwrap().index_entries, 1);
}

#[test]
fn a_replicated_index_definition_is_registered_and_built_locally() {
    let (_d, db) = open();
    notes(&db);
    // The design document CouchDB 3.5 writes for {"index": {"fields": ["updated_at"]}, "ddoc": "u", "name": "u"}.
    let ddoc = json!({"_id": "_design/u", "_rev": "1-abc", "language": "query", "views": {"u": {
        "map": {"fields": {"updated_at": "asc"}, "partial_filter_selector": {}},
        "reduce": "_count", "options": {"def": {"fields": ["updated_at"]}}}}});
    db.bulk_docs(vec![ddoc], false).unwrap();
    assert_eq!(db.get_indexes().unwrap().total_rows, 2);
    // Registered, not built yet: verify agrees (an unbuilt index has no entries).
    assert_eq!(db.verify().unwrap().index_entries, 0);
    let r = find(
        &db,
        json!({"selector": {"updated_at": {"$lt": 3}}, "sort": [{"updated_at": "desc"}]}),
    );
    assert_eq!(
        r.docs
            .iter()
            .map(|d| d["updated_at"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1, 0]
    );
    assert_eq!(db.verify().unwrap().index_entries, 30);
    // A new revision of the design document with another definition replaces the index.
    let ddoc2 = json!({"_id": "_design/u", "_rev": "2-abd", "_revisions": {"start": 2, "ids": ["abd", "abc"]},
        "language": "query", "views": {"u": {"map": {"fields": {"notebook": "asc"}, "partial_filter_selector": {}},
        "reduce": "_count", "options": {"def": {"fields": ["notebook"]}}}}});
    db.bulk_docs(vec![ddoc2], false).unwrap();
    assert_eq!(db.verify().unwrap().index_entries, 0);
    assert_eq!(
        db.get_indexes().unwrap().indexes[1]["def"]["fields"],
        json!([{"notebook": "asc"}])
    );
    db.build_indexes(&mut |_| {}).unwrap();
    assert_eq!(db.verify().unwrap().index_entries, 30);
}

#[test]
fn partial_indexes_hold_only_matching_documents() {
    let (_d, db) = open();
    notes(&db);
    db.create_index(&json!({"index": {"fields": ["updated_at"], "partial_filter_selector": {"notebook": "work"}},
        "ddoc": "p", "name": "p"}))
        .unwrap();
    assert_eq!(db.verify().unwrap().index_entries, 10);
    // Only used when named.
    let q = json!({"selector": {"updated_at": {"$gte": 0}}, "use_index": "p", "limit": 100});
    let r = find(&db, q);
    assert_eq!(r.docs.len(), 10);
    assert!(r.docs.iter().all(|d| d["notebook"] == "work"));
}

#[test]
fn building_over_existing_documents_reports_progress_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let n = 12_345;
    {
        let db = Database::open(&path).unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
            let docs = chunk
                .iter()
                .map(|i| json!({"_id": format!("d{i:05}"), "k": i % 100}))
                .collect();
            db.bulk_docs(docs, true).unwrap();
        }
        let mut reports = Vec::new();
        db.create_index_with_progress(&json!({"index": {"fields": ["k"]}}), &mut |p| {
            reports.push((p.done, p.total))
        })
        .unwrap();
        assert!(reports.len() >= 2, "{reports:?}");
        // The design document counts as a document read.
        assert_eq!(*reports.last().unwrap(), (n as u64 + 1, n as u64 + 1));
        assert!(reports.windows(2).all(|w| w[0].0 < w[1].0));
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.verify().unwrap().index_entries, n as u64);
    let r = find(&db, json!({"selector": {"k": 42}, "limit": 1000}));
    assert_eq!(r.docs.len(), n / 100 + usize::from(n % 100 > 42));
    assert!(r.warning.is_none());
}

/// A model of `find` that reads every document: the matching ones, sorted by the index's
/// key (CouchDB's collation) then id, as an index scan would give them.
fn scan_model(
    docs: &BTreeMap<String, Value>,
    selector: &Value,
    sort_field: &str,
    desc: bool,
) -> Vec<String> {
    let sel = settee_store::Selector::parse(selector).unwrap();
    let mut rows: Vec<(&Value, &String)> = docs
        .iter()
        .filter(|(_, d)| sel.matches(d))
        .filter_map(|(id, d)| d.get(sort_field).map(|v| (v, id)))
        .collect();
    rows.sort_by(|a, b| settee_query_collate(a.0, b.0).then_with(|| a.1.cmp(b.1)));
    if desc {
        rows.reverse();
    }
    rows.into_iter().map(|(_, id)| id.clone()).collect()
}

fn settee_query_collate(a: &Value, b: &Value) -> Ordering {
    // The store re-exports the selector; the collation is the query crate's.
    settee_query::collate(a, b)
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..8) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 | 3 => json!(rng.gen_range(-5..15)),
        4 => json!(rng.gen_range(-5.0..15.0)),
        5 => {
            let s = ["a", "B", "b", "ab", "é", "z"][rng.gen_range(0..6)];
            json!(s)
        }
        6 => json!([rng.gen_range(0..3), "x"]),
        _ => json!({"k": rng.gen_range(0..3)}),
    }
}

#[test]
fn an_index_never_disagrees_with_a_full_scan() {
    let seed: u64 = std::env::var("SETTEE_FIND_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (rerun with SETTEE_FIND_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let (_d, db) = open();
    db.create_index(&json!({"index": {"fields": ["v"]}, "ddoc": "v", "name": "v"}))
        .unwrap();
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    for step in 0..400 {
        let id = format!("d{}", rng.gen_range(0..40));
        let current = db.get(&id, &GetOptions::default()).ok();
        match rng.gen_range(0..10) {
            0 | 1 if current.is_some() => {
                let rev: Rev = current.unwrap()["_rev"].as_str().unwrap().parse().unwrap();
                db.delete(&id, &rev).unwrap();
            }
            2 => {
                // A replicated branch: it wins if it sorts higher.
                let hash: String = (0..8)
                    .map(|_| format!("{:x}", rng.gen_range(0..16)))
                    .collect();
                let v = random_value(&mut rng);
                db.bulk_docs(
                    vec![json!({"_id": id, "_rev": format!("1-{hash}"), "v": v})],
                    false,
                )
                .unwrap();
            }
            _ => {
                let mut doc = json!({"_id": id});
                if rng.gen_bool(0.85) {
                    doc["v"] = random_value(&mut rng);
                }
                if let Some(c) = &current {
                    doc["_rev"] = c["_rev"].clone();
                }
                db.put(doc).unwrap();
            }
        }
        // The model is what a plain read says the winner is now.
        match db.get(&id, &GetOptions::default()) {
            Ok(mut w) => {
                w.as_object_mut().unwrap().remove("_rev");
                model.insert(id, w);
            }
            Err(_) => {
                model.remove(&id);
            }
        }
        if step % 20 == 0 {
            db.verify().unwrap();
        }
        let bound = random_value(&mut rng);
        let op = ["$gt", "$gte", "$lt", "$lte", "$eq"][rng.gen_range(0..5)];
        let selector = json!({"v": {op: bound}});
        let desc = rng.gen_bool(0.5);
        let dir = if desc { "desc" } else { "asc" };
        let got = find(
            &db,
            json!({"selector": selector, "sort": [{"v": dir}], "limit": 1000}),
        );
        let expected = scan_model(&model, &selector, "v", desc);
        if ids(&got.docs) != expected {
            for id in ids(&got.docs).iter().chain(expected.iter()) {
                eprintln!(
                    "{id}: store {:?} model {:?}",
                    db.get(
                        id,
                        &GetOptions {
                            conflicts: true,
                            ..Default::default()
                        }
                    )
                    .ok(),
                    model.get(id)
                );
            }
        }
        assert_eq!(
            ids(&got.docs),
            expected,
            "seed {seed} step {step}: {selector} {dir}"
        );
    }
    db.verify().unwrap();
}
