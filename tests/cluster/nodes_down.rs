//! A node goes down in the middle of a run. The node the client talks to: the run retries,
//! then fails cleanly (an error, the store whole, the checkpoint not ahead of the data), and
//! the next run, once the node is back, completes without fetching anything twice. Another
//! node: the cluster answers from the copies left, and the run completes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use settee::replicate::{ReplicateOptions, Replication, RetryPolicy};
use settee_testkit::cluster::Cluster;
use settee_testkit::http::Request;

use super::{
    assert_same_leaves, create, device_writes, fetched, remote, status, Exchange, OnRequest,
    Recorder,
};

/// Stops node `k` of `cluster` (waiting until it is gone) just before the `nth` request
/// that `is_cue` picks goes on, once.
fn stop_node_at(
    cluster: &Arc<Cluster>,
    k: usize,
    nth: usize,
    is_cue: fn(&Request) -> bool,
) -> OnRequest {
    let cluster = cluster.clone();
    let seen = AtomicUsize::new(0);
    Box::new(move |req| {
        if is_cue(req) && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            // The proxy's task waits for the node to be gone, so this very request finds
            // it down (block_in_place: the wait is a blocking process and a port poll).
            tokio::task::block_in_place(|| cluster.stop_node(k));
        }
        None
    })
}

fn is_bulk_get(req: &Request) -> bool {
    req.method == "POST" && req.path().ends_with("/_bulk_get")
}

fn is_bulk_docs(req: &Request) -> bool {
    req.method == "POST" && req.path().ends_with("/_bulk_docs")
}

/// Documents in `local` (none are deleted in these tests).
async fn count(local: &settee::Local) -> usize {
    use settee::Documents as _;
    local
        .all_docs(&Default::default())
        .await
        .unwrap()
        .rows
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_node_down_mid_pull_fails_the_run_cleanly_and_the_next_run_completes() {
    let test = "the_clients_node_down_mid_pull";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let cluster = Arc::new(cluster);
    let (n1, n2) = (cluster.node(1).clone(), cluster.node(2).clone());
    create(&n1).await;
    device_writes(&n2, "d", 600);
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let via1 = Recorder::start(&n1, stop_node_at(&cluster, 1, 3, is_bulk_get)).await;
    let opts = ReplicateOptions {
        batch_size: 100,
        // Few and short retries: node 1 stays down longer than they last.
        retry: RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        },
        ..Default::default()
    };
    let run = || {
        Replication::new(
            remote(&via1.server).to_peer(),
            local.to_peer(),
            opts.clone(),
        )
        .run()
    };
    let failed = run().await;
    let before = count(&local).await;
    eprintln!("{test}: the run with node 1 gone: {failed:?}; {before} documents pulled");
    assert!(failed.is_err(), "the run ended well with its node gone");
    assert!(before < 600, "node 1 went down after the pull ended");
    let first_fetched = fetched(&via1.take());
    assert!(
        first_fetched >= before,
        "{before} documents written of {first_fetched} fetched"
    );

    cluster.restart_node(1);
    let done = run().await.unwrap();
    assert!(done.ok && done.doc_failures.is_empty(), "{done:?}");
    assert_eq!(done.stats.docs_written as usize, 600 - before);
    assert_eq!(
        fetched(&via1.take()),
        600 - before,
        "a document already pulled was fetched again"
    );
    assert_same_leaves(&local, &remote(&n2), 600).await;
    assert_eq!(status(&local, &remote(&n1)).await, (0, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_down_mid_sync_the_run_completes() {
    let test = "another_node_down_mid_sync";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let cluster = Arc::new(cluster);
    let (n1, n2) = (cluster.node(1).clone(), cluster.node(2).clone());
    create(&n1).await;
    device_writes(&n2, "theirs", 300);
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    for chunk in 0..6 {
        let docs = (0..100)
            .map(|i| json!({"_id": format!("mine-{:04}", chunk * 100 + i), "n": i}))
            .collect();
        use settee::Documents as _;
        local.bulk_docs(docs).await.unwrap();
    }
    // Node 3 goes while the push writes (its third `_bulk_docs`) and the pull reads.
    let via1 = Recorder::start(&n1, stop_node_at(&cluster, 3, 3, is_bulk_docs)).await;
    let opts = ReplicateOptions {
        batch_size: 100,
        ..Default::default()
    };
    let s = settee::replicate::sync(
        local.to_peer(),
        remote(&via1.server).to_peer(),
        opts,
        None,
        Default::default(),
    )
    .await
    .unwrap();
    let exchanges = via1.take();
    assert!(
        exchanges
            .iter()
            .filter(|e| e.path.ends_with("/_bulk_docs"))
            .count()
            >= 3,
        "the push ended before node 3 went down"
    );
    assert!(s.push.ok && s.push.doc_failures.is_empty(), "{:?}", s.push);
    assert!(s.pull.ok && s.pull.doc_failures.is_empty(), "{:?}", s.pull);
    assert_eq!(s.push.stats.docs_written, 600);
    assert_eq!(s.pull.stats.docs_written, 300);
    // The pull reads the other device's documents, each once. The push may read back some
    // of its own just-written revisions (`open_revs`), when the copy that answered its
    // confirming `_revs_diff` lacked them while node 3 was going down: those reads are the
    // push's check, never a `_bulk_get` of the pull.
    for e in &exchanges {
        let own = e
            .fetched
            .iter()
            .filter(|id| id.starts_with("mine-"))
            .count();
        assert!(
            own == 0 || e.method == "GET",
            "the pull fetched our own documents: {e:?}"
        );
    }
    let pulled: Vec<Exchange> = exchanges
        .iter()
        .map(|e| Exchange {
            fetched: e
                .fetched
                .iter()
                .filter(|id| id.starts_with("theirs-"))
                .cloned()
                .collect(),
            ..e.clone()
        })
        .collect();
    assert_eq!(fetched(&pulled), 300);
    assert_same_leaves(&local, &remote(&n2), 900).await;
    assert_eq!(status(&local, &remote(&n1)).await, (0, Some(0)));
}
