//! The storage format: the upgrade from format 1 (a store written by the previous release,
//! checked in as a fixture, must answer exactly as it did), the by-seq chunks with their
//! stale entries, and a randomized run of every kind of write with `verify` and the feed's
//! invariants checked after each step.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{
    AllDocsOptions, ChangesOptions, ChangesStyle, Database, GetOptions, OpenRevResult, OpenRevs,
    Rev, FORMAT_VERSION,
};

/// The same answers `tests/fixtures/format1-generator.rs.txt` recorded from the format-1
/// build (the fixture's `format1-expected.json`).
fn dump(db: &Database) -> Value {
    let mut docs = serde_json::Map::new();
    let all = db.all_docs(&AllDocsOptions::default()).unwrap();
    let ch = db
        .changes(&ChangesOptions {
            style: ChangesStyle::AllDocs,
            include_docs: true,
            conflicts: true,
            ..Default::default()
        })
        .unwrap();
    for c in &ch.results {
        let open = db
            .open_revs(
                &c.id,
                OpenRevs::All,
                &GetOptions {
                    revs: true,
                    attachments: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let open: Vec<Value> = open
            .into_iter()
            .map(|r| match r {
                OpenRevResult::Ok(d) => json!({ "ok": d }),
                OpenRevResult::Missing(r) => json!({"missing": r.to_string()}),
            })
            .collect();
        let meta = db
            .get(
                &c.id,
                &GetOptions {
                    meta: true,
                    local_seq: true,
                    revs: true,
                    ..Default::default()
                },
            )
            .ok();
        let mut bodies = serde_json::Map::new();
        if let Some(m) = &meta {
            for ri in m["_revs_info"].as_array().unwrap() {
                let rev: Rev = ri["rev"].as_str().unwrap().parse().unwrap();
                let opts = GetOptions {
                    rev: Some(rev.clone()),
                    ..Default::default()
                };
                if let Ok(d) = db.get(&c.id, &opts) {
                    bodies.insert(rev.to_string(), d);
                }
            }
        }
        docs.insert(
            c.id.clone(),
            json!({"open_revs": open, "meta": meta, "bodies": bodies}),
        );
    }
    let info = db.info().unwrap();
    json!({
        "info": {"doc_count": info.doc_count, "doc_del_count": info.doc_del_count,
                 "update_seq": info.update_seq, "purge_seq": info.purge_seq},
        "all_docs": serde_json::to_value(&all).unwrap(),
        "changes": serde_json::to_value(&ch).unwrap(),
        "local": db.get_local("_local/checkpoint").unwrap(),
        "docs": docs,
    })
}

fn unpack_fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format1.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["xzf", fixture, "-C"])
        .arg(dir)
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {fixture}");
    dir.join("format1")
}

#[test]
fn a_format_1_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    let expected: Value = serde_json::from_str(include_str!("fixtures/format1-expected.json"))
        .expect("fixture parses");
    let db = Database::open(&path).unwrap();
    // Straight to the current format (a format-1 store has no sync state and no index).
    assert_eq!(db.info().unwrap().disk_format_version, FORMAT_VERSION);
    let report = db.verify().unwrap();
    assert_eq!(report.unsynced_entries, 0);
    assert_eq!(
        db.sync_counts("http://any/db").unwrap().unsynced,
        report.doc_count + report.doc_del_count
    );
    // Each format-1 by-seq entry became a chunk of its own; none is stale.
    assert_eq!(report.stale_seq_entries, 0);
    assert_eq!(dump(&db), expected);
    // It takes new writes, and a reopened store is format 3 with the same answers.
    let r = db.put(
        json!({"_id": "doc-02", "_rev": expected["docs"]["doc-02"]["meta"]["_rev"], "new": true}),
    );
    let new_rev = r.unwrap().rev.unwrap();
    db.verify().unwrap();
    drop(db);
    let db = Database::open(&path).unwrap();
    let doc = db.get("doc-02", &GetOptions::default()).unwrap();
    assert_eq!(doc["_rev"], new_rev.to_string());
    assert_eq!(doc["new"], true);
    db.verify().unwrap();
}

#[test]
fn an_upgrade_cut_short_finishes_on_the_next_open() {
    // The crash window between the upgrade's last data batch and its format key: the
    // records and chunks are format 2 but the key still says 1. The next open must run the
    // upgrade again over converted data (skipping it) and answer as before.
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    let expected: Value =
        serde_json::from_str(include_str!("fixtures/format1-expected.json")).unwrap();
    drop(Database::open(&path).unwrap());
    {
        let raw = common::raw_sled(&path);
        raw.open_tree("settee")
            .unwrap()
            .insert("Mformat", "1")
            .unwrap();
        raw.flush().unwrap();
    }
    let db = Database::open(&path).unwrap();
    db.verify().unwrap();
    assert_eq!(dump(&db), expected);
}

/// Issue 10: format 3 only adds long forms to format 2, and format 4 (issue 11) only the sync
/// state, so a format-2 or -3 store is upgraded by recording the new version, and answers as
/// before.
#[test]
fn a_format_2_store_is_upgraded_and_answers_as_before() {
    upgrade_from("2");
}

#[test]
fn a_format_3_store_is_upgraded_and_answers_as_before() {
    upgrade_from("3");
}

#[test]
fn a_format_4_store_is_upgraded_and_answers_as_before() {
    upgrade_from("4");
}

fn upgrade_from(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path).unwrap();
    let res = db.put(json!({"_id": "a", "v": 1})).unwrap();
    db.bulk_docs(
        vec![json!({"_id": "b", "_rev": "2-y", "_revisions": {"start": 2, "ids": ["y", "x"]}})],
        false,
    )
    .unwrap();
    let before = (
        db.get("a", &GetOptions::default()).unwrap(),
        ids(&db, &ChangesOptions::default()),
    );
    drop(db);
    {
        let raw = common::raw_sled(&path);
        raw.open_tree("settee")
            .unwrap()
            .insert("Mformat", format)
            .unwrap();
        raw.flush().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.info().unwrap().disk_format_version, FORMAT_VERSION);
    db.verify().unwrap();
    let after = (
        db.get("a", &GetOptions::default()).unwrap(),
        ids(&db, &ChangesOptions::default()),
    );
    assert_eq!(after, before);
    assert_eq!(after.0["_rev"], res.rev.unwrap().to_string());
    drop(db);
    let raw = common::raw_sled(&path);
    let format = raw.open_tree("settee").unwrap().get("Mformat").unwrap();
    assert_eq!(
        format.as_deref(),
        Some(FORMAT_VERSION.to_string().as_bytes())
    );
}

/// Format 6 (issue 11) only added pending intervals: a format-5 store, whose unsynced
/// documents all have their entries, upgrades by its format key and reads the same.
#[test]
fn a_format_5_store_with_sync_state_is_upgraded_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let remote = "http://couch.example/db";
    let db = Database::open(&path).unwrap();
    let mut revs = BTreeMap::new();
    for id in ["a", "b", "c"] {
        let rev = db.put(json!({"_id": id})).unwrap().rev.unwrap();
        revs.insert(id.to_string(), vec![rev]);
    }
    db.register_remote(remote, Default::default()).unwrap();
    // Everything confirmed, then one edit.
    db.record_remote_revs(remote, &revs, &[]).unwrap();
    let a2 = db
        .put(json!({"_id": "a", "_rev": revs["a"][0].to_string(), "v": 2}))
        .unwrap()
        .rev
        .unwrap();
    let before = db.unsynced(remote, None, 10).unwrap();
    assert_eq!(before.len(), 1);
    drop(db);
    // As format 5 kept it: no pending interval, and the edited document's `U` entry
    // (version 1, one leaf as a u32 length and its text, no rejection).
    {
        let raw = common::raw_sled(&path);
        let tree = raw.open_tree("settee").unwrap();
        let mut remotes: Value =
            serde_json::from_slice(&tree.get("Mremotes").unwrap().unwrap()).unwrap();
        remotes[0].as_object_mut().unwrap().remove("pending");
        tree.insert("Mremotes", serde_json::to_vec(&remotes).unwrap())
            .unwrap();
        let rev = a2.to_string();
        let mut entry = vec![1, 0, 0, 0, 1];
        entry.extend_from_slice(&u32::try_from(rev.len()).unwrap().to_be_bytes());
        entry.extend_from_slice(rev.as_bytes());
        entry.push(0);
        tree.insert([&[b'U', 0, 0, 0, 1][..], b"a"].concat(), entry)
            .unwrap();
        tree.insert("Mformat", &b"5"[..]).unwrap();
        raw.flush().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.info().unwrap().disk_format_version, FORMAT_VERSION);
    assert_eq!(db.unsynced(remote, None, 10).unwrap(), before);
    assert_eq!(
        db.sync_state(remote, "a").unwrap(),
        Some(settee_store::SyncState::Unpushed { revs: vec![a2] })
    );
    assert_eq!(
        db.sync_state(remote, "b").unwrap(),
        Some(settee_store::SyncState::Synced)
    );
    assert_eq!(db.verify().unwrap().unsynced_entries, 1);
}

fn ids(db: &Database, opts: &ChangesOptions) -> Vec<(u64, String)> {
    db.changes(opts)
        .unwrap()
        .results
        .into_iter()
        .map(|c| (c.seq, c.id))
        .collect()
}

fn assert_descending_is_reversed(db: &Database, rows: &[(u64, String)]) {
    let desc = ids(
        db,
        &ChangesOptions {
            descending: true,
            ..Default::default()
        },
    );
    assert_eq!(desc, rows.iter().rev().cloned().collect::<Vec<_>>());
}

#[test]
fn stale_entries_are_skipped_counted_once_and_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let docs: Vec<Value> = (0..10).map(|i| json!({"_id": format!("d{i}")})).collect();
    let revs: Vec<Rev> = db
        .bulk_docs(docs, true)
        .unwrap()
        .into_iter()
        .map(|r| r.rev.unwrap())
        .collect();
    // Three documents of the bulk chunk are written again: their entries go stale.
    let mut latest = revs.clone();
    for i in [2usize, 5, 7] {
        latest[i] = db
            .put(json!({"_id": format!("d{i}"), "_rev": revs[i].to_string(), "v": 2}))
            .unwrap()
            .rev
            .unwrap();
    }
    let report = db.verify().unwrap();
    assert_eq!((report.seq_entries, report.stale_seq_entries), (13, 3));
    let rows = ids(&db, &ChangesOptions::default());
    let expect: Vec<(u64, String)> = [0u64, 1, 3, 4, 6, 8, 9]
        .iter()
        .map(|i| (i + 1, format!("d{i}")))
        .chain([(11, "d2".into()), (12, "d5".into()), (13, "d7".into())])
        .collect();
    assert_eq!(rows, expect);
    assert_eq!(db.pending_since(0).unwrap(), 10);
    // d3..d9 (d5 and d7 once each, stale entries included) and d2.
    assert_eq!(db.pending_since(3).unwrap(), 8);
    let limited = db
        .changes(&ChangesOptions {
            limit: Some(4),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.results.len(), 4);
    assert_eq!(limited.pending, Some(6));
    assert_descending_is_reversed(&db, &rows);
    // Since inside the bulk chunk.
    let since5 = ids(
        &db,
        &ChangesOptions {
            since: 5,
            ..Default::default()
        },
    );
    assert_eq!(
        since5,
        rows.iter()
            .filter(|(s, _)| *s > 5)
            .cloned()
            .collect::<Vec<_>>()
    );
    // A document written alone is written again: its old chunk is deleted, not left stale.
    let again = db
        .put(json!({"_id": "d2", "_rev": latest[2].to_string(), "v": 3}))
        .unwrap();
    assert!(again.is_ok());
    let report = db.verify().unwrap();
    assert_eq!((report.seq_entries, report.stale_seq_entries), (13, 3));
    db.compact().unwrap();
    let report = db.verify().unwrap();
    assert_eq!((report.seq_entries, report.stale_seq_entries), (10, 0));
    let after: Vec<String> = ids(&db, &ChangesOptions::default())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        after,
        ["d0", "d1", "d3", "d4", "d6", "d8", "d9", "d5", "d7", "d2"]
    );
}

#[test]
fn purging_a_document_removes_its_entry_from_a_shared_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let docs: Vec<Value> = (0..5).map(|i| json!({"_id": format!("d{i}")})).collect();
    let res = db.bulk_docs(docs, true).unwrap();
    let purge = BTreeMap::from([
        ("d0".to_string(), vec![res[0].rev.clone().unwrap()]),
        ("d3".to_string(), vec![res[3].rev.clone().unwrap()]),
    ]);
    db.purge(purge).unwrap();
    let report = db.verify().unwrap();
    assert_eq!((report.seq_entries, report.stale_seq_entries), (3, 0));
    assert_eq!(db.pending_since(0).unwrap(), 3);
    let rows = ids(&db, &ChangesOptions::default());
    assert_eq!(
        rows,
        vec![(2, "d1".to_string()), (3, "d2".into()), (5, "d4".into())]
    );
}

/// One random write of the randomized run.
fn random_step(db: &Database, rng: &mut StdRng, step: usize) {
    let id = format!("doc{}", rng.gen_range(0..8));
    let current = db.get(&id, &GetOptions::default()).ok();
    let any = db
        .get(
            &id,
            &GetOptions {
                meta: true,
                ..Default::default()
            },
        )
        .ok();
    match rng.gen_range(0..7) {
        // An edit (or a create), sometimes with attachments or a stub.
        0 | 1 => {
            let mut doc = json!({"_id": id, "step": step});
            if let Some(c) = &current {
                doc["_rev"] = c["_rev"].clone();
                if c.get("_attachments").is_some() && rng.gen_bool(0.5) {
                    doc["_attachments"] = json!({"a": {"stub": true}});
                }
            }
            if rng.gen_bool(0.2) {
                doc["_attachments"] = json!({"b": {"content_type": "text/plain", "data": "aGk="}});
            }
            let _ = db.put(doc);
        }
        // A bulk write of several documents, ids repeated within the call.
        2 => {
            let n = rng.gen_range(1..6);
            let docs: Vec<Value> = (0..n)
                .map(|k| {
                    let id = format!("doc{}", rng.gen_range(0..8));
                    let mut d = json!({"_id": id, "k": k});
                    if let Ok(c) = db.get(&id, &GetOptions::default()) {
                        d["_rev"] = c["_rev"].clone();
                    }
                    d
                })
                .collect();
            db.bulk_docs(docs, true).unwrap();
        }
        // Delete the winner.
        3 => {
            if let Some(c) = &current {
                let rev: Rev = c["_rev"].as_str().unwrap().parse().unwrap();
                let _ = db.delete(&id, &rev);
            }
        }
        // A replicated branch on top of some revision (or a new root): conflicts.
        4 => {
            let (start, mut hashes) = match &any {
                Some(m) if rng.gen_bool(0.8) => {
                    let info = m["_revs_info"].as_array().unwrap();
                    let pick = &info[rng.gen_range(0..info.len())]["rev"];
                    let rev: Rev = pick.as_str().unwrap().parse().unwrap();
                    (rev.pos() + 1, vec![rev.hash().to_string()])
                }
                // A new root, sometimes at position 0 (CouchDB stores those).
                _ => (rng.gen_range(0..2), vec![]),
            };
            // Mostly CouchDB's own form; sometimes a form other replicas write (issue 10):
            // any string, of any length, with 0x00, in the key and the long encodings.
            let tag = rng.gen::<u32>();
            let new_hash = match rng.gen_range(0..10) {
                0 => String::new(),
                1 => format!("{}{tag:x}", "l".repeat(300)),
                // Past the record's short winner length (rarely: each step reads it all).
                2 if tag % 8 == 0 => format!("{}{tag:x}", "h".repeat(66_000)),
                3 => format!("nul\u{0}{tag:x}"),
                4 => format!("a b\n\u{e9}!-{tag:x}"),
                _ => format!("{:032x}", rng.gen::<u128>()),
            };
            hashes.insert(0, new_hash.clone());
            let deleted = rng.gen_bool(0.2);
            let doc = json!({
                "_id": id, "_rev": format!("{start}-{new_hash}"), "_deleted": deleted,
                "_revisions": {"start": start, "ids": hashes}, "side": step,
            });
            let res = db.bulk_docs(vec![doc], false).unwrap();
            assert_eq!(res[0].error, None, "{:?}", res[0].reason);
        }
        // Purge one leaf.
        5 => {
            if let Some(m) = &any {
                let mut leaves = vec![m["_rev"].as_str().unwrap().to_string()];
                if let Some(c) = m["_conflicts"].as_array() {
                    leaves.extend(c.iter().map(|v| v.as_str().unwrap().to_string()));
                }
                let pick: Rev = leaves[rng.gen_range(0..leaves.len())].parse().unwrap();
                db.purge(BTreeMap::from([(id, vec![pick])])).unwrap();
            }
        }
        _ => db.compact().unwrap(),
    }
}

#[test]
fn random_writes_keep_every_invariant_of_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    for seed in 0..10u64 {
        let _ = Database::destroy(&path);
        let mut db = Database::open(&path).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        for step in 0..150 {
            random_step(&db, &mut rng, step);
            if step % 40 == 39 {
                drop(db);
                db = Database::open(&path).unwrap();
            }
            let report = db
                .verify()
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            let info = db.info().unwrap();
            let rows = ids(&db, &ChangesOptions::default());
            let row_ids: BTreeSet<&String> = rows.iter().map(|(_, id)| id).collect();
            assert_eq!(
                row_ids.len(),
                rows.len(),
                "seed {seed} step {step}: a doc twice"
            );
            let total = info.doc_count + info.doc_del_count;
            assert_eq!(rows.len() as u64, total, "seed {seed} step {step}");
            assert_eq!(report.seq_entries - report.stale_seq_entries, total);
            assert_eq!(db.pending_since(0).unwrap(), total);
            // Each row is at its document's current seq.
            for (seq, id) in &rows {
                let doc = db
                    .get(
                        id,
                        &GetOptions {
                            local_seq: true,
                            rev: None,
                            ..Default::default()
                        },
                    )
                    .ok();
                if let Some(d) = doc {
                    assert_eq!(d["_local_seq"], *seq, "seed {seed} step {step}: {id}");
                }
            }
            assert_descending_is_reversed(&db, &rows);
            let since = rng.gen_range(0..=info.update_seq);
            let tail = ids(
                &db,
                &ChangesOptions {
                    since,
                    ..Default::default()
                },
            );
            let want: Vec<_> = rows.iter().filter(|(s, _)| *s > since).cloned().collect();
            assert_eq!(tail, want, "seed {seed} step {step} since {since}");
            let limited = db
                .changes(&ChangesOptions {
                    limit: Some(3),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(
                limited.pending,
                Some(total.saturating_sub(3)),
                "seed {seed} step {step}"
            );
        }
    }
}

/// A format-2 store (this layout without the `N`/`I` keys of Mango indexes) that holds a
/// query design document, e.g. replicated from CouchDB: opening it upgrades it to format 5
/// and registers the index, which the first `find` builds.
#[test]
fn format_2_to_4_stores_register_their_query_design_docs_on_upgrade() {
    for format in ["2", "3", "4"] {
        registers_query_design_docs_on_upgrade_from(format);
    }
}

fn registers_query_design_docs_on_upgrade_from(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path).unwrap();
        db.bulk_docs(
            (0..50)
                .map(|i| json!({"_id": format!("d{i:02}"), "n": i}))
                .collect(),
            true,
        )
        .unwrap();
        db.create_index(&json!({"index": {"fields": ["n"]}, "ddoc": "n", "name": "n"}))
            .unwrap();
    }
    {
        // Make it the older store it would have been: no catalog, no entries.
        let sled_db = common::raw_sled(&path);
        let tree = sled_db.open_tree("settee").unwrap();
        for prefix in [&b"N"[..], &b"I"[..]] {
            for k in tree.scan_prefix(prefix).keys() {
                tree.remove(k.unwrap()).unwrap();
            }
        }
        tree.remove(b"Mnext_index").unwrap();
        tree.insert(b"Mformat", format.as_bytes()).unwrap();
        tree.flush().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.info().unwrap().disk_format_version, FORMAT_VERSION);
    assert_eq!(db.get_indexes().unwrap().total_rows, 2);
    assert_eq!(db.verify().unwrap().index_entries, 0);
    let found = db
        .find(
            &settee_store::FindRequest::parse(
                &json!({"selector": {"n": {"$gte": 45}}, "sort": [{"n": "desc"}], "fields": ["_id"]}),
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(found.docs.len(), 5);
    assert_eq!(found.docs[0]["_id"], "d49");
    assert_eq!(db.verify().unwrap().index_entries, 50);
}
