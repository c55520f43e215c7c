//! Per-document sync state kept by the store (issue 11): what each write, confirmation,
//! rejection and purge does to a document's state with each registered remote, that it
//! survives a reopen, and a randomized model test that checks it against a plain model of
//! "which leaves each remote is known to hold" (and `verify`) after every step.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{json, Value};
use settee_store::{Database, GetOptions, Rejection, Rev, SyncCounts, SyncState};

const R1: &str = "http://couch.example/db";
const R2: &str = "http://other.example/db";

fn open(dir: &tempfile::TempDir) -> Database {
    Database::open(dir.path().join("db")).unwrap()
}

fn rev(s: &str) -> Rev {
    s.parse().unwrap()
}

fn put(db: &Database, doc: Value) -> Rev {
    db.put(doc).unwrap().rev.unwrap()
}

fn raw(doc: Value) -> Box<RawValue> {
    to_raw_value(&doc).unwrap()
}

fn held(id: &str, revs: &[&Rev]) -> BTreeMap<String, Vec<Rev>> {
    [(id.to_owned(), revs.iter().map(|r| (*r).clone()).collect())].into()
}

fn unpushed(revs: &[&Rev]) -> Option<SyncState> {
    let mut revs: Vec<Rev> = revs.iter().map(|r| (*r).clone()).collect();
    revs.sort();
    Some(SyncState::Unpushed { revs })
}

fn counts(db: &Database, remote: &str) -> (u64, u64) {
    let SyncCounts { unsynced, rejected } = db.sync_counts(remote).unwrap();
    (unsynced, rejected)
}

#[test]
fn a_remote_that_is_not_registered_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let a = put(&db, json!({"_id": "a"}));
    put(&db, json!({"_id": "b"}));
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&a]));
    assert_eq!(db.sync_state(R1, "nope").unwrap(), None);
    assert_eq!(counts(&db, R1), (2, 0));
    let ids: Vec<String> = db
        .unsynced(R1, None, 10)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    // Registering changes nothing of what is known: all still unpushed.
    assert!(db.register_remote(R1, Default::default()).unwrap());
    assert!(!db.register_remote(R1, Default::default()).unwrap());
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&a]));
    assert_eq!(counts(&db, R1), (2, 0));
    db.verify().unwrap();
}

#[test]
fn an_edit_is_unpushed_until_the_remote_confirms_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    let r1 = put(&db, json!({"_id": "a", "v": 1}));
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&r1]));
    db.record_remote_revs(R1, &held("a", &[&r1]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "a").unwrap(), Some(SyncState::Synced));
    assert_eq!(counts(&db, R1), (0, 0));
    let r2 = put(&db, json!({"_id": "a", "_rev": r1.to_string(), "v": 2}));
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&r2]));
    assert_eq!(counts(&db, R1), (1, 0));
    // Confirming an older revision does not confirm the newer leaf.
    db.record_remote_revs(R1, &held("a", &[&r1]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&r2]));
    db.record_remote_revs(R1, &held("a", &[&r2]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "a").unwrap(), Some(SyncState::Synced));
    // A deletion is an edit too.
    let r3 = db.delete("a", &r2).unwrap().rev.unwrap();
    assert_eq!(db.sync_state(R1, "a").unwrap(), unpushed(&[&r3]));
    db.verify().unwrap();
}

#[test]
fn revisions_pulled_from_a_remote_are_held_by_it_and_unsynced_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    db.register_remote(R2, Default::default()).unwrap();
    db.bulk_docs_json_from(&[raw(json!({"_id": "p", "_rev": "1-a"}))], R1)
        .unwrap();
    assert_eq!(db.sync_state(R1, "p").unwrap(), Some(SyncState::Synced));
    assert_eq!(db.sync_state(R2, "p").unwrap(), unpushed(&[&rev("1-a")]));
    // A conflicting branch from R1: held by R1, a conflict there; unsynced for R2.
    db.bulk_docs_json_from(&[raw(json!({"_id": "p", "_rev": "1-b"}))], R1)
        .unwrap();
    assert_eq!(
        db.sync_state(R1, "p").unwrap(),
        Some(SyncState::Conflicted {
            winner: rev("1-b"),
            losers: vec![rev("1-a")]
        })
    );
    assert_eq!(
        db.sync_state(R2, "p").unwrap(),
        unpushed(&[&rev("1-a"), &rev("1-b")])
    );
    // A local branch R1 lacks: unpushed there although R1 has the others.
    let mine = db
        .put(json!({"_id": "p", "_rev": "1-a", "mine": true}))
        .unwrap()
        .rev
        .unwrap();
    assert_eq!(db.sync_state(R1, "p").unwrap(), unpushed(&[&mine]));
    // R1 sends a revision on top of the local one: R1 has the local branch now.
    let on_top = format!("3-{}", "c".repeat(32));
    db.bulk_docs_json_from(
        &[raw(json!({"_id": "p", "_rev": on_top,
            "_revisions": {"start": 3, "ids": ["c".repeat(32), mine.hash(), "a"]}}))],
        R1,
    )
    .unwrap();
    assert_eq!(
        db.sync_state(R1, "p").unwrap(),
        Some(SyncState::Conflicted {
            winner: rev(&on_top),
            losers: vec![rev("1-b")]
        })
    );
    // A revision the store already has, sent again by R2: R2 holds it.
    db.bulk_docs_json_from(&[raw(json!({"_id": "p", "_rev": "1-b"}))], R2)
        .unwrap();
    assert_eq!(db.sync_state(R2, "p").unwrap(), unpushed(&[&rev(&on_top)]));
    // Replicated without an origin (another store, a hand-made write): unsynced for both.
    db.bulk_docs(vec![json!({"_id": "q", "_rev": "1-q"})], false)
        .unwrap();
    assert_eq!(db.sync_state(R1, "q").unwrap(), unpushed(&[&rev("1-q")]));
    assert_eq!(counts(&db, R1), (1, 0));
    assert_eq!(counts(&db, R2), (2, 0));
    db.verify().unwrap();
}

#[test]
fn a_rejection_stands_until_a_later_revision_is_accepted_or_the_doc_is_deleted_or_purged() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    let reject = |db: &Database, id: &str, r: &Rev| {
        db.record_remote_revs(
            R1,
            &BTreeMap::new(),
            &[Rejection {
                id: id.into(),
                rev: r.clone(),
                error: "forbidden".into(),
                reason: "no secrets here".into(),
            }],
        )
        .unwrap()
    };
    let rejected = |r: &Rev| {
        Some(SyncState::Rejected {
            rev: r.clone(),
            error: "forbidden".into(),
            reason: "no secrets here".into(),
        })
    };
    let r1 = put(&db, json!({"_id": "s", "secret": true}));
    reject(&db, "s", &r1);
    assert_eq!(db.sync_state(R1, "s").unwrap(), rejected(&r1));
    assert_eq!(counts(&db, R1), (1, 1));
    // Survives a reopen.
    drop(db);
    let db = open(&dir);
    assert_eq!(db.sync_state(R1, "s").unwrap(), rejected(&r1));
    let list = db.unsynced(R1, None, 10).unwrap();
    assert_eq!(list, vec![("s".to_owned(), rejected(&r1).unwrap())]);
    // Another local edit does not end it: it is not accepted yet.
    let r2 = put(
        &db,
        json!({"_id": "s", "_rev": r1.to_string(), "secret": false}),
    );
    assert_eq!(db.sync_state(R1, "s").unwrap(), rejected(&r1));
    // The remote accepts the fix.
    db.record_remote_revs(R1, &held("s", &[&r2]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "s").unwrap(), Some(SyncState::Synced));
    assert_eq!(counts(&db, R1), (0, 0));

    // Deleting the document locally ends a rejection.
    let t1 = put(&db, json!({"_id": "t", "secret": true}));
    db.record_remote_revs(
        R1,
        &BTreeMap::new(),
        &[Rejection {
            id: "t".into(),
            rev: t1.clone(),
            error: "forbidden".into(),
            reason: "no secrets here".into(),
        }],
    )
    .unwrap();
    assert_eq!(counts(&db, R1), (1, 1));
    let t2 = db.delete("t", &t1).unwrap().rev.unwrap();
    assert_eq!(db.sync_state(R1, "t").unwrap(), unpushed(&[&t2]));
    assert_eq!(counts(&db, R1), (1, 0));

    // Purging ends it too (and purging every leaf ends the entry).
    let u1 = put(&db, json!({"_id": "u", "secret": true}));
    reject(&db, "u", &u1);
    let purged = db
        .purge([("u".to_owned(), vec![u1.clone()])].into())
        .unwrap();
    assert_eq!(purged.purged["u"], vec![u1]);
    assert_eq!(db.sync_state(R1, "u").unwrap(), None);
    assert_eq!(counts(&db, R1), (1, 0));
    // A revision from the remote on top of the refused one means the remote took it: the
    // rejection ends, and the document's other unsynced branch stays unpushed.
    let w1 = put(&db, json!({"_id": "w", "secret": true}));
    db.bulk_docs(vec![json!({"_id": "w", "_rev": "1-0other"})], false)
        .unwrap();
    reject(&db, "w", &w1);
    assert_eq!(db.sync_state(R1, "w").unwrap(), rejected(&w1));
    let on_top = format!("2-{}", "d".repeat(32));
    db.bulk_docs_json_from(
        &[raw(json!({"_id": "w", "_rev": on_top,
            "_revisions": {"start": 2, "ids": ["d".repeat(32), w1.hash()]}}))],
        R1,
    )
    .unwrap();
    assert_eq!(
        db.sync_state(R1, "w").unwrap(),
        unpushed(&[&rev("1-0other")])
    );
    // A rejection of a document recorded as synced proves the remote lacks it (issue 19: a
    // remote that was reset): rejected again. One of a revision that is no longer a leaf
    // records nothing (the leaf that replaced it is the one that matters).
    let v1 = put(&db, json!({"_id": "v"}));
    db.record_remote_revs(R1, &held("v", &[&v1]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "v").unwrap(), Some(SyncState::Synced));
    reject(&db, "v", &v1);
    assert_eq!(db.sync_state(R1, "v").unwrap(), rejected(&v1));
    let v2 = put(&db, json!({"_id": "v", "_rev": v1.to_string()}));
    db.record_remote_revs(R1, &held("v", &[&v2]), &[]).unwrap();
    assert_eq!(db.sync_state(R1, "v").unwrap(), Some(SyncState::Synced));
    reject(&db, "v", &v1);
    assert_eq!(db.sync_state(R1, "v").unwrap(), Some(SyncState::Synced));
    db.verify().unwrap();
}

#[test]
fn purging_one_leaf_keeps_the_state_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    let r1 = put(&db, json!({"_id": "a"}));
    let r2 = put(&db, json!({"_id": "a", "_rev": r1.to_string(), "v": 2}));
    db.record_remote_revs(R1, &held("a", &[&r2]), &[]).unwrap();
    db.bulk_docs(vec![json!({"_id": "a", "_rev": "1-zz"})], false)
        .unwrap();
    db.record_remote_revs(R1, &held("a", &[&rev("1-zz")]), &[])
        .unwrap();
    assert!(db.sync_state(R1, "a").unwrap().unwrap().is_synced());
    // Purging 2-… leaves 1-zz (a purge keeps whole branches: it never makes an inner
    // revision a leaf), so the document stays synced.
    db.purge([("a".to_owned(), vec![r2])].into()).unwrap();
    assert_eq!(db.sync_state(R1, "a").unwrap(), Some(SyncState::Synced));
    db.verify().unwrap();
}

#[test]
fn listing_pages_through_the_unsynced_documents_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    let mut revs = HashMap::new();
    for i in 0..50 {
        let id = format!("d{i:02}");
        revs.insert(id.clone(), put(&db, json!({"_id": id})));
    }
    // Confirm every other one.
    let confirmed: BTreeMap<String, Vec<Rev>> = revs
        .iter()
        .filter(|(id, _)| id[1..].parse::<u32>().unwrap() % 2 == 0)
        .map(|(id, r)| (id.clone(), vec![r.clone()]))
        .collect();
    db.record_remote_revs(R1, &confirmed, &[]).unwrap();
    assert_eq!(counts(&db, R1), (25, 0));
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db.unsynced(R1, after.as_deref(), 7).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(id, _)| id.clone());
        all.extend(page);
    }
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<String> = (0..50)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("d{i:02}"))
        .collect();
    assert_eq!(ids, expected);
    for (id, state) in &all {
        assert_eq!(Some(state.clone()), unpushed(&[&revs[id]]));
    }
}

#[test]
fn registering_a_remote_after_edits_lists_every_existing_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for i in 0..20 {
        put(&db, json!({"_id": format!("e{i}")}));
    }
    // More documents than one registration batch, some edited again (stale index entries).
    let many: Vec<Value> = (0..2500)
        .map(|i| json!({"_id": format!("m{i:04}")}))
        .collect();
    let revs = db.bulk_docs(many, true).unwrap();
    let again: Vec<Value> = revs
        .iter()
        .step_by(7)
        .map(|r| json!({"_id": r.id, "_rev": r.rev.as_ref().unwrap().to_string(), "v": 2}))
        .collect();
    db.bulk_docs(again, true).unwrap();
    db.purge([("m0001".to_owned(), vec![revs[1].rev.clone().unwrap()])].into())
        .unwrap();
    let meta: serde_json::Map<String, Value> =
        [("push_filter".to_owned(), json!({"doc_ids": ["e1"]}))]
            .into_iter()
            .collect();
    db.register_remote(R1, meta.clone()).unwrap();
    assert_eq!(counts(&db, R1), (20 + 2499, 0));
    let m7 = db.unsynced(R1, Some("m0006"), 1).unwrap();
    assert_eq!(m7[0].0, "m0007");
    assert_eq!(m7[0].1.name(), "unpushed");
    assert!(db.sync_state(R1, "m0007").unwrap().unwrap().name() == "unpushed");
    let remote = db.remote(R1).unwrap();
    assert_eq!(remote.meta, meta);
    // Meta updates merge key by key.
    db.register_remote(
        R1,
        [("pull_filter".to_owned(), json!(null))]
            .into_iter()
            .collect(),
    )
    .unwrap();
    let remote = db.remote(R1).unwrap();
    assert_eq!(remote.meta.len(), 2);
    assert_eq!(remote.counts.unsynced, 2519);
    drop(db);
    let db = open(&dir);
    assert_eq!(db.remotes().len(), 1);
    assert_eq!(db.remote(R1).unwrap().meta.len(), 2);
    assert_eq!(db.verify().unwrap().unsynced_entries, 2519);
}

#[test]
fn the_live_stream_reports_each_change_of_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.register_remote(R1, Default::default()).unwrap();
    let mut changes = Box::pin(db.sync_state_changes(R1));
    let r1 = put(&db, json!({"_id": "a"}));
    fn next<S>(c: &mut S) -> (String, Option<SyncState>)
    where
        S: futures::Stream<Item = settee_store::Result<(String, Option<SyncState>)>> + Unpin,
    {
        futures::executor::block_on(c.next()).unwrap().unwrap()
    }
    assert_eq!(next(&mut changes), ("a".to_owned(), unpushed(&[&r1])));
    db.record_remote_revs(R1, &held("a", &[&r1]), &[]).unwrap();
    assert_eq!(
        next(&mut changes),
        ("a".to_owned(), Some(SyncState::Synced))
    );
    db.record_remote_revs(
        R1,
        &BTreeMap::new(),
        &[Rejection {
            id: "b".into(),
            rev: rev("1-b"),
            error: "forbidden".into(),
            reason: "x".into(),
        }],
    )
    .unwrap();
    // Nothing changed for "b" (it does not exist): no item. A purge is one.
    db.purge([("a".to_owned(), vec![r1])].into()).unwrap();
    assert_eq!(next(&mut changes), ("a".to_owned(), None));
    // Coalesced: two writes before a poll give one item with the latest state.
    let c1 = put(&db, json!({"_id": "c"}));
    let c2 = put(&db, json!({"_id": "c", "_rev": c1.to_string()}));
    assert_eq!(next(&mut changes), ("c".to_owned(), unpushed(&[&c2])));
    // Another remote's confirmation is not this stream's.
    db.register_remote(R2, Default::default()).unwrap();
    db.record_remote_revs(R2, &held("c", &[&c2]), &[]).unwrap();
    let d = put(&db, json!({"_id": "d"}));
    assert_eq!(next(&mut changes), ("d".to_owned(), unpushed(&[&d])));
}

#[test]
fn a_format_2_or_3_store_opens_in_the_current_format_with_no_remote() {
    for format in ["2", "3"] {
        older_store_opens_with_no_remote(format);
    }
}

fn older_store_opens_with_no_remote(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(&dir);
        put(&db, json!({"_id": "a"}));
    }
    // A format-2 or -3 store is a current store without sync records or indexes and an
    // older key.
    {
        let raw = common::raw_sled(&dir.path().join("db"));
        let tree = raw.open_tree("settee").unwrap();
        assert!(tree.get("Mremotes").unwrap().is_none());
        tree.insert("Mformat", format).unwrap();
        raw.flush().unwrap();
    }
    let db = open(&dir);
    assert_eq!(
        db.info().unwrap().disk_format_version,
        settee_store::FORMAT_VERSION
    );
    assert_eq!(db.sync_counts(R1).unwrap().unsynced, 1);
    db.verify().unwrap();
}

#[test]
fn entries_of_a_registration_cut_short_are_removed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let k0;
    {
        let db = open(&dir);
        k0 = put(&db, json!({"_id": "k0"}));
        for i in 1..3 {
            put(&db, json!({"_id": format!("k{i}")}));
        }
        db.register_remote(R1, Default::default()).unwrap();
    }
    // Before format 6, a crash in the middle of registering a second remote (number 2)
    // left entries of its first batches and no registration.
    {
        let raw = common::raw_sled(&dir.path().join("db"));
        let tree = raw.open_tree("settee").unwrap();
        let mut key = vec![b'U', 0, 0, 0, 2];
        key.extend_from_slice(b"k0");
        let rev = k0.to_string();
        // Version 1, one leaf (u32 length and text), no rejection.
        let mut value = vec![1, 0, 0, 0, 1];
        value.extend_from_slice(&u32::try_from(rev.len()).unwrap().to_be_bytes());
        value.extend_from_slice(rev.as_bytes());
        value.push(0);
        tree.insert(key, value).unwrap();
        raw.flush().unwrap();
    }
    let db = open(&dir);
    assert_eq!(db.verify().unwrap().unsynced_entries, 3);
    assert!(db.register_remote(R2, Default::default()).unwrap());
    assert_eq!(counts(&db, R2), (3, 0));
    assert_eq!(db.verify().unwrap().unsynced_entries, 6);
}

/// The model: per remote, the (id, rev) leaves it is known to hold; a document's
/// expected state is its leaves minus those.
#[derive(Default)]
struct Model {
    known: HashMap<&'static str, BTreeSet<(String, Rev)>>,
}

fn leaves_of(db: &Database) -> BTreeMap<String, BTreeSet<Rev>> {
    let mut out = BTreeMap::new();
    for row in db.changes(&Default::default()).unwrap().results {
        let revs = db
            .open_revs(&row.id, settee_store::OpenRevs::All, &GetOptions::default())
            .unwrap()
            .into_iter()
            .map(|r| match r {
                settee_store::OpenRevResult::Ok(d) => rev(d["_rev"].as_str().unwrap()),
                settee_store::OpenRevResult::Missing(r) => r,
            })
            .collect();
        out.insert(row.id, revs);
    }
    out
}

#[test]
fn random_operations_keep_the_state_equal_to_the_model() {
    let seed: u64 = std::env::var("SETTEE_SYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("sync-state model seed: {seed} (rerun with SETTEE_SYNC_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir);
        let remotes = [R1, R2];
        let mut model = Model::default();
        let mut registered: Vec<&'static str> = Vec::new();
        let mut hash = 0u64;
        for step in 0..80 {
            let before = leaves_of(&db);
            let id = format!("d{}", rng.gen_range(0..8));
            let current: Vec<Rev> = before
                .get(&id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            // (remote the revision came from, the revision) of a replicated write.
            let mut pulled: Option<(&'static str, String, Rev)> = None;
            let what = rng.gen_range(0..13);
            match what {
                0 if registered.len() < 2 => {
                    let r = remotes[registered.len()];
                    db.register_remote(r, Default::default()).unwrap();
                    registered.push(r);
                }
                0..=2 => {
                    // A local edit of a leaf (or a new document).
                    let mut doc = json!({"_id": id, "n": step});
                    if let Some(parent) = current.get(rng.gen_range(0..current.len().max(1))) {
                        doc["_rev"] = json!(parent.to_string());
                        if rng.gen_bool(0.2) {
                            doc["_deleted"] = json!(true);
                        }
                    }
                    let _ = db.put(doc);
                }
                3 if !registered.is_empty() && !current.is_empty() && rng.gen_bool(0.3) => {
                    // A remote sends a revision this store already has: it holds it.
                    let o = registered[rng.gen_range(0..registered.len())];
                    let known_rev = current[rng.gen_range(0..current.len())].clone();
                    let doc = json!({"_id": id, "_rev": known_rev.to_string()});
                    db.bulk_docs_json_from(&[raw(doc)], o).unwrap();
                    pulled = Some((o, id.clone(), known_rev));
                }
                3 | 4 => {
                    // A replicated revision, from a remote or from nowhere in particular.
                    hash += 1;
                    let h = format!("{hash:032x}");
                    let (start, ids) = match current.first() {
                        Some(parent) if rng.gen_bool(0.6) => {
                            (parent.pos() + 1, json!([h, parent.hash()]))
                        }
                        _ => (1, json!([h])),
                    };
                    let new_rev = rev(&format!("{start}-{h}"));
                    let doc = json!({"_id": id, "_rev": new_rev.to_string(),
                        "_revisions": {"start": start, "ids": ids}});
                    let origin = if !registered.is_empty() && rng.gen_bool(0.7) {
                        Some(registered[rng.gen_range(0..registered.len())])
                    } else {
                        None
                    };
                    match origin {
                        Some(o) => {
                            db.bulk_docs_json_from(&[raw(doc)], o).unwrap();
                            pulled = Some((o, id.clone(), new_rev));
                        }
                        None => {
                            db.bulk_docs(vec![doc], false).unwrap();
                        }
                    }
                }
                5 | 6 if !registered.is_empty() && !current.is_empty() => {
                    // A confirmation of some of a document's leaves (or of a stale rev).
                    let r = registered[rng.gen_range(0..registered.len())];
                    let mut revs: Vec<Rev> = current
                        .iter()
                        .filter(|_| rng.gen_bool(0.6))
                        .cloned()
                        .collect();
                    if rng.gen_bool(0.2) {
                        revs.push(rev("1-stale"));
                    }
                    db.record_remote_revs(r, &[(id.clone(), revs.clone())].into(), &[])
                        .unwrap();
                    for rv in revs {
                        if current.contains(&rv) {
                            model.known.entry(r).or_default().insert((id.clone(), rv));
                        }
                    }
                }
                9 if !registered.is_empty() => {
                    // A push batch: a random subset of the documents, all their leaves
                    // (documents between them in seq order left out, as a filter does).
                    let r = registered[rng.gen_range(0..registered.len())];
                    let batch: BTreeMap<String, Vec<Rev>> = before
                        .iter()
                        .filter(|_| rng.gen_bool(0.7))
                        .map(|(d, leaves)| (d.clone(), leaves.iter().cloned().collect()))
                        .collect();
                    db.record_remote_revs(r, &batch, &[]).unwrap();
                    for (d, revs) in batch {
                        for rv in revs {
                            model.known.entry(r).or_default().insert((d.clone(), rv));
                        }
                    }
                }
                10 if !registered.is_empty() => {
                    // A `_revs_diff` saying the remote lacks some revisions (leaves, stale
                    // revs, a document this store does not have), whatever was recorded.
                    let r = registered[rng.gen_range(0..registered.len())];
                    let mut revs: Vec<Rev> = current
                        .iter()
                        .filter(|_| rng.gen_bool(0.6))
                        .cloned()
                        .collect();
                    if rng.gen_bool(0.2) {
                        revs.push(rev("1-stale"));
                    }
                    let mut lacking: BTreeMap<String, Vec<Rev>> =
                        [(id.clone(), revs.clone())].into();
                    if rng.gen_bool(0.2) {
                        lacking.insert("nowhere".into(), vec![rev("1-abc")]);
                    }
                    db.record_remote_lacks(r, &lacking).unwrap();
                    let known = model.known.entry(r).or_default();
                    for rv in revs {
                        known.remove(&(id.clone(), rv));
                    }
                }
                11 if !registered.is_empty() && rng.gen_bool(0.3) => {
                    // The remote was found empty: it holds nothing.
                    let r = registered[rng.gen_range(0..registered.len())];
                    db.reset_remote(r).unwrap();
                    model.known.entry(r).or_default().clear();
                }
                7 if !current.is_empty() && rng.gen_bool(0.4) => {
                    let gone = current[rng.gen_range(0..current.len())].clone();
                    db.purge([(id.clone(), vec![gone])].into()).unwrap();
                }
                8 if rng.gen_bool(0.3) => {
                    drop(db);
                    db = open(&dir);
                }
                _ => {
                    db.compact().unwrap();
                }
            }
            // The model: a leaf that was not a leaf before is unknown everywhere, except to
            // the remote it came from.
            let after = leaves_of(&db);
            for r in &registered {
                let known = model.known.entry(r).or_default();
                known.retain(|(d, rv)| after.get(d).is_some_and(|s| s.contains(rv)));
                for (d, leaves) in &after {
                    for rv in leaves {
                        let was_leaf = before.get(d).is_some_and(|s| s.contains(rv));
                        let from_here = pulled
                            .as_ref()
                            .is_some_and(|(o, pd, pr)| o == r && pd == d && pr == rv);
                        if from_here {
                            known.insert((d.clone(), rv.clone()));
                        } else if !was_leaf {
                            known.remove(&(d.clone(), rv.clone()));
                        }
                    }
                }
            }
            for r in remotes {
                let mut expected: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
                for (d, leaves) in &after {
                    let unknown: Vec<Rev> = leaves
                        .iter()
                        .filter(|rv| {
                            !registered.contains(&r)
                                || !model.known[r].contains(&(d.clone(), (*rv).clone()))
                        })
                        .cloned()
                        .collect();
                    if !unknown.is_empty() {
                        expected.insert(d.clone(), unknown);
                    }
                }
                let actual: BTreeMap<String, Vec<Rev>> = db
                    .unsynced(r, None, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|(d, s)| match s {
                        SyncState::Unpushed { revs } => (d, revs),
                        other => panic!("seed {seed} round {round} step {step}: {d} is {other:?}"),
                    })
                    .collect();
                assert_eq!(
                    actual, expected,
                    "seed {seed} round {round} step {step} (op {what}) remote {r}"
                );
                assert_eq!(
                    db.sync_counts(r).unwrap().unsynced,
                    expected.len() as u64,
                    "seed {seed} round {round} step {step}"
                );
                for d in after.keys() {
                    let state = db.sync_state(r, d).unwrap().unwrap();
                    assert_eq!(
                        state.is_synced(),
                        !expected.contains_key(d),
                        "seed {seed} round {round} step {step}: {d} {state:?}"
                    );
                }
            }
            db.verify()
                .unwrap_or_else(|e| panic!("seed {seed} round {round} step {step}: {e}"));
        }
    }
}

/// The `U` keys of remote number `num` on disk (the store must be closed).
fn u_keys(dir: &tempfile::TempDir, num: u32) -> usize {
    let raw = common::raw_sled(&dir.path().join("db"));
    let tree = raw.open_tree("settee").unwrap();
    let mut prefix = vec![b'U'];
    prefix.extend_from_slice(&num.to_be_bytes());
    tree.scan_prefix(prefix).count()
}

/// Format 6: registering a remote with a large store writes no entry per document, and a
/// push that confirms in seq order writes none either; the state reads exactly as if every
/// document had its entry, through every listing path (more pending seqs than the by-seq
/// scan takes, fewer, none).
#[test]
fn a_large_store_registers_and_pushes_without_an_entry_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6_000usize;
    let mut by_seq: Vec<(String, Rev)> = Vec::with_capacity(n);
    {
        let db = open(&dir);
        // Ids out of seq order, so that id order and seq order differ.
        for chunk in 0..6 {
            let docs: Vec<Value> = (0..n / 6)
                .map(|j| json!({"_id": format!("doc{:06}", ((chunk * n / 6 + j) * 7919) % n)}))
                .collect();
            for r in db.bulk_docs(docs, true).unwrap() {
                by_seq.push((r.id.clone(), r.rev.unwrap()));
            }
        }
        assert!(db.register_remote(R1, Default::default()).unwrap());
        assert_eq!(counts(&db, R1), (n as u64, 0));
        // More pending seqs than the by-seq scan takes: the records are walked in id order.
        let page = db.unsynced(R1, Some("doc000100"), 3).unwrap();
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["doc000101", "doc000102", "doc000103"]);
        let (id, rev) = &by_seq[0];
        assert_eq!(db.sync_state(R1, id).unwrap(), unpushed(&[rev]));
        // A push of the first half, in seq order, in batches of 250.
        for batch in by_seq[..n / 2].chunks(250) {
            let held: BTreeMap<String, Vec<Rev>> = batch
                .iter()
                .map(|(id, rev)| (id.clone(), vec![rev.clone()]))
                .collect();
            db.record_remote_revs(R1, &held, &[]).unwrap();
        }
        assert_eq!(counts(&db, R1), ((n / 2) as u64, 0));
        assert_eq!(db.sync_state(R1, id).unwrap(), Some(SyncState::Synced));
        assert_eq!(db.verify().unwrap().unsynced_entries, (n / 2) as u64);
    }
    assert_eq!(
        u_keys(&dir, 1),
        0,
        "the registration and the push wrote entries"
    );
    let db = open(&dir);
    // Fewer pending seqs: the pending documents are read from the by-seq index and merged
    // with the entries. One edit of a pending document gives it an entry of its own.
    let (eid, erev) = by_seq[n - 1].clone();
    let edited = put(&db, json!({"_id": eid, "_rev": erev.to_string(), "v": 2}));
    let mut expected: Vec<String> = by_seq[n / 2..].iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    let rev_of: HashMap<&str, Rev> = by_seq
        .iter()
        .map(|(id, rev)| (id.as_str(), rev.clone()))
        .collect();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db.unsynced(R1, after.as_deref(), 256).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (id, state) in page {
            let want = if id == eid {
                edited.clone()
            } else {
                rev_of[id.as_str()].clone()
            };
            assert_eq!(Some(state), unpushed(&[&want]), "{id}");
            listed.push(id);
        }
    }
    assert_eq!(listed, expected);
    // Out of order: a batch from the end, then the rest. Nothing stays behind.
    let rest = |range: std::ops::Range<usize>| -> BTreeMap<String, Vec<Rev>> {
        by_seq[range]
            .iter()
            .map(|(id, rev)| {
                let rev = if *id == eid {
                    edited.clone()
                } else {
                    rev.clone()
                };
                (id.clone(), vec![rev])
            })
            .collect()
    };
    db.record_remote_revs(R1, &rest(n - 250..n), &[]).unwrap();
    assert_eq!(counts(&db, R1), ((n / 2 - 250) as u64, 0));
    db.verify().unwrap();
    db.record_remote_revs(R1, &rest(n / 2..n - 250), &[])
        .unwrap();
    assert_eq!(counts(&db, R1), (0, 0));
    assert!(db.unsynced(R1, None, 10).unwrap().is_empty());
    assert_eq!(db.verify().unwrap().unsynced_entries, 0);
    // Local writes to a store that syncs write no entries either: their seqs join the
    // pending intervals.
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"_id": format!("new{i:02}")}))
        .collect();
    let new_revs: Vec<Rev> = db
        .bulk_docs(docs, true)
        .unwrap()
        .into_iter()
        .map(|r| r.rev.unwrap())
        .collect();
    let edited2 = put(&db, json!({"_id": eid, "_rev": edited.to_string(), "v": 3}));
    assert_eq!(counts(&db, R1), (51, 0));
    assert_eq!(
        db.sync_state(R1, "new07").unwrap(),
        unpushed(&[&new_revs[7]])
    );
    assert_eq!(db.sync_state(R1, &eid).unwrap(), unpushed(&[&edited2]));
    assert_eq!(db.verify().unwrap().unsynced_entries, 51);
    drop(db);
    assert_eq!(u_keys(&dir, 1), 0);
}

/// Issue 19, finding 4: a listing read the entries, then walked the pending intervals; a
/// confirmation settling a span in between moved a document from the intervals into an
/// entry the listing had not seen, so it was in neither (and its state did not change, so
/// no live event corrected it). Here confirmations of scattered documents settle spans
/// (writing entries for the documents between them) while another thread lists: every
/// document never confirmed must be in every listing.
#[test]
fn issue_19_a_listing_misses_no_document_while_confirmations_settle_spans() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let n = 3000;
    let docs: Vec<Value> = (0..n).map(|i| json!({"_id": format!("d{i:05}")})).collect();
    let revs: Vec<Rev> = db
        .bulk_docs(docs, true)
        .unwrap()
        .into_iter()
        .map(|r| r.rev.unwrap())
        .collect();
    db.register_remote(R1, Default::default()).unwrap();
    // Every third document is confirmed, in shuffled batches; the others never are.
    let mut confirmed: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
    let mut rng = StdRng::seed_from_u64(19);
    use rand::seq::SliceRandom;
    confirmed.shuffle(&mut rng);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut listings = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || listings < 20 {
                let listed: BTreeSet<String> = db
                    .unsynced(R1, None, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                for i in (0..n).filter(|i| i % 3 != 0) {
                    let id = format!("d{i:05}");
                    assert!(listed.contains(&id), "listing {listings} misses {id}");
                }
                listings += 1;
            }
            listings
        })
    };
    for batch in confirmed.chunks(7) {
        let held: BTreeMap<String, Vec<Rev>> = batch
            .iter()
            .map(|&i| (format!("d{i:05}"), vec![revs[i].clone()]))
            .collect();
        db.record_remote_revs(R1, &held, &[]).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let listings = reader.join().unwrap();
    assert!(listings >= 20);
    assert_eq!(db.sync_counts(R1).unwrap().unsynced, 2000);
    db.verify().unwrap();
}

/// Issue 19, finding 6: a confirmation writes in proportion to its own documents, whatever
/// their order. A document edited while its batch was in flight is confirmed with its old
/// revision at its new seq (far ahead), and a pull confirms documents scattered over the
/// store; both used to take the whole span from the first seq to the last out of the
/// pending intervals, writing an entry for every other pending document in it (thousands,
/// in one locked batch). The state still reads exactly.
#[test]
fn issue_19_confirmations_write_in_proportion_to_their_documents_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6_000usize;
    let mut by_seq: Vec<(String, Rev)> = Vec::with_capacity(n);
    let mut unsynced: BTreeMap<String, Rev> = BTreeMap::new();
    {
        let db = open(&dir);
        let docs: Vec<Value> = (0..n).map(|i| json!({"_id": format!("d{i:05}")})).collect();
        for r in db.bulk_docs(docs, true).unwrap() {
            by_seq.push((r.id.clone(), r.rev.clone().unwrap()));
            unsynced.insert(r.id, r.rev.unwrap());
        }
        db.register_remote(R1, Default::default()).unwrap();
        // A first push's batch of 250 in flight; one of its documents is edited meanwhile.
        let (eid, erev) = by_seq[7].clone();
        let edited = put(&db, json!({"_id": eid, "_rev": erev.to_string(), "v": 2}));
        let batch: BTreeMap<String, Vec<Rev>> = by_seq[..250]
            .iter()
            .map(|(id, rev)| (id.clone(), vec![rev.clone()]))
            .collect();
        db.record_remote_revs(R1, &batch, &[]).unwrap();
        for (id, _) in &by_seq[..250] {
            unsynced.remove(id);
        }
        unsynced.insert(eid.clone(), edited);
        // A pull that finds 100 documents scattered over the store already here (its
        // `_revs_diff` said so): they are held by the remote.
        let mut rng = StdRng::seed_from_u64(6);
        let scattered: BTreeMap<String, Vec<Rev>> = (0..100)
            .map(|_| by_seq[rng.gen_range(300..n)].clone())
            .map(|(id, rev)| (id, vec![rev]))
            .collect();
        db.record_remote_revs(R1, &scattered, &[]).unwrap();
        for id in scattered.keys() {
            unsynced.remove(id);
        }
        let listed: BTreeMap<String, Vec<Rev>> = db
            .unsynced(R1, None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, s)| match s {
                SyncState::Unpushed { revs } => (id, revs),
                other => panic!("{id}: {other:?}"),
            })
            .collect();
        let expected: BTreeMap<String, Vec<Rev>> = unsynced
            .iter()
            .map(|(id, r)| (id.clone(), vec![r.clone()]))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(counts(&db, R1), (expected.len() as u64, 0));
        db.verify().unwrap();
    }
    let keys = u_keys(&dir, 1);
    assert!(
        keys <= 100 + 2,
        "{keys} entries for 250 + 100 confirmed documents and one edit"
    );
}
