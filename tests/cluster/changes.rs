//! `_changes` as a cluster answers it: each node reads the shards' copies it picks, so the
//! same database's feed comes from different nodes in different orders, with sequences that
//! name those copies and cannot be compared; a `since` that names a copy which went away is
//! mapped onto another copy, which may rewind it (to 0 at worst), so rows come again.
//! Settee keeps sequences opaque, carries its checkpoint from node to node, and counts on
//! `_revs_diff` to filter what it sees twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use settee::replicate::{ReplicateOptions, Replication, RetryPolicy, Summary};
use settee_testkit::cluster::Cluster;
use settee_testkit::http::{proxy, Reply, Rule};
use settee_testkit::{TestDb, TestServer};

use super::{assert_same_leaves, create, device_writes, fetched, remote, status, Recorder, DB};

/// One pull of `DB` from `node` into `local`, which must complete.
async fn pull(node: &TestServer, local: &settee::Local) -> Summary {
    let s = Replication::new(
        remote(node).to_peer(),
        local.to_peer(),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert!(s.ok && s.doc_failures.is_empty(), "{s:?}");
    s
}

/// The ids and last sequence of `DB`'s whole feed as `node` answers it.
fn feed(node: &TestServer) -> (Vec<String>, Value) {
    let (status, body) = node.raw_request("GET", &format!("/{DB}/_changes"), None);
    assert_eq!(status, 200, "{body}");
    let feed: Value = serde_json::from_str(&body).unwrap();
    let ids = feed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, feed["last_seq"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_via_node_1_resumes_via_node_2_from_its_checkpoint_and_loses_nothing() {
    let test = "a_pull_via_node_1_resumes_via_node_2";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    create(n1).await;
    device_writes(n2, "first", 300);

    // The premise, shown: the same rows from two nodes, each in its order, each with a
    // sequence of its own (which Settee never parses or compares).
    let ((ids1, seq1), (ids2, seq2)) = (feed(n1), feed(n2));
    eprintln!(
        "{test}: node 1 starts {:?} at {seq1}, node 2 starts {:?} at {seq2}",
        &ids1[..3],
        &ids2[..3]
    );
    let (mut sorted1, mut sorted2) = (ids1.clone(), ids2.clone());
    sorted1.sort();
    sorted2.sort();
    assert_eq!(sorted1, sorted2, "two nodes list different documents");

    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let first = pull(n1, &local).await;
    assert_eq!(first.stats.docs_written, 300);

    // Another device writes through node 3; the client now reaches the cluster at node 2,
    // with the checkpoint it got from node 1.
    device_writes(n3, "second", 200);
    let via2 = Recorder::plain(n2).await;
    let second = pull(&via2.server, &local).await;
    assert_eq!(
        second.replication_id, first.replication_id,
        "any node is the same database: one replication, one checkpoint"
    );
    assert_eq!(
        second.start_last_seq, first.end_last_seq,
        "the run via node 2 did not start from node 1's checkpoint"
    );
    assert_eq!(second.stats.docs_written, 200, "{:?}", second.stats);
    assert_eq!(
        fetched(&via2.take()),
        200,
        "only the new documents are fetched"
    );
    eprintln!(
        "{test}: the resumed pull read {} change rows",
        second.stats.changes_read
    );

    assert_same_leaves(&local, &remote(n2), 500).await;
    assert_eq!(status(&local, &remote(n1)).await, (0, Some(0)));
    assert_eq!(status(&local, &remote(n2)).await, (0, Some(0)));
    // The remote side of the checkpoint, written through node 1 or 2, answers from node 3.
    let (code, body) = n3.raw_request(
        "GET",
        &format!("/{DB}/_local/{}", second.replication_id),
        None,
    );
    assert_eq!(code, 200, "the checkpoint on the cluster: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_seen_again_after_a_rewound_since_are_filtered_and_status_stays_exact() {
    let test = "rows_seen_again_after_a_rewound_since";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    create(n1).await;
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let mut total = 0;

    // The client pulls via node 1 (whose feed reads node 1's own copies) right after a
    // write, and node 1 goes away before the cluster's internal replication has
    // checkpointed: resumed via node 2, the since names copies that are gone, and CouchDB
    // maps it onto node 2's copies as far back as its last internal checkpoint.
    let via1 = Recorder::plain(n1).await;
    device_writes(n2, "a", 400);
    total += 400;
    let s = pull(&via1.server, &local).await;
    assert_eq!(s.stats.docs_written, 400);
    assert_eq!(fetched(&via1.take()), 400);
    device_writes(n1, "b", 100);
    total += 100;
    let s = pull(&via1.server, &local).await;
    assert_eq!(s.stats.docs_written, 100);
    assert_eq!(fetched(&via1.take()), 100);
    cluster.stop_node(1);
    device_writes(n3, "c", 50);
    total += 50;
    let via2 = Recorder::plain(n2).await;
    let s = pull(&via2.server, &local).await;
    eprintln!(
        "{test}: with node 1 down, the pull via node 2 read {} rows for 50 new documents",
        s.stats.changes_read
    );
    assert_eq!(s.stats.docs_written, 50, "{:?}", s.stats);
    assert_eq!(
        fetched(&via2.take()),
        50,
        "a row seen again was fetched again"
    );
    assert_eq!(status(&local, &remote(n2)).await, (0, Some(0)));

    // Node 1 comes back; the client talks to it again, with node 2's sequence.
    cluster.restart_node(1);
    device_writes(n2, "d", 50);
    total += 50;
    let s = pull(&via1.server, &local).await;
    assert_eq!(s.stats.docs_written, 50, "{:?}", s.stats);
    assert_eq!(fetched(&via1.take()), 50);

    // The worst rewind CouchDB allows, every time: the proxy sends `since=0` for the pull's
    // first `_changes` (whether the cluster rewinds above depends on when its internal
    // replication last checkpointed, which a test cannot cue). Every row comes again;
    // `_revs_diff` says nothing is missing, so nothing is fetched.
    device_writes(n3, "e", 30);
    total += 30;
    let rewound = std::sync::atomic::AtomicBool::new(false);
    let rewinding = Recorder::start(
        n1,
        Box::new(move |req| {
            let is_changes = req.method == "GET" && req.path().ends_with("/_changes");
            if !is_changes || rewound.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            let mut edited = req.clone();
            edited.target = rewind_since(&req.target);
            Some(edited)
        }),
    )
    .await;
    let s = pull(&rewinding.server, &local).await;
    assert!(
        s.stats.changes_read >= total,
        "the rewind was not sent: {} rows read of {total}",
        s.stats.changes_read
    );
    assert_eq!(s.stats.docs_written, 30, "{:?}", s.stats);
    assert_eq!(
        fetched(&rewinding.take()),
        30,
        "rows seen again were fetched"
    );
    assert_same_leaves(&local, &remote(n1), total as usize).await;
    assert_eq!(status(&local, &remote(n1)).await, (0, Some(0)));
    assert_eq!(status(&local, &remote(n3)).await, (0, Some(0)));
}

/// `target` (a `_changes` path and query) with `since=0`.
fn rewind_since(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "since")
        .collect();
    params.push(("since".into(), "0".into()));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{query}")
}

/// Issue 24: a cluster answers a `_changes` whose since names a node that has just gone down
/// with `412 nodedown` ("progress not possible") until it has mapped that since onto other
/// copies, moments later. The pull retries it and completes; it used to end the run (the
/// test above met it about one run in two). A proxy gives that answer to the first
/// `_changes`, so this needs no cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_24_a_412_nodedown_from_changes_is_retried() {
    let server = TestServer::get();
    let db = TestDb::create("nodedown");
    let body = json!({"docs": [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}]}).to_string();
    let (status, answer) =
        server.raw_request("POST", &format!("/{}/_bulk_docs", db.name()), Some(&body));
    assert_eq!(status, 201, "{answer}");
    let answered = Arc::new(AtomicBool::new(false));
    let once = answered.clone();
    let (url, _) = proxy(server.url(), move |req| {
        if req.path().ends_with("/_changes") && !once.swap(true, Ordering::SeqCst) {
            let nodedown = json!({"error": "nodedown", "reason": "progress not possible"});
            return Rule::Answer(Reply::json(412, &nodedown));
        }
        Rule::Forward
    })
    .await;
    let source = settee::Remote::new(&server.via(&url).db_url_with_credentials(db.name())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let opts = ReplicateOptions {
        retry: RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
        },
        ..Default::default()
    };
    let s = Replication::new(source.to_peer(), local.to_peer(), opts)
        .run()
        .await
        .unwrap();
    assert!(answered.load(Ordering::SeqCst), "the 412 was never sent");
    assert_eq!(s.stats.docs_written, 3, "{s:?}");
}
