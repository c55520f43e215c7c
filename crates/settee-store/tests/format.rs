//! The storage format: the by-seq chunks with their stale entries, and a randomized run of
//! every kind of write with `verify` and the feed's invariants checked after each step. The
//! upgrades from older formats are in `upgrade.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{ChangesOptions, Database, GetOptions, Rev};

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
