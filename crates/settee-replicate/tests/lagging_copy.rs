//! A push to a target whose `_revs_diff` lags behind its writes for a moment, as a CouchDB
//! cluster's does: it answers from the first copy of each shard range to reply, and a write
//! is acknowledged once a quorum of copies has it, so the copy outside the quorum can call a
//! revision that was just written missing. The write's confirmation asks again after a
//! pause instead of reading every such document's leaves (one request per document).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use settee_couch::RemoteDb;
use settee_replicate::Replication;
use settee_store::Database;
use settee_testkit::http::{self, Reply, Rule};
use settee_testkit::TestDb;

#[tokio::test]
async fn a_lagging_revs_diff_after_a_write_is_asked_again_not_read_document_by_document() {
    let target = TestDb::create("lagging-copy");
    let server = target.server().clone();
    // The first `_revs_diff` after each `_bulk_docs` calls every revision it is asked about
    // missing (the lagging copy answered first); later ones are the server's own answer.
    let lagging = Arc::new(AtomicBool::new(false));
    let (proxy_url, log) = http::proxy(server.url(), {
        let lagging = lagging.clone();
        move |req| {
            if req.path().ends_with("/_bulk_docs") {
                lagging.store(true, Ordering::SeqCst);
            } else if req.path().ends_with("/_revs_diff") && lagging.swap(false, Ordering::SeqCst) {
                let asked: Map<String, Value> = serde_json::from_slice(&req.body).unwrap();
                let answer: Map<String, Value> = asked
                    .into_iter()
                    .map(|(id, revs)| (id, json!({ "missing": revs })))
                    .collect();
                return Rule::Answer(Reply::json(200, &Value::Object(answer)));
            }
            Rule::Forward
        }
    })
    .await;
    let (user, password) = server.credentials().unwrap();
    let url = format!(
        "{}/{}",
        proxy_url.replacen("://", &format!("://{user}:{password}@"), 1),
        target.name()
    );

    let dir = tempfile::tempdir().unwrap();
    let source = Database::open(dir.path().join("source")).unwrap();
    let docs: Vec<Value> = (0..60)
        .map(|i| json!({"_id": format!("note-{i:03}"), "n": i}))
        .collect();
    source.bulk_docs(docs, true).unwrap();

    let opts = settee_replicate::ReplicateOptions {
        batch_size: 20,
        ..Default::default()
    };
    let summary = Replication::new(source, RemoteDb::from_url(&url).unwrap(), opts)
        .run()
        .await
        .unwrap();
    assert!(summary.ok && summary.doc_failures.is_empty(), "{summary:?}");
    assert_eq!(summary.stats.docs_written, 60);

    let requests = log.lock().unwrap();
    let bulk_docs = requests
        .iter()
        .filter(|r| r.path().ends_with("/_bulk_docs"))
        .count();
    assert!(bulk_docs >= 3, "one write per batch, each confirmed");
    let leaves_read = requests
        .iter()
        .filter(|r| r.method == "GET" && r.query("open_revs").is_some())
        .count();
    assert_eq!(
        leaves_read, 0,
        "a lagging answer was checked document by document"
    );
    let (status, body) = server.raw_request("GET", &format!("/{}", target.name()), None);
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["doc_count"], 60);
}
