//! Replication with `settee serve`: PouchDB 9 (node) pushes, pulls and syncs live with it,
//! and Settee's own replicator pushes and pulls through it; each side's documents are then
//! compared with the server's, leaf by leaf (`open_revs=all&revs=true`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use common::{assert_same_leaves, TestServe};
use serde_json::{json, Value};
use settee_replicate::{AnyPeer, ReplicateOptions, Replication};
use settee_store::{Database, GetOptions, OpenRevResult, OpenRevs};

/// What both seeds hold: plain, edited, deleted, conflicted (one branch deleted) and
/// attachment documents.
fn seed_docs(prefix: &str) -> (Vec<Value>, Vec<Value>) {
    let mut edits: Vec<Value> = (0..20)
        .map(|i| json!({"_id": format!("{prefix}-{i:02}"), "n": i}))
        .collect();
    edits.push(json!({"_id": format!("{prefix}-att"), "_attachments": {
        "a.txt": {"content_type": "text/plain", "data": "aGVsbG8gd29ybGQ="},
        "b.bin": {"content_type": "application/octet-stream", "data": "AAEC+v8="}}}));
    let replicated = vec![
        json!({"_id": format!("{prefix}-conflict"), "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}, "side": "b"}),
        json!({"_id": format!("{prefix}-conflict"), "_rev": "2-ccc", "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}, "side": "c"}),
        json!({"_id": format!("{prefix}-conflict"), "_rev": "3-ddd", "_revisions": {"start": 3, "ids": ["ddd", "bbb", "aaa"]}, "_deleted": true}),
        json!({"_id": format!("{prefix}-gone"), "_rev": "2-fff", "_revisions": {"start": 2, "ids": ["fff", "eee"]}, "_deleted": true}),
    ];
    (edits, replicated)
}

async fn compare_with_server(serve: &TestServe, db: &str, dump: &BTreeMap<String, Vec<Value>>) {
    let server_ids = serve.ids(db).await;
    let other_ids: Vec<String> = dump.keys().cloned().collect();
    assert_eq!(server_ids, other_ids, "{db}: document ids differ");
    for (id, leaves) in dump {
        assert_same_leaves(id, serve.leaves(db, id).await, leaves.clone(), false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pouchdb_replicates_both_ways_and_live_with_settee_serve() {
    let serve = TestServe::start().await;
    for db in ["push", "pull", "live"] {
        serve.create_db(db).await;
    }
    let (edits, replicated) = seed_docs("seeded");
    let (s, b) = serve
        .call(
            reqwest::Method::POST,
            "/pull/_bulk_docs",
            Some(json!({"docs": edits})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = serve
        .call(
            reqwest::Method::POST,
            "/pull/_bulk_docs",
            Some(json!({"docs": replicated, "new_edits": false})),
        )
        .await;
    assert_eq!((s, b), (201, json!([])));

    let cfg = json!({"url": serve.admin_url(), "push": "push", "pull": "pull", "live": "live"});
    let out = tokio::process::Command::new("node")
        .arg(common::node_script("pouchdb-sync.js"))
        .arg(cfg.to_string())
        .env("NODE_PATH", common::node_modules())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node must be installed (and scripts/node-deps.sh run) for this test");
    assert!(
        out.status.success(),
        "the PouchDB script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (scenario, db) in [("push", "push"), ("pull", "pull"), ("live", "live")] {
        let dump: BTreeMap<String, Vec<Value>> =
            serde_json::from_value(report[scenario].clone()).unwrap();
        assert!(
            dump.len() >= 23,
            "{scenario}: only {} documents",
            dump.len()
        );
        compare_with_server(&serve, db, &dump).await;
    }
    assert_eq!(report["events"]["push"]["doc_write_failures"], 0);
    // The conflicts made on both sides while live are on the server too.
    assert_eq!(serve.leaves("live", "live-edited").await.len(), 2);
    assert_eq!(serve.leaves("pull", "seeded-conflict").await.len(), 2);
}

/// Every leaf of every document of a local store.
fn store_dump(db: &Database) -> BTreeMap<String, Vec<Value>> {
    let ch = db.changes(&Default::default()).unwrap();
    let opts = GetOptions {
        revs: true,
        attachments: true,
        ..Default::default()
    };
    ch.results
        .iter()
        .map(|c| {
            let leaves = db
                .open_revs(&c.id, OpenRevs::All, &opts)
                .unwrap()
                .into_iter()
                .filter_map(|r| match r {
                    OpenRevResult::Ok(d) => Some(d),
                    OpenRevResult::Missing(_) => None,
                })
                .collect();
            (c.id.clone(), leaves)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settee_replicator_pushes_to_and_pulls_from_settee_serve() {
    let serve = TestServe::start().await;
    serve.create_db("target").await;
    let local_dir = tempfile::tempdir().unwrap();
    let local = Database::open(local_dir.path().join("local")).unwrap();
    let (edits, replicated) = seed_docs("local");
    local.bulk_docs(edits, true).unwrap();
    local.bulk_docs(replicated, false).unwrap();

    let remote = AnyPeer::open(&format!("{}/target", serve.admin_url())).unwrap();
    let push = Replication::new(
        AnyPeer::Local(local.clone()),
        remote.clone(),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(push.stats.doc_write_failures, 0);
    compare_with_server(&serve, "target", &store_dump(&local)).await;

    // A second store pulls it all back: the same leaves again.
    let back = Database::open(local_dir.path().join("back")).unwrap();
    let pull = Replication::new(
        remote.clone(),
        AnyPeer::Local(back.clone()),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(pull.stats.doc_write_failures, 0);
    compare_with_server(&serve, "target", &store_dump(&back)).await;

    // An edit on the server arrives on the next pull, and the checkpoint on the server
    // (a `_local` document) makes the second pull start where the first stopped.
    let (s, b) = serve
        .call(reqwest::Method::PUT, "/target/later", Some(json!({"v": 1})))
        .await;
    assert_eq!(s, 201, "{b}");
    let again = Replication::new(
        remote,
        AnyPeer::Local(back.clone()),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(again.stats.docs_written, 1);
    compare_with_server(&serve, "target", &store_dump(&back)).await;
}
