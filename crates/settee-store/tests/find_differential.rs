//! Differential test of Mango against PouchDB's own implementation: the npm package
//! `pouchdb-find` (pinned in tests/node/package-lock.json, installed by
//! scripts/node-deps.sh; pouchdb 9 with its leveldb adapter) answers random queries on
//! random datasets (`find_cases`), and the store must return the same documents in the same
//! order (sorted queries), the same documents (unsorted ones, whose order is whichever
//! index each planner picks), or an error where pouchdb-find errors.
//!
//! The generator stays where CouchDB's rules and PouchDB's agree; `find_cases/mod.rs` lists
//! where they differ, and the root package's `find_couchdb.rs` checks Settee against
//! CouchDB's `_find` on each of those.

#![allow(clippy::unwrap_used)]

mod find_cases;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use find_cases::Compare;
use serde_json::{json, Value};
use settee_store::{Database, Durability, FindRequest, OpenOptions};

fn node_modules() -> PathBuf {
    if let Ok(p) = std::env::var("SETTEE_NODE_MODULES") {
        return PathBuf::from(p);
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/node/node_modules");
    assert!(
        fallback.join("pouchdb-find").exists(),
        "pouchdb-find is not installed: run scripts/test.sh (or scripts/node-deps.sh and set SETTEE_NODE_MODULES)"
    );
    fallback
}

/// What the store answers: the ids, or the error's name.
fn ours(db: &Database, body: &Value) -> Result<Vec<String>, String> {
    let req = FindRequest::parse(body).map_err(|e| e.name().to_owned())?;
    let found = db.find(&req).map_err(|e| e.name().to_owned())?;
    Ok(found
        .docs
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect())
}

#[test]
fn agrees_with_pouchdb_find() {
    let datasets: u64 = std::env::var("SETTEE_FIND_DIFF_DATASETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250);
    let per_dataset = 24;
    let seed: u64 = std::env::var("SETTEE_FIND_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "find differential test: {datasets} datasets x {per_dataset} queries, seed {seed} (SETTEE_FIND_DIFF_SEED to replay)"
    );
    let all: Vec<find_cases::Dataset> = (0..datasets)
        .map(|i| find_cases::dataset(seed.wrapping_add(i), per_dataset))
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/find-oracle.js");
    let mut child = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed to run the differential test");
    let input: Vec<String> = all
        .iter()
        .map(|d| {
            let queries: Vec<&Value> = d.queries.iter().map(|q| &q.body).collect();
            json!({"docs": d.docs, "indexes": d.indexes, "queries": queries}).to_string()
        })
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for line in input {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    let reader = BufReader::new(child.stdout.take().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (mut ordered, mut sets, mut errors, mut nonempty) = (0u64, 0u64, 0u64, 0u64);
    let mut answered = 0;
    for (i, line) in reader.lines().enumerate() {
        let theirs: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let data = &all[i];
        let db = Database::open_with(OpenOptions {
            durability: Durability::Relaxed {
                flush_every: std::time::Duration::from_secs(60),
            },
            ..OpenOptions::new(dir.path().join(format!("db{i}")))
        })
        .unwrap();
        for r in db.bulk_docs(data.docs.clone(), true).unwrap() {
            assert!(r.is_ok(), "{r:?}");
        }
        for idx in &data.indexes {
            db.create_index(idx).unwrap();
        }
        for (j, q) in data.queries.iter().enumerate() {
            let want = &theirs["results"][j];
            let got = ours(&db, &q.body);
            let ctx = || {
                format!(
                    "dataset seed {} query {j}: {}\nindexes: {}\ndocs: {}\npouchdb-find: {want}\nsettee: {got:?}",
                    seed.wrapping_add(i as u64),
                    q.body,
                    json!(data.indexes),
                    json!(data.docs)
                )
            };
            match q.compare {
                Compare::Error => {
                    assert!(want.get("error").is_some() && got.is_err(), "{}", ctx());
                    errors += 1;
                }
                Compare::Ordered | Compare::Set => {
                    let Some(ids) = want.get("ids").and_then(Value::as_array) else {
                        panic!("pouchdb-find failed where Settee must not: {}", ctx());
                    };
                    let mut theirs: Vec<String> =
                        ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
                    let mut mine = got.clone().unwrap_or_else(|e| panic!("{e}: {}", ctx()));
                    if q.compare == Compare::Set {
                        theirs.sort();
                        mine.sort();
                        sets += 1;
                    } else {
                        ordered += 1;
                    }
                    assert_eq!(mine, theirs, "{}", ctx());
                    nonempty += u64::from(!mine.is_empty());
                }
            }
        }
        answered += 1;
        drop(db);
        Database::destroy(dir.path().join(format!("db{i}"))).unwrap();
    }
    writer.join().unwrap();
    assert!(child.wait().unwrap().success(), "the oracle failed");
    assert_eq!(
        answered, datasets,
        "the oracle answered only {answered} datasets"
    );
    let total = ordered + sets + errors;
    eprintln!(
        "find differential test: {total} queries agree ({ordered} sorted, {sets} unsorted, {errors} errors; {nonempty} with results)"
    );
    // The generator must produce enough cases, and enough of them must find something.
    assert!(total >= datasets * per_dataset as u64);
    assert!(
        nonempty * 3 >= ordered + sets,
        "too few queries match anything: {nonempty}"
    );
}
