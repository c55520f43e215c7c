//! The replicator against a fake source that answers `_changes` the way a server whose feed
//! is not a snapshot can (pouchdb-server computes `last_seq` after reading its rows): an
//! empty page whose `last_seq` is past a row it did not return. No real server can be made
//! to do that on demand; the replication must still get the row.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use settee_couch::RemoteDb;
use settee_replicate::{Filter, ReplicateOptions, Replication};
use settee_store::Database;
use settee_testkit::http::{self, Reply};

const REV_A: &str = "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const REV_B: &str = "1-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn row(id: &str, rev: &str, seq: &str) -> Value {
    json!({"seq": seq, "id": id, "changes": [{"rev": rev}]})
}

fn doc(id: &str, rev: &str) -> Value {
    let hash = &rev[2..];
    json!({"_id": id, "_rev": rev, "_revisions": {"start": 1, "ids": [hash]}, "v": id})
}

/// A source database `db` holding `a` (seq 1) and `b` (seq 2). Its feed from seq 1 first
/// answers an empty page ending at seq 3 (as if `b` were being written while it read),
/// and `b` only from the second request on. `_local` documents are kept.
async fn flaky_source() -> String {
    let locals: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let reads_after_a = Arc::new(Mutex::new(0u32));
    let (url, _) = http::serve(move |req| {
        let (locals, reads_after_a) = (locals.clone(), reads_after_a.clone());
        Box::pin(async move {
            let path = req.path().to_owned();
            if path == "/db" {
                return Reply::json(
                    200,
                    &json!({"db_name": "db", "doc_count": 2, "doc_del_count": 0, "update_seq": "3"}),
                );
            }
            if let Some(id) = path.strip_prefix("/db/_local/") {
                let mut locals = locals.lock().unwrap();
                return match req.method.as_str() {
                    "GET" => match locals.get(id) {
                        Some(doc) => Reply::json(200, doc),
                        None => Reply::json(404, &json!({"error": "not_found", "reason": "missing"})),
                    },
                    _ => {
                        let mut doc: Value = serde_json::from_slice(&req.body).unwrap();
                        let n = locals
                            .get(id)
                            .and_then(|d| d["_rev"].as_str())
                            .and_then(|r| r[2..].parse::<u64>().ok())
                            .unwrap_or(0);
                        let rev = format!("0-{}", n + 1);
                        doc["_id"] = json!(format!("_local/{id}"));
                        doc["_rev"] = json!(rev);
                        locals.insert(id.to_owned(), doc);
                        Reply::json(201, &json!({"ok": true, "id": format!("_local/{id}"), "rev": rev}))
                    }
                };
            }
            if path == "/db/_bulk_get" {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let results: Vec<Value> = body["docs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let id = r["id"].as_str().unwrap();
                        let rev = if id == "a" { REV_A } else { REV_B };
                        json!({"id": id, "docs": [{"ok": doc(id, rev)}]})
                    })
                    .collect();
                return Reply::json(200, &json!({ "results": results }));
            }
            if path == "/db/_changes" {
                let since = req.query("since").unwrap_or_else(|| "0".into());
                let longpoll = req.query("feed").as_deref() == Some("longpoll");
                let page = match since.as_str() {
                    "0" => json!({"results": [row("a", REV_A, "1")], "last_seq": "1"}),
                    "1" => {
                        let mut n = reads_after_a.lock().unwrap();
                        *n += 1;
                        if *n == 1 {
                            json!({"results": [], "last_seq": "3"})
                        } else {
                            json!({"results": [row("b", REV_B, "2")], "last_seq": "2"})
                        }
                    }
                    _ => {
                        if longpoll {
                            // A longpoll that times out (shortened: nothing arrives).
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        json!({"results": [], "last_seq": "3"})
                    }
                };
                return Reply::json(200, &page);
            }
            Reply::json(404, &json!({"error": "not_found", "reason": path}))
        })
    })
    .await;
    format!("{url}/db")
}

/// The target's checkpoint of `rep`: its `source_last_seq` (null before the first).
async fn checkpoint(rep: &Replication<RemoteDb, Database>, target: &Database) -> Value {
    let id = rep.replication_id().await.unwrap();
    target
        .get_local(&id)
        .map(|log| log["source_last_seq"].clone())
        .unwrap_or(Value::Null)
}

/// Runs a continuous replication of the flaky source until `b` is on the target and the
/// target's checkpoint is `end`, then stops it; the checkpoint must still be `end`.
async fn live_until_b_arrives(filter: Filter, end: Value) {
    let dir = tempfile::tempdir().unwrap();
    let target = Database::open(dir.path().join("t")).unwrap();
    let source = RemoteDb::from_url(&flaky_source().await).unwrap();
    let opts = ReplicateOptions {
        continuous: true,
        filter,
        checkpoint_interval: Duration::ZERO,
        longpoll: Duration::from_millis(100),
        ..Default::default()
    };
    let rep = Replication::new(source, target.clone(), opts);
    let handle = rep.clone().spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let arrived = target.get("b", &Default::default()).is_ok();
        let seq = checkpoint(&rep, &target).await;
        if arrived && seq == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b arrived: {arrived}, checkpoint {seq} (an empty page's last_seq taken past b \
             leaves b behind for good)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.cancel();
    handle.finish().await.unwrap();
    assert_eq!(target.get("a", &Default::default()).unwrap()["v"], "a");
    assert_eq!(checkpoint(&rep, &target).await, end);
}

#[tokio::test]
async fn an_empty_page_past_an_unseen_row_does_not_skip_it_in_continuous_mode() {
    // Unfiltered, an empty page moves nothing: the checkpoint is b's row.
    live_until_b_arrives(Filter::All, json!("2")).await;
}

#[tokio::test]
async fn a_filtered_empty_page_is_read_again_before_its_last_seq_is_taken() {
    // Filtered, a second empty read confirms the end: the rows left out are not read again.
    live_until_b_arrives(Filter::DocIds(vec!["a".into(), "b".into()]), json!("3")).await;
}

#[tokio::test]
async fn a_one_shot_run_checkpoints_only_what_it_saw() {
    // (filter, per run: revisions written and the checkpoint after it)
    let cases = [
        // Unfiltered, the run ends on the empty page without moving past it; the next run
        // reads b from where the first stopped.
        (Filter::All, vec![(1, json!("1")), (1, json!("2"))]),
        // Filtered, the empty page is read again (b is there now) and its end confirmed.
        (
            Filter::DocIds(vec!["a".into(), "b".into()]),
            vec![(2, json!("3")), (0, json!("3"))],
        ),
    ];
    for (filter, runs) in cases {
        let dir = tempfile::tempdir().unwrap();
        let target = Database::open(dir.path().join("t")).unwrap();
        let source = RemoteDb::from_url(&flaky_source().await).unwrap();
        let opts = ReplicateOptions {
            filter: filter.clone(),
            ..Default::default()
        };
        let rep = Replication::new(source, target.clone(), opts);
        for (written, end) in runs {
            let summary = rep.clone().run().await.unwrap();
            assert_eq!(summary.stats.docs_written, written, "{filter:?}");
            assert_eq!(checkpoint(&rep, &target).await, end, "{filter:?}");
        }
        assert!(target.get("b", &Default::default()).is_ok(), "{filter:?}");
    }
}
