//! Upgrades from every older storage format, each from a real store that the code of its
//! time wrote, checked in as a fixture: opened with today's code, it must answer exactly as
//! that code did (every document's leaves, bodies, revision tree and attachments, the feed,
//! `_all_docs`, the local documents, and from format 4 the sync state, from format 5 the
//! indexes), then take new writes.
//!
//! How each fixture was made:
//! - `format1.tar.gz`: `fixtures/format1-generator.rs.txt`, run as a program against the
//!   format-1 build (8b2ec45), which printed `format1-expected.json`.
//! - `format2.tar.gz` .. `format5.tar.gz`: `fixtures/generator/make-fixture.sh N` checks out
//!   the commit where format N was current (2e98465, 825233a, b006948, 53f381d: the script
//!   says which is which) in a temporary worktree, builds `generator/main.rs.txt` with that
//!   format's `generator/formatN.rs.txt` as an example of that commit's settee-store, runs
//!   it, and keeps the store it wrote (the tarball) and what that build answered about it
//!   (`formatN-expected.json`).
//! - `format5-u16.tar.gz`: `make-fixture.sh 5 db44f0e format5-u16`, format 5's generator
//!   run by a format-5 build from before b5d6e81, whose `U` entries and index blocks have
//!   u16 lengths (issue 21).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use settee_store::{
    AllDocsOptions, ChangesOptions, ChangesStyle, Database, FindRequest, GetOptions, OpenRevResult,
    OpenRevs, Rev, FORMAT_VERSION,
};

/// The remote the format-4 and -5 generators registered (`generator/format4.rs.txt`).
const REMOTE: &str = "http://couch.example/db";

/// What a dump reads, as the generator that recorded the fixture's answers read it.
struct Dump {
    /// Bodies of older revisions with their attachments' data (the format-2+ generator).
    bodies_with_attachments: bool,
    /// The local documents to read (a deleted one reads as null).
    local_ids: &'static [&'static str],
}

/// Format 1's generator: one local document, bodies without attachment data.
const FORMAT1: Dump = Dump {
    bodies_with_attachments: false,
    local_ids: &["_local/checkpoint"],
};

/// The format-2+ generator (`generator/main.rs.txt`, `LOCAL_IDS`).
const LATER: Dump = Dump {
    bodies_with_attachments: true,
    local_ids: &["_local/checkpoint", "_local/edited", "_local/deleted"],
};

/// The same answers the generators recorded: for every document in the feed, all its leaves
/// with revision paths and attachment data (`open_revs=all`), its winner's metadata
/// (`_revs_info`, conflicts, local seq) and the body of every revision that still has one;
/// the database info, `_all_docs`, the feed and the local documents.
fn dump(db: &Database, how: &Dump) -> Value {
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
        let with_revs = GetOptions {
            revs: true,
            attachments: true,
            ..Default::default()
        };
        let open: Vec<Value> = db
            .open_revs(&c.id, OpenRevs::All, &with_revs)
            .unwrap()
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
        for ri in meta
            .iter()
            .flat_map(|m| m["_revs_info"].as_array().unwrap())
        {
            let rev: Rev = ri["rev"].as_str().unwrap().parse().unwrap();
            let opts = GetOptions {
                rev: Some(rev.clone()),
                attachments: how.bodies_with_attachments,
                ..Default::default()
            };
            if let Ok(d) = db.get(&c.id, &opts) {
                bodies.insert(rev.to_string(), d);
            }
        }
        docs.insert(
            c.id.clone(),
            json!({"open_revs": open, "meta": meta, "bodies": bodies}),
        );
    }
    let info = db.info().unwrap();
    let local = if let [only] = how.local_ids {
        db.get_local(only).unwrap()
    } else {
        how.local_ids
            .iter()
            .map(|id| (id.to_string(), db.get_local(id).unwrap_or(Value::Null)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "info": {"doc_count": info.doc_count, "doc_del_count": info.doc_del_count,
                 "update_seq": info.update_seq, "purge_seq": info.purge_seq},
        "all_docs": serde_json::to_value(&all).unwrap(),
        "changes": serde_json::to_value(&ch).unwrap(),
        "local": local,
        "docs": docs,
    })
}

/// The sync state with [`REMOTE`] as the format-4 and -5 generators read it: each
/// document's state (two deleted ones included), the counts and the unsynced list; with
/// format 5's, the index list.
fn dump_sync(db: &Database, with_indexes: bool) -> Value {
    let ids: Vec<String> = db
        .all_docs(&AllDocsOptions::default())
        .unwrap()
        .rows
        .into_iter()
        .filter_map(|r| r.id)
        .chain(["doc-01".to_string(), "doc-04".to_string()])
        .collect();
    let states: serde_json::Map<String, Value> = ids
        .iter()
        .map(|id| {
            let state = db.sync_state(REMOTE, id).unwrap();
            (id.clone(), serde_json::to_value(state).unwrap())
        })
        .collect();
    let unsynced: Vec<Value> = db
        .unsynced(REMOTE, None, 100)
        .unwrap()
        .into_iter()
        .map(|(id, s)| json!([id, s]))
        .collect();
    let mut out = json!({
        "remote": REMOTE,
        "states": states,
        "counts": serde_json::to_value(db.sync_counts(REMOTE).unwrap()).unwrap(),
        "unsynced": unsynced,
    });
    if with_indexes {
        out["indexes"] = serde_json::to_value(db.get_indexes().unwrap()).unwrap();
    }
    out
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Unpacks fixture `name` (`formatN`, `format5-u16`) into `dir`; returns the store's path.
fn unpack(dir: &Path, name: &str) -> PathBuf {
    let fixture = fixture_path(&format!("{name}.tar.gz"));
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {}", fixture.display());
    dir.join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture_path(&format!("{name}-expected.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Opens the fixture with today's code: it is the current format and answers as the old
/// build did. Returns the store and what the old build answered about its sync state and
/// indexes (format 4 and later).
fn open_upgraded(dir: &Path, name: &str, how: &Dump) -> (PathBuf, Database, Value) {
    let path = unpack(dir, name);
    open_unpacked(&path, name, how)
}

/// [`open_upgraded`] for a fixture already unpacked at `path` (and perhaps changed).
fn open_unpacked(path: &Path, name: &str, how: &Dump) -> (PathBuf, Database, Value) {
    let mut expected = expected(name);
    let extras = expected
        .as_object_mut()
        .unwrap()
        .remove("extras")
        .unwrap_or(Value::Null);
    let db = Database::open(path).unwrap();
    assert_eq!(db.info().unwrap().disk_format_version, FORMAT_VERSION);
    let got = dump(&db, how);
    assert_eq!(
        got, expected,
        "{name}: the upgraded store answers differently"
    );
    (path.to_owned(), db, extras)
}

/// After the comparison: the store takes an edit of a conflicted document, and a reopened
/// store still answers with it (the upgrade is written once, not redone over new data).
fn write_and_reopen(path: &Path, db: Database, expected_rev: &Value) {
    let rev = db
        .put(json!({"_id": "doc-02", "_rev": expected_rev, "new": true}))
        .unwrap()
        .rev
        .unwrap();
    db.verify().unwrap();
    drop(db);
    let db = common::reopen(path).unwrap();
    let doc = db.get("doc-02", &GetOptions::default()).unwrap();
    assert_eq!(
        (&doc["_rev"], &doc["new"]),
        (&json!(rev.to_string()), &json!(true))
    );
    db.verify().unwrap();
}

/// A store from before the sync state knows no remote: every document is unsynced with any.
fn assert_all_unsynced(db: &Database) {
    let report = db.verify().unwrap();
    assert_eq!(report.unsynced_entries, 0);
    assert_eq!(
        db.sync_counts("http://any/db").unwrap().unsynced,
        report.doc_count + report.doc_del_count
    );
}

/// A store from before Mango indexes holds `_design/q`, a query design document replicated
/// in: the upgrade registers its index, which the first `find` builds over every document.
fn assert_query_ddoc_registered(db: &Database) {
    let indexes = db.get_indexes().unwrap();
    assert_eq!(indexes.total_rows, 2, "{:?}", indexes.indexes);
    assert_eq!(
        (&indexes.indexes[1]["ddoc"], &indexes.indexes[1]["name"]),
        (&json!("_design/q"), &json!("by-n"))
    );
    assert_eq!(db.verify().unwrap().index_entries, 0);
    let req = FindRequest::parse(
        &json!({"selector": {"n": {"$gte": 9}}, "sort": [{"n": "desc"}], "fields": ["_id"]}),
    )
    .unwrap();
    let found = db.find(&req).unwrap();
    let ids: Vec<&Value> = found.docs.iter().map(|d| &d["_id"]).collect();
    assert_eq!(ids, [&json!("doc-11"), &json!("doc-10"), &json!("doc-09")]);
    assert!(db.verify().unwrap().index_entries > 0);
}

#[test]
fn a_format_1_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, _) = open_upgraded(dir.path(), "format1", &FORMAT1);
    // Straight to the current format (a format-1 store has no sync state and no index);
    // each format-1 by-seq entry became a chunk of its own, so none is stale.
    assert_eq!(db.verify().unwrap().stale_seq_entries, 0);
    assert_all_unsynced(&db);
    let rev = expected("format1")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

#[test]
fn an_upgrade_cut_short_finishes_on_the_next_open() {
    // The crash window between the upgrade's last data batch and its format key: the
    // records and chunks are format 2 but the key still says 1. The next open must run the
    // upgrade again over converted data (skipping it) and answer as before.
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path(), "format1");
    drop(Database::open(&path).unwrap());
    {
        let raw = common::raw_sled(&path);
        raw.open_tree("settee")
            .unwrap()
            .insert("Mformat", "1")
            .unwrap();
        raw.flush().unwrap();
    }
    let db = common::reopen(&path).unwrap();
    db.verify().unwrap();
    assert_eq!(dump(&db, &FORMAT1), expected("format1"));
}

/// Format 2 (2e98465): the winner's body in the record, the by-seq index in chunks.
#[test]
fn a_format_2_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, extras) = open_upgraded(dir.path(), "format2", &LATER);
    assert_eq!(extras, Value::Null);
    assert_all_unsynced(&db);
    assert_query_ddoc_registered(&db);
    let rev = expected("format2")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

/// Format 3 (825233a): long forms of revision ids (position 0, any hash).
#[test]
fn a_format_3_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, extras) = open_upgraded(dir.path(), "format3", &LATER);
    assert_eq!(extras, Value::Null);
    let long = db.get(
        "long-1",
        &GetOptions {
            meta: true,
            ..Default::default()
        },
    );
    let long = long.unwrap();
    assert_eq!(long["_rev"], format!("2-{}", "l".repeat(300)));
    assert_eq!(long["_conflicts"], json!(["2-b"]));
    assert_eq!(
        db.get("long-0", &GetOptions::default()).unwrap()["_rev"],
        "0-zero"
    );
    assert_all_unsynced(&db);
    assert_query_ddoc_registered(&db);
    let rev = expected("format3")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

/// Format 4 (b006948): the sync state (a registered remote, confirmations, a rejection),
/// its `U` entries with u16 lengths, which the upgrade rewrites with u32 ones (issue 21).
#[test]
fn a_format_4_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, extras) = open_upgraded(dir.path(), "format4", &LATER);
    assert_eq!(
        extras["counts"]["rejected"], 1,
        "the fixture holds a rejection"
    );
    assert_eq!(
        extras["states"]["doc-03"]["state"], "unpushed",
        "what the format-4 build said of doc-03"
    );
    assert_eq!(dump_sync(&db, false), extras);
    db.verify().unwrap();
    assert_query_ddoc_registered(&db);
    let rev = expected("format4")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

/// Format 5 (53f381d): Mango indexes, built; format 6 only added pending intervals.
#[test]
fn a_format_5_store_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, extras) = open_upgraded(dir.path(), "format5", &LATER);
    db.verify().unwrap();
    assert_eq!(dump_sync(&db, true), extras);
    assert!(
        db.verify().unwrap().index_entries > 0,
        "the index was built"
    );
    let rev = expected("format5")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

/// Format 5 as main wrote it between b2a7934 and b5d6e81 (db44f0e): `U` entries and index
/// blocks with u16 lengths under the same format key (issue 21). The upgrade rewrites both
/// with u32 lengths: the sync state answers as that build did, and the index stays built.
#[test]
fn a_format_5_store_with_u16_lengths_is_upgraded_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (path, db, extras) = open_upgraded(dir.path(), "format5-u16", &LATER);
    assert_eq!(
        extras["counts"],
        json!({"unsynced": 14, "rejected": 1}),
        "the fixture holds unsynced entries and a rejection"
    );
    assert_eq!(dump_sync(&db, true), extras);
    let report = db.verify().unwrap();
    assert!(
        report.index_entries > 0,
        "the index was converted, not dropped"
    );
    assert_eq!(find_n_from_9(&db), ["doc-11", "doc-10", "doc-09"]);
    let rev = expected("format5-u16")["docs"]["doc-02"]["meta"]["_rev"].clone();
    write_and_reopen(&path, db, &rev);
}

/// A format-5 store written in the u16 window and then by a later format-5 build holds both
/// forms: each entry and block is read in the one form it parses in.
#[test]
fn a_format_5_store_with_both_length_forms_is_upgraded_entry_by_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path(), "format5-u16");
    let mut widened = 0;
    {
        let raw = common::raw_sled(&path);
        let tree = raw.open_tree("settee").unwrap();
        // Every other `U` entry and index block as a u32-length build rewrote it.
        let entries: Vec<_> = tree.scan_prefix("U").map(Result::unwrap).collect();
        for (k, v) in entries.iter().step_by(2) {
            tree.insert(k, widen_u16_entry(v)).unwrap();
            widened += 1;
        }
        // The fixture's index is one block: split it in two (the second keyed by its first
        // entry, as a split does), the first part in the u32 form, the second in the u16.
        let blocks: Vec<_> = tree.scan_prefix("I").map(Result::unwrap).collect();
        let [(k, v)] = &blocks[..] else {
            panic!("{} index blocks", blocks.len())
        };
        let entries = u16_block_entries(v);
        let (first, second) = entries.split_at(entries.len() / 2);
        tree.insert(k, block(first, 4)).unwrap();
        let mut second_key = k.to_vec();
        second_key.extend_from_slice(second[0]);
        tree.insert(second_key, block(second, 2)).unwrap();
        raw.flush().unwrap();
    }
    assert!(widened >= 5, "{widened}");
    let (path, db, extras) = open_unpacked(&path, "format5-u16", &LATER);
    assert_eq!(dump_sync(&db, true), extras);
    assert!(db.verify().unwrap().index_entries > 0);
    assert_eq!(find_n_from_9(&db), ["doc-11", "doc-10", "doc-09"]);
    drop(db);
    common::reopen(&path).unwrap().verify().unwrap();
}

/// A `U` entry that reads in neither length form fails the open with a `corrupt` error that
/// names it, and the store is left as it was (still format 4, nothing converted).
#[test]
fn a_damaged_sync_state_entry_fails_the_upgrade_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path(), "format4");
    let before = {
        let raw = common::raw_sled(&path);
        let tree = raw.open_tree("settee").unwrap();
        let (key, entry) = unsynced_entries(&tree)
            .into_iter()
            .find(|(k, _)| k.ends_with(b"doc-03"))
            .expect("doc-03 is unsynced");
        // One byte short: the last leaf's text runs past the end.
        tree.insert(&key, &entry[..entry.len() - 1]).unwrap();
        raw.flush().unwrap();
        unsynced_entries(&tree)
    };
    let err = common::reopen(&path).unwrap_err();
    assert_eq!(err.name(), "corrupt", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("\"doc-03\"") && message.contains("u16"),
        "{message}"
    );
    let raw = common::raw_sled(&path);
    let tree = raw.open_tree("settee").unwrap();
    assert_eq!(tree.get("Mformat").unwrap().unwrap(), "4");
    assert_eq!(unsynced_entries(&tree), before);
}

/// An index block that reads in neither length form costs the index, not the store: it is
/// registered again unbuilt, and the first `find` builds it from the documents.
#[test]
fn a_damaged_index_block_is_rebuilt_by_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path(), "format5-u16");
    {
        let raw = common::raw_sled(&path);
        let tree = raw.open_tree("settee").unwrap();
        let (k, v) = tree.scan_prefix("I").next().unwrap().unwrap();
        let mut damaged = v.to_vec();
        damaged.push(7);
        tree.insert(k, damaged).unwrap();
        raw.flush().unwrap();
    }
    let (_path, db, extras) = open_unpacked(&path, "format5-u16", &LATER);
    assert_eq!(dump_sync(&db, true), extras);
    assert_eq!(
        db.verify().unwrap().index_entries,
        0,
        "the index was dropped"
    );
    assert_eq!(find_n_from_9(&db), ["doc-11", "doc-10", "doc-09"]);
    assert!(db.verify().unwrap().index_entries > 0, "and built again");
}

/// The ids `find` answers for `n >= 9`, by `n` descending (through the index on `n`).
fn find_n_from_9(db: &Database) -> Vec<String> {
    let req = FindRequest::parse(
        &json!({"selector": {"n": {"$gte": 9}}, "sort": [{"n": "desc"}], "fields": ["_id"]}),
    )
    .unwrap();
    db.find(&req)
        .unwrap()
        .docs
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect()
}

fn unsynced_entries(tree: &sled::Tree) -> Vec<(sled::IVec, sled::IVec)> {
    tree.scan_prefix("U").map(Result::unwrap).collect()
}

/// Splits length-prefixed fields: a u16-form `U` entry's lengths are 2 bytes except the
/// reason's (4), which this test code knows by position.
fn u16_fields(bytes: &[u8], widths: impl Iterator<Item = usize>) -> Vec<&[u8]> {
    let mut at = 0;
    let mut out = Vec::new();
    for w in widths {
        let len = bytes[at..at + w]
            .iter()
            .fold(0usize, |n, b| n << 8 | usize::from(*b));
        out.push(&bytes[at + w..at + w + len]);
        at += w + len;
    }
    assert_eq!(at, bytes.len());
    out
}

/// A u16-form `U` entry in the u32 form (`docs/storage-format.md`, "Sync state"), written
/// independently of the store's code.
fn widen_u16_entry(v: &[u8]) -> Vec<u8> {
    assert_eq!(v[0], 1);
    let n = usize::from(u16::from_be_bytes([v[1], v[2]]));
    // The leaves, then the rejection flag and perhaps the rejection.
    let leaves_end = {
        let mut at = 3;
        for _ in 0..n {
            at += 2 + usize::from(u16::from_be_bytes([v[at], v[at + 1]]));
        }
        at
    };
    let leaves = u16_fields(&v[3..leaves_end], std::iter::repeat_n(2, n));
    let mut out = vec![1];
    out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
    let put = |out: &mut Vec<u8>, f: &[u8]| {
        out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
        out.extend_from_slice(f);
    };
    for leaf in leaves {
        put(&mut out, leaf);
    }
    let flag = v[leaves_end];
    out.push(flag);
    if flag == 1 {
        for f in u16_fields(&v[leaves_end + 1..], [2, 2, 4].into_iter()) {
            put(&mut out, f);
        }
    }
    out
}

/// A u16-form index block's entries.
fn u16_block_entries(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < v.len() {
        let len = usize::from(u16::from_be_bytes([v[at], v[at + 1]]));
        out.push(&v[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    out
}

/// An index block of `entries` with lengths of `width` bytes (2 or 4), big-endian.
fn block(entries: &[&[u8]], width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&u32::try_from(e.len()).unwrap().to_be_bytes()[4 - width..]);
        out.extend_from_slice(e);
    }
    out
}
