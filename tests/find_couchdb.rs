//! Settee's Mango against Apache CouchDB's `_find` (the test server must be CouchDB 3.5):
//!
//! - every place where CouchDB's rules and pouchdb-find's differ (the cases the differential
//!   test against pouchdb-find, `crates/settee-store/tests/find_differential.rs`, stays away
//!   from) is a case here: CouchDB answers, Settee must answer the same, and pouchdb-find
//!   (run on the same case) must answer what is recorded for it, so the list stays true;
//! - random datasets and queries of the differential test's generator, where Settee must give
//!   CouchDB's documents in CouchDB's order (the same planner), or CouchDB's error;
//! - string collation: strings over ASCII and Latin-1 sorted by an index, in CouchDB's ICU
//!   order (the approximation in `settee_query`'s `icu.rs` is exact there).

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;
#[path = "../crates/settee-store/tests/find_cases/mod.rs"]
mod find_cases;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee::couch::RemoteDb;
use settee::store::{Database, Durability, OpenOptions};
use settee::FindRequest;
use settee_testkit::{TestDb, TestServer};

/// A database on the CouchDB test server, deleted at the end.
struct Couch {
    db: RemoteDb,
    _deleted_on_drop: TestDb,
}

impl Couch {
    async fn new(server: &TestServer, prefix: &str) -> Couch {
        let guard = TestDb::named(prefix);
        let db = RemoteDb::from_url(&server.db_url_with_credentials(guard.name())).unwrap();
        db.create().await.unwrap();
        Couch {
            db,
            _deleted_on_drop: guard,
        }
    }

    async fn load(&self, docs: &[Value], indexes: &[Value]) {
        for r in self.db.bulk_docs(docs, true).await.unwrap() {
            assert!(r.is_ok(), "{r:?}");
        }
        for idx in indexes {
            self.db.create_index(idx).await.unwrap();
        }
    }

    /// CouchDB's answer: the ids, or the error's name.
    async fn find(&self, query: &Value) -> Result<Vec<String>, String> {
        match self.db.find(query).await {
            Ok(v) => Ok(ids(&v["docs"])),
            Err(e) => Err(e
                .failure()
                .map(|f| f.error().to_owned())
                .unwrap_or_else(|| e.to_string())),
        }
    }

    async fn delete(self) {
        self.db.delete().await.unwrap();
    }
}

fn ids(docs: &Value) -> Vec<String> {
    docs.as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect()
}

fn store(dir: &tempfile::TempDir, name: &str, docs: &[Value], indexes: &[Value]) -> Database {
    let db = Database::open_with(OpenOptions {
        durability: Durability::Relaxed {
            flush_every: std::time::Duration::from_secs(60),
        },
        ..OpenOptions::new(dir.path().join(name))
    })
    .unwrap();
    for r in db.bulk_docs(docs.to_vec(), true).unwrap() {
        assert!(r.is_ok(), "{r:?}");
    }
    for idx in indexes {
        db.create_index(idx).unwrap();
    }
    db
}

/// Settee's answer: the ids, or the error's name.
fn settee_find(db: &Database, query: &Value) -> Result<Vec<String>, String> {
    let req = FindRequest::parse(query).map_err(|e| e.name().to_owned())?;
    let found = db.find(&req).map_err(|e| e.name().to_owned())?;
    Ok(ids(&json!(found.docs)))
}

/// pouchdb-find's answers (tests/node/find-oracle.js) to each `(docs, indexes, query)`.
fn pouchdb_find(cases: &[(Vec<Value>, Vec<Value>, Value)]) -> Vec<Value> {
    let modules = std::env::var("SETTEE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/node/node_modules")
        });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/find-oracle.js");
    let mut child = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed (scripts/node-deps.sh installs pouchdb-find)");
    let mut stdin = child.stdin.take().unwrap();
    for (docs, indexes, query) in cases {
        writeln!(
            stdin,
            "{}",
            json!({"docs": docs, "indexes": indexes, "queries": [query]})
        )
        .unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the pouchdb-find oracle failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["results"][0].clone())
        .collect()
}

/// One place where CouchDB and pouchdb-find differ.
struct Difference {
    what: &'static str,
    docs: Vec<Value>,
    indexes: Vec<Value>,
    query: Value,
    /// CouchDB's answer (and so Settee's): the ids in order, or the error name.
    couchdb: Result<Vec<&'static str>, &'static str>,
    /// pouchdb-find's answer: the ids in order, or `Err` for an error.
    pouchdb: Result<Vec<&'static str>, ()>,
}

fn differences() -> Vec<Difference> {
    let idx = |fields: Value| json!({"index": {"fields": fields}, "ddoc": "i", "name": "i"});
    vec![
        Difference {
            what: "strings collate with ICU (letters first, then case), not by code unit",
            docs: vec![json!({"_id": "1", "s": "a"}), json!({"_id": "2", "s": "B"}), json!({"_id": "3", "s": "b"}), json!({"_id": "4", "s": "A"})],
            indexes: vec![idx(json!(["s"]))],
            query: json!({"selector": {"s": {"$gt": null}}, "sort": ["s"]}),
            couchdb: Ok(vec!["1", "4", "3", "2"]),
            pouchdb: Ok(vec!["4", "2", "1", "3"]),
        },
        Difference {
            what: "$ne does not match a missing field",
            docs: vec![json!({"_id": "1", "x": 1}), json!({"_id": "2"})],
            indexes: vec![],
            query: json!({"selector": {"x": {"$ne": 2}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "$nin matches null (not in the list)",
            docs: vec![json!({"_id": "1", "x": null}), json!({"_id": "2", "x": 1})],
            indexes: vec![],
            query: json!({"selector": {"x": {"$nin": [1]}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec![]),
        },
        Difference {
            what: "$in matches null when the list holds it",
            docs: vec![json!({"_id": "1", "x": null}), json!({"_id": "2", "x": 1})],
            indexes: vec![],
            query: json!({"selector": {"x": {"$in": [null]}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec![]),
        },
        Difference {
            what: "$all of nothing matches nothing",
            docs: vec![json!({"_id": "1", "t": []}), json!({"_id": "2", "t": [1]})],
            indexes: vec![],
            query: json!({"selector": {"t": {"$all": []}}}),
            couchdb: Ok(vec![]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "$all with one array argument also matches that array itself",
            docs: vec![json!({"_id": "1", "t": [1, 2]}), json!({"_id": "2", "t": [[1, 2]]})],
            indexes: vec![],
            query: json!({"selector": {"t": {"$all": [[1, 2]]}}}),
            couchdb: Ok(vec!["1", "2"]),
            pouchdb: Ok(vec!["2"]),
        },
        Difference {
            what: "a bare array value is equality with that array",
            docs: vec![json!({"_id": "1", "t": [1, 2]}), json!({"_id": "2", "t": [1, 2, 3]})],
            indexes: vec![],
            query: json!({"selector": {"t": [1, 2]}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "a bare {} is equality with the empty object",
            docs: vec![json!({"_id": "1", "c": {}}), json!({"_id": "2", "c": {"d": 1}})],
            indexes: vec![],
            query: json!({"selector": {"c": {}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec![]),
        },
        Difference {
            what: "a sort by _id needs an _id condition (or an index)",
            docs: vec![json!({"_id": "1"}), json!({"_id": "2"})],
            indexes: vec![],
            query: json!({"selector": {}, "sort": ["_id"]}),
            couchdb: Err("no_usable_index"),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "an index on a field the selector does not require is not used: a missing field never matches $lt",
            docs: vec![json!({"_id": "1", "a": 1}), json!({"_id": "2", "a": null}), json!({"_id": "3"})],
            indexes: vec![idx(json!(["a", "b"]))],
            query: json!({"selector": {"a": {"$lt": 5}}}),
            couchdb: Ok(vec!["1", "2"]),
            pouchdb: Ok(vec!["2", "3", "1"]),
        },
        Difference {
            what: "an index whose later column the selector does not require is not used",
            docs: vec![json!({"_id": "1", "k": 1, "c": {"d": 1}}), json!({"_id": "2", "k": 1})],
            indexes: vec![idx(json!(["k", "c.d"]))],
            query: json!({"selector": {"k": 1}}),
            couchdb: Ok(vec!["1", "2"]),
            pouchdb: Ok(vec!["1"]),
        },
        Difference {
            what: "$beginsWith (CouchDB 3.4+)",
            docs: vec![json!({"_id": "1", "s": "abc"}), json!({"_id": "2", "s": "xbc"})],
            indexes: vec![],
            query: json!({"selector": {"s": {"$beginsWith": "ab"}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Err(()),
        },
        Difference {
            what: "$keyMapMatch",
            docs: vec![json!({"_id": "1", "m": {"ab": 1}}), json!({"_id": "2", "m": {"x": 1}})],
            indexes: vec![],
            query: json!({"selector": {"m": {"$keyMapMatch": {"$eq": "ab"}}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Err(()),
        },
        Difference {
            what: "$not inside a field's condition",
            docs: vec![json!({"_id": "1", "k": 1}), json!({"_id": "2", "k": 3})],
            indexes: vec![],
            query: json!({"selector": {"k": {"$not": {"$gt": 2}}}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Err(()),
        },
        Difference {
            what: "$mod matches integers only, not 4.0",
            docs: vec![json!({"_id": "1", "n": 4.0}), json!({"_id": "2", "n": 4})],
            indexes: vec![],
            query: json!({"selector": {"n": {"$mod": [2, 0]}}}),
            couchdb: Ok(vec!["2"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "$not of a condition on a missing field does not match (the negation is pushed down)",
            docs: vec![json!({"_id": "1", "x": 1}), json!({"_id": "2"})],
            indexes: vec![],
            query: json!({"selector": {"$not": {"x": 1}}}),
            couchdb: Ok(vec![]),
            pouchdb: Ok(vec!["2"]),
        },
        Difference {
            what: "$exists: false through a scalar is a bad path: no match",
            docs: vec![json!({"_id": "1", "c": 7}), json!({"_id": "2"})],
            indexes: vec![],
            query: json!({"selector": {"c.e": {"$exists": false}}}),
            couchdb: Ok(vec!["2"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "$and of $eq and another comparison of the same field: both must hold",
            docs: vec![json!({"_id": "1", "k": 2}), json!({"_id": "2", "k": 6})],
            indexes: vec![],
            query: json!({"selector": {"$and": [{"k": {"$gt": 5}}, {"k": {"$eq": 2}}]}}),
            couchdb: Ok(vec![]),
            pouchdb: Ok(vec!["1"]),
        },
        Difference {
            what: "fields beside an explicit $and count too",
            docs: vec![json!({"_id": "1", "s": "a", "k": 1}), json!({"_id": "2", "s": "b", "k": 1})],
            indexes: vec![],
            query: json!({"selector": {"s": "a", "$and": [{"k": 1}]}}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "$gt read backwards (descending sort) excludes its bound",
            docs: vec![json!({"_id": "1", "k": 1}), json!({"_id": "2", "k": 2}), json!({"_id": "3", "k": 3})],
            indexes: vec![idx(json!(["k", "_id"]))],
            query: json!({"selector": {"k": {"$gt": 2}, "_id": {"$exists": true}}, "sort": [{"k": "desc"}, {"_id": "desc"}]}),
            couchdb: Ok(vec!["3"]),
            pouchdb: Ok(vec!["3", "2"]),
        },
        Difference {
            what: "two upper bounds on an indexed field: both hold",
            docs: vec![json!({"_id": "1", "k": 1}), json!({"_id": "2", "k": 4})],
            indexes: vec![idx(json!(["k", "_id"]))],
            query: json!({"selector": {"k": {"$lte": 2, "$lt": 9}, "_id": {"$exists": true}}, "sort": ["k", "_id"]}),
            couchdb: Ok(vec!["1"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
        Difference {
            what: "a range after a range on an index's columns keeps its exclusive bound",
            docs: vec![json!({"_id": "1", "a": "z", "k": 5}), json!({"_id": "2", "a": "zz", "k": 5})],
            indexes: vec![idx(json!(["a", "k", "_id"]))],
            query: json!({"selector": {"a": {"$gt": "z"}, "k": {"$gt": 2}, "_id": {"$exists": true}}, "sort": ["a", "k", "_id"]}),
            couchdb: Ok(vec!["2"]),
            pouchdb: Ok(vec!["1", "2"]),
        },
    ]
}

#[tokio::test]
async fn where_pouchdb_find_differs_settee_answers_as_couchdb() {
    let server = common::couchdb_server();
    let dir = tempfile::tempdir().unwrap();
    let cases = differences();
    let theirs = pouchdb_find(
        &cases
            .iter()
            .map(|d| (d.docs.clone(), d.indexes.clone(), d.query.clone()))
            .collect::<Vec<_>>(),
    );
    for (i, (d, pouch)) in cases.iter().zip(theirs).enumerate() {
        let couch = Couch::new(&server, "diff").await;
        couch.load(&d.docs, &d.indexes).await;
        let expected = d
            .couchdb
            .clone()
            .map(|v| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .map_err(str::to_owned);
        assert_eq!(couch.find(&d.query).await, expected, "CouchDB, {}", d.what);
        let db = store(&dir, &format!("db{i}"), &d.docs, &d.indexes);
        assert_eq!(settee_find(&db, &d.query), expected, "Settee, {}", d.what);
        match (&d.pouchdb, pouch.get("ids")) {
            (Ok(want), Some(got)) => assert_eq!(got, &json!(want), "pouchdb-find, {}", d.what),
            (Err(()), None) => assert!(pouch.get("error").is_some(), "pouchdb-find, {}", d.what),
            _ => panic!("pouchdb-find, {}: answered {pouch}", d.what),
        }
        couch.delete().await;
    }
}

#[tokio::test]
async fn random_queries_answer_as_couchdb() {
    let server = common::couchdb_server();
    let datasets: u64 = std::env::var("SETTEE_FIND_COUCHDB_DATASETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("SETTEE_FIND_COUCHDB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "{datasets} datasets against CouchDB, seed {seed} (SETTEE_FIND_COUCHDB_SEED to replay)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for i in 0..datasets {
        let data = find_cases::dataset(seed.wrapping_add(i), 24);
        let couch = Couch::new(&server, "rand").await;
        couch.load(&data.docs, &data.indexes).await;
        let db = store(&dir, &format!("db{i}"), &data.docs, &data.indexes);
        for q in &data.queries {
            let theirs = couch.find(&q.body).await;
            let ours = settee_find(&db, &q.body);
            // The same planner: the same documents in the same order, sorted or not.
            assert_eq!(
                ours,
                theirs,
                "dataset seed {} query {}\nindexes {}\ndocs {}",
                seed.wrapping_add(i),
                q.body,
                json!(data.indexes),
                json!(data.docs)
            );
            compared += 1;
        }
        couch.delete().await;
    }
    eprintln!("{compared} queries answered as CouchDB answers them");
}

#[tokio::test]
async fn strings_sort_in_couchdbs_icu_order() {
    let server = common::couchdb_server();
    let mut rng = StdRng::seed_from_u64(7);
    let mut alphabet: Vec<char> = (0x20u32..0x7f)
        .chain(0xa0..0x100)
        .filter_map(char::from_u32)
        .collect();
    alphabet.extend([
        'Œ', 'œ', 'Š', 'š', 'Ž', 'ž', 'Ÿ', 'Ā', 'ā', '€', '\t', '\n', '\u{1}',
    ]);
    let docs: Vec<Value> = (0..400)
        .map(|i| {
            let len = rng.gen_range(0..4);
            let s: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            json!({"_id": format!("s{i:03}"), "s": s})
        })
        .collect();
    let indexes = vec![json!({"index": {"fields": ["s"]}, "ddoc": "s", "name": "s"})];
    let couch = Couch::new(&server, "icu").await;
    couch.load(&docs, &indexes).await;
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir, "icu", &docs, &indexes);
    for dir in ["asc", "desc"] {
        let query = json!({"selector": {"s": {"$gte": ""}}, "sort": [{"s": dir}], "limit": 1000});
        let theirs = couch.find(&query).await.unwrap();
        assert_eq!(theirs.len(), 400);
        let ours = settee_find(&db, &query).unwrap();
        if ours != theirs {
            let text = |id: &str| docs.iter().find(|d| d["_id"] == id).unwrap()["s"].clone();
            for (a, b) in ours.iter().zip(&theirs) {
                if a != b {
                    eprintln!("settee {a} {:?} | couchdb {b} {:?}", text(a), text(b));
                }
            }
        }
        assert_eq!(ours, theirs, "{dir}");
    }
    couch.delete().await;
}
