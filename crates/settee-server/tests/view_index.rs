//! Views kept on disk and brought up to date incrementally (issue 24, "Views that keep up").
//! The map function emits `Math.random()` as each row's value, so a row whose value is
//! unchanged was not mapped again: that is how these tests see which documents a query
//! mapped. The index survives a restart, one write maps one document, a deleted document's
//! rows go, a design document change that leaves the view alone keeps its index, and an
//! index whose seq is behind the rows it holds (a crash between steps) still answers right.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{options, TestServe};
use reqwest::Method;
use serde_json::{json, Value};
use settee_server::Server;

const DB: &str = "views";
const MAP: &str = "function (doc) { if (doc.n !== undefined) emit(doc.n, Math.random()); }";

async fn setup() -> TestServe {
    let serve = TestServe::start().await;
    serve.create_db(DB).await;
    let docs: Vec<Value> = (0..30)
        .map(|i| json!({"_id": format!("d{i:02}"), "n": i % 7}))
        .collect();
    let (s, b) = serve
        .call(
            Method::POST,
            &format!("/{DB}/_bulk_docs"),
            Some(json!({ "docs": docs })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let ddoc = json!({"views": {"by_n": {"map": MAP}}});
    let (s, b) = serve
        .call(Method::PUT, &format!("/{DB}/_design/app"), Some(ddoc))
        .await;
    assert_eq!(s, 201, "{b}");
    serve
}

/// The view's rows as id → (key, value), and its `total_rows`.
async fn rows(serve: &TestServe, query: &str) -> (BTreeMap<String, (Value, Value)>, Value) {
    let (s, b) = serve
        .call(
            Method::GET,
            &format!("/{DB}/_design/app/_view/by_n{query}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let map = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                (r["key"].clone(), r["value"].clone()),
            )
        })
        .collect();
    (map, b["total_rows"].clone())
}

/// The ids whose rows differ between two answers (a new value: mapped again).
fn remapped(
    before: &BTreeMap<String, (Value, Value)>,
    after: &BTreeMap<String, (Value, Value)>,
) -> Vec<String> {
    let mut ids: Vec<String> = before
        .iter()
        .filter(|(id, row)| after.get(*id) != Some(row))
        .map(|(id, _)| id.clone())
        .collect();
    ids.extend(after.keys().filter(|id| !before.contains_key(*id)).cloned());
    ids
}

/// Stops the server and starts another on the same data directory.
async fn restart(serve: TestServe) -> TestServe {
    let TestServe { server, dir, http } = serve;
    server.shutdown().await;
    let server = Server::start(options(dir.path())).await.unwrap();
    TestServe { server, dir, http }
}

async fn put(serve: &TestServe, id: &str, body: Value) -> Value {
    let (s, b) = serve
        .call(Method::PUT, &format!("/{DB}/{id}"), Some(body))
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

async fn rev(serve: &TestServe, id: &str) -> String {
    let (s, b) = serve.call(Method::GET, &format!("/{DB}/{id}"), None).await;
    assert_eq!(s, 200, "{b}");
    b["_rev"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_survives_a_restart_and_a_write_maps_only_its_document() {
    let serve = setup().await;
    let (first, total) = rows(&serve, "").await;
    assert_eq!((first.len(), total), (30, json!(30)));
    let serve = restart(serve).await;
    // On disk: `stale=ok` answers from it without mapping anything.
    let (stale, _) = rows(&serve, "?stale=ok").await;
    assert_eq!(stale, first);
    let (again, _) = rows(&serve, "").await;
    assert_eq!(remapped(&first, &again), Vec::<String>::new());

    let r = rev(&serve, "d03").await;
    put(&serve, "d03", json!({"_rev": r, "n": 100})).await;
    let (after_write, total) = rows(&serve, "").await;
    assert_eq!(remapped(&first, &after_write), ["d03"]);
    assert_eq!(after_write["d03"].0, json!(100));
    assert_eq!(total, json!(30));

    let r = rev(&serve, "d04").await;
    let (s, b) = serve
        .call(Method::DELETE, &format!("/{DB}/d04?rev={r}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (after_delete, total) = rows(&serve, "").await;
    assert_eq!(remapped(&after_write, &after_delete), ["d04"]);
    assert!(!after_delete.contains_key("d04"));
    assert_eq!(total, json!(29));
    // The deleted document's rows are gone from key lookups too.
    let (by_key, _) = rows(&serve, "?key=4").await;
    assert_eq!(by_key.keys().collect::<Vec<_>>(), ["d11", "d18", "d25"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_design_document_change_that_leaves_the_view_alone_keeps_its_index() {
    let serve = setup().await;
    let (first, _) = rows(&serve, "").await;
    let r = rev(&serve, "_design/app").await;
    let ddoc = json!({"_rev": r, "views": {"by_n": {"map": MAP}, "other": {"map": "function (doc) { emit(1, 1); }"}},
                      "filters": {"f": "function () { return true; }"}});
    put(&serve, "_design/app", ddoc).await;
    let (kept, _) = rows(&serve, "").await;
    assert_eq!(remapped(&first, &kept), Vec::<String>::new());
    // A changed map function is a new index: every document is mapped again.
    let r = rev(&serve, "_design/app").await;
    let changed = MAP.replace("doc.n,", "doc.n ,");
    put(
        &serve,
        "_design/app",
        json!({"_rev": r, "views": {"by_n": {"map": changed}}}),
    )
    .await;
    let (rebuilt, _) = rows(&serve, "").await;
    assert_eq!(remapped(&first, &rebuilt).len(), 30);
    // The old index is no design document's any more: `_view_cleanup` drops it.
    let (s, b) = serve
        .call(
            Method::POST,
            &format!("/{DB}/_view_cleanup"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let (after_cleanup, _) = rows(&serve, "?stale=ok").await;
    assert_eq!(after_cleanup, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_seq_is_behind_its_rows_resumes_to_the_right_rows() {
    let serve = setup().await;
    let (first, _) = rows(&serve, "?descending=true").await;
    let TestServe { server, dir, http } = serve;
    server.shutdown().await;
    // What a crash between two steps would leave if the seq were written alone: rows
    // newer than the seq. Put the seq back to 0 and let the server resume.
    {
        let db = settee_store::Database::open(dir.path().join("data").join(DB)).unwrap();
        let ddoc = db
            .get("_design/app", &settee_store::GetOptions::default())
            .unwrap();
        let index = db
            .view_index(&settee_store::view_signature(&ddoc, "by_n").unwrap())
            .unwrap();
        let state = index.state().unwrap();
        assert_eq!(state.rows, 30);
        assert!(index.update(state.seq, Vec::new(), 0).unwrap());
    }
    let server = Server::start(options(dir.path())).await.unwrap();
    let serve = TestServe { server, dir, http };
    let (resumed, total) = rows(&serve, "?descending=true").await;
    assert_eq!(total, json!(30));
    // Every document was mapped again (new values), each still has exactly one row, with
    // its key.
    assert_eq!(remapped(&first, &resumed).len(), 30);
    let keys = |m: &BTreeMap<String, (Value, Value)>| -> Vec<(String, Value)> {
        m.iter()
            .map(|(id, (k, _))| (id.clone(), k.clone()))
            .collect()
    };
    assert_eq!(keys(&resumed), keys(&first));
}
