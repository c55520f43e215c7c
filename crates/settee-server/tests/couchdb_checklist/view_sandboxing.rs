//! CouchDB's `view_sandboxing_test.exs`: what a map function can reach, played on
//! `settee serve` and the shared CouchDB 3.5.0 with that file's expectations.

use reqwest::Method;
use serde_json::{json, Value};

/// CouchDB's `view_sandboxing_test.exs`, played on both servers with its expectations: a map
/// function cannot change its document (frozen, as CouchDB's: not its own rows, not
/// `include_docs`, not another view's input: COUCHDB-925); the interpreter's internals (`gc`), the query server's own
/// state (`map_funs`, `map_results`) are out of reach, so such a function emits nothing.
/// Runtime code evaluation (`Function` reached through `emit.constructor`), which that file
/// expects to throw, works in CouchDB 3.5.0 as it is shipped, and here too: it reaches
/// nothing more than the function itself could (its design document's own runtime, in a
/// worker process without I/O).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_sandboxing_as_couchdb() {
    let (_serve, settee, couch, _couch_db) =
        crate::common::compared("sandboxing", "serve_js_sandboxing").await;
    let views = json!({
        "mutate_int": {"map": "function (doc) { if (doc.integer) { doc.integer = 2; emit(null, doc); } }"},
        "mutate_array": {"map": "function (doc) { if (doc.array) { doc.array[0] = 0; emit(null, doc); } }"},
        "gc": {"map": "function (doc) { gc(); emit(null, doc); }"},
        "map_funs": {"map": "function (doc) { map_funs.push(1); emit(null, doc); }"},
        "map_results": {"map": "function (doc) { map_results.push(1); emit(null, doc); }"},
        "eval": {"map": "function (doc) { var glob = emit.constructor('return this')(); emit(doc._id, null); }"},
        "view1": {"map": "function (doc) { if (doc.values) { doc.values = [666]; } if (doc.tags) { doc.tags.push('qwerty'); } if (doc.tokens) { doc.tokens['c'] = 3; } }"},
        "view2": {"map": "function (doc) { if (doc.values) { emit(doc._id, doc.values); } if (doc.tags) { emit(doc._id, doc.tags); } if (doc.tokens) { emit(doc._id, doc.tokens); } }"}
    });
    for side in [&settee, &couch] {
        for doc in [
            json!({"_id": "a", "integer": 1, "string": "1", "array": [1, 2, 3]}),
            json!({"_id": "doc1", "values": [1, 2, 3]}),
            json!({"_id": "doc2", "tags": ["foo", "bar"], "tokens": {"a": 1, "b": 2}}),
            json!({"_id": "_design/s", "language": "javascript", "views": views}),
        ] {
            let (s, b) = side.json(Method::POST, "", doc).await;
            assert_eq!(s, 201, "{b}");
        }
    }
    let mut answers = Vec::new();
    for (i, side) in [&settee, &couch].into_iter().enumerate() {
        let view = |name: &str, query: &str| {
            let path = format!("/_design/s/_view/{name}{query}");
            async move {
                let (s, b) = side.call(Method::GET, &path, None).await;
                assert_eq!(s, 200, "{path}: {b}");
                b
            }
        };
        let b = view("mutate_int", "?include_docs=true").await;
        assert_eq!(b["rows"][0]["doc"]["integer"], 1, "{b}");
        assert_eq!(b["rows"][0]["value"]["integer"], 1, "{b}");
        let b = view("mutate_array", "?include_docs=true").await;
        assert_eq!(b["rows"][0]["doc"]["array"], json!([1, 2, 3]), "{b}");
        assert_eq!(b["rows"][0]["value"]["array"], json!([1, 2, 3]), "{b}");
        for name in ["gc", "map_funs", "map_results"] {
            let b = view(name, "").await;
            assert_eq!(b["rows"], json!([]), "{name}: {b}");
        }
        let evaluated = view("eval", "").await["rows"].as_array().unwrap().len();
        assert_eq!(
            evaluated,
            3,
            "runtime code evaluation on {}",
            ["settee", "couchdb"][i]
        );
        assert_eq!(view("view1", "").await["rows"], json!([]));
        let b = view("view2", "").await;
        let rows = b["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{b}");
        assert_eq!(rows[0]["value"], json!([1, 2, 3]), "{b}");
        for row in &rows[1..] {
            assert!(
                row["value"] == json!(["foo", "bar"]) || row["value"] == json!({"a": 1, "b": 2}),
                "view1's changes reached view2: {b}"
            );
        }
        answers.push(b);
    }
    // The same rows on both (two share a key and an id, so their order is not compared).
    let rows = |b: &Value| {
        let mut r: Vec<String> = b["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        r.sort();
        r
    };
    assert_eq!(rows(&answers[0]), rows(&answers[1]));
}
