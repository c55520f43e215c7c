//! `bulk_docs_json` (documents as JSON text, how the replicator writes) against
//! `bulk_docs` (parsed documents): for every kind of document and every kind of bad one,
//! the two give the same results and leave stores that answer every read the same way.
#![allow(clippy::unwrap_used)]

use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use settee_store::{Database, GetOptions, OpenRevs};

fn open(dir: &tempfile::TempDir, name: &str) -> Database {
    Database::open(dir.path().join(name)).unwrap()
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

/// Everything a reader can see of a document: every leaf with its history and attachment
/// data, and the winner with its conflicts.
fn view(db: &Database, id: &str) -> Value {
    let opts = GetOptions {
        revs: true,
        attachments: true,
        conflicts: true,
        ..Default::default()
    };
    let mut leaves: Vec<Value> = db
        .open_revs(id, OpenRevs::All, &opts)
        .map(|v| {
            v.into_iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect()
        })
        .unwrap_or_default();
    leaves.sort_by_key(|v| v.to_string());
    let winner = db
        .get(id, &opts)
        .unwrap_or_else(|e| json!({"error": e.name()}));
    json!({"leaves": leaves, "winner": winner})
}

/// Writes the same texts through both entry points (new_edits=false) and compares.
fn same_through_both(texts: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir, "parsed"), open(&dir, "text"));
    let mut ids = Vec::new();
    let mut parsed_results = Vec::new();
    let mut text_results = Vec::new();
    for t in texts {
        // A text serde_json cannot parse has no `bulk_docs` counterpart.
        let v: Value = serde_json::from_str(t).unwrap();
        if let Some(id) = v.get("_id").and_then(Value::as_str) {
            ids.push(id.to_owned());
        }
        parsed_results.extend(a.bulk_docs(vec![v], false).unwrap());
        text_results.extend(b.bulk_docs_json(&[raw(t)], false).unwrap());
    }
    assert_eq!(
        serde_json::to_value(&parsed_results).unwrap(),
        serde_json::to_value(&text_results).unwrap(),
        "results differ for {texts:?}"
    );
    for id in ids {
        assert_eq!(view(&a, &id), view(&b, &id), "document {id} differs");
    }
    assert_eq!(a.info().unwrap().doc_count, b.info().unwrap().doc_count);
    assert_eq!(a.info().unwrap().update_seq, b.info().unwrap().update_seq);
    b.verify().unwrap();
}

#[test]
fn documents_of_every_shape_are_stored_the_same() {
    same_through_both(&[
        r#"{"_id":"plain","_rev":"1-a","v":1}"#,
        // Whitespace, escapes in names and strings, unicode, nesting, numbers of every kind.
        r#" { "_id" : "spaced" , "_rev" : "1-b" , "a\"b\\c" : "x\ny\u00e9\ud83d\ude00" ,
             "n": [1, -2.5, 1e3, 12345678901234567890, 0.1], "o": {"_nested": true, "e": {}} } "#,
        r#"{"_id":"\u0061scii-escaped","_rev":"1-c","t":"ok"}"#,
        // History, deletion, an empty body.
        r#"{"_id":"hist","_rev":"3-c","_revisions":{"start":3,"ids":["c","b","a"]},"v":3}"#,
        r#"{"_id":"hist","_rev":"3-z","_revisions":{"start":3,"ids":["z","b","a"]},"v":"branch"}"#,
        r#"{"_id":"gone","_rev":"2-d","_revisions":{"start":2,"ids":["d","a"]},"_deleted":true}"#,
        r#"{"_id":"empty","_rev":"1-e"}"#,
        // Read-only specials are dropped, replicator fields kept.
        r#"{"_id":"specials","_rev":"1-f","_conflicts":["1-x"],"_revs_info":[],"_local_seq":3,
            "_replication_state":"completed","v":true}"#,
        // Attachments: inline data, then a later revision with a stub of it.
        r#"{"_id":"att","_rev":"1-g","_attachments":{"a.txt":{"content_type":"text/plain","data":"aGVsbG8="}},"v":1}"#,
        r#"{"_id":"att","_rev":"2-h","_revisions":{"start":2,"ids":["h","g"]},
            "_attachments":{"a.txt":{"stub":true,"content_type":"text/plain","digest":"md5-XUFAKrxLKna5cZ2REBfFkg==","revpos":1}}}"#,
        r#"{"_id":"_design/app","_rev":"1-i","views":{}}"#,
    ]);
}

#[test]
fn bad_documents_fail_the_same_way_and_write_nothing() {
    same_through_both(&[
        r#"[1,2]"#,
        r#""text""#,
        r#"{"_rev":"1-a","v":1}"#,
        r#"{"_id":"_bad","_rev":"1-a"}"#,
        r#"{"_id":"x","_rev":"1-a","_foo":1}"#,
        r#"{"_id":7,"_rev":"1-a"}"#,
        r#"{"_id":"x","_rev":"zz"}"#,
        r#"{"_id":"x"}"#,
        r#"{"_id":"x","_rev":"2-b","_revisions":{"start":2,"ids":["c","a"]}}"#,
        r#"{"_id":"x","_rev":"1-a","_deleted":"yes"}"#,
        r#"{"_id":"x","_rev":"1-a","_revisions":{"start":1,"ids":"a"}}"#,
        r#"{"_id":"x","_rev":"1-a","_revisions":{"start":0,"ids":["a"]}}"#,
        r#"{"_id":"x","_rev":null,"_revisions":{"start":1,"ids":["a"]},"v":1}"#,
        r#"{"_id":"x","_rev":5}"#,
        r#"{"_id":"x","_rev":"1-a","_attachments":{"f":{"data":"***"}}}"#,
        r#"{"_id":"x","_rev":"1-a","_attachments":{"f":{"stub":true,"digest":"md5-none"}}}"#,
        r#"{"_id":"_local/x","_rev":"0-1"}"#,
    ]);
}

#[test]
fn text_that_is_not_a_document_gets_a_result_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir, "db");
    let res = db
        .bulk_docs_json(
            &[raw(r#"{"_id":"ok","_rev":"1-a"}"#), raw("null"), raw("3")],
            false,
        )
        .unwrap();
    assert!(res[0].is_ok());
    for r in &res[1..] {
        assert_eq!(r.error.as_deref(), Some("bad_request"), "{r:?}");
    }
    assert_eq!(db.info().unwrap().doc_count, 1);
}

#[test]
fn new_edits_true_from_text_makes_the_same_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir, "parsed"), open(&dir, "text"));
    let text = r#"{"_id":"n","title":"x","tags":["a","b"],"n":1.5}"#;
    let ra = a
        .bulk_docs(vec![serde_json::from_str(text).unwrap()], true)
        .unwrap();
    let rb = b.bulk_docs_json(&[raw(text)], true).unwrap();
    assert_eq!(ra[0].rev, rb[0].rev);
    assert!(ra[0].rev.is_some());
    assert_eq!(view(&a, "n"), view(&b, "n"));
}

/// A random JSON value: strings with escapes and non-ASCII, numbers, nesting.
fn random_value(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => json!(rng.gen_range(-1_000_000i64..1_000_000)),
        3 => json!(rng.gen_range(-1e6..1e6f64)),
        4 => {
            let pool = ['a', 'é', '"', '\\', '\n', '\u{1F600}', '/', '\u{1}', ' '];
            Value::String(
                (0..rng.gen_range(0..12))
                    .map(|_| pool[rng.gen_range(0..pool.len())])
                    .collect(),
            )
        }
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for i in 0..rng.gen_range(0..4) {
                m.insert(format!("k{i}\"é"), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

#[test]
fn random_bodies_are_stored_the_same() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let texts: Vec<String> = (0..200)
        .map(|i| {
            let mut doc = serde_json::Map::new();
            doc.insert("_id".into(), json!(format!("doc-{}", i % 60)));
            doc.insert("_rev".into(), json!(format!("{}-r{i}", 1 + i / 60)));
            if i >= 60 {
                doc.insert(
                    "_revisions".into(),
                    json!({"start": 1 + i / 60, "ids": [format!("r{i}"), format!("r{}", i - 60)]}),
                );
            }
            for k in 0..rng.gen_range(0..6) {
                // Names with characters that are escaped (or not) in JSON text.
                let name = ["f", "f\"q", "fé", "f\\", "f\n", "f/"][rng.gen_range(0..6)];
                doc.insert(format!("{name}{k}"), random_value(&mut rng, 0));
            }
            // Pretty-printed now and then: the text keeps its spacing inside values.
            if rng.gen_bool(0.3) {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                serde_json::to_string(&doc).unwrap()
            }
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    same_through_both(&refs);
}
