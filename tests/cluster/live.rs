//! A live sync with a cluster while its nodes go and come back: another node first, then the
//! one the client talks to. Other devices keep writing through node 2 all along; the live
//! sync retries by itself and converges once its node is back, to `status` 0/0 and the same
//! leaves on both sides.

use std::time::Duration;

use serde_json::json;
use settee::Documents as _;
use settee_testkit::cluster::Cluster;
use settee_testkit::wait::wait_for;

use super::common::{has, LiveSyncTask};
use super::{assert_same_leaves, create, device_writes, remote, status};

/// How long a change may take to cross: generous, to detect a hang on a loaded machine,
/// never to time the sync.
const ARRIVES: Duration = Duration::from_secs(120);

/// Writes `n` notes `{prefix}-{i}` into `local`, one at a time as an app does.
async fn app_writes(local: &settee::Local, prefix: &str, n: usize) {
    for i in 0..n {
        local
            .put(json!({"_id": format!("{prefix}-{i:04}"), "n": i}))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sync_carries_on_when_its_node_comes_back() {
    let test = "a_live_sync_carries_on_when_its_node_comes_back";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let via1 = create(n1).await;
    let via2 = remote(n2);
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let retry = LiveSyncTask::outage_retry();
    let LiveSyncTask {
        task: sync,
        events: rx,
        cancel,
    } = LiveSyncTask::start(&local, &via1, retry);
    let events = LiveSyncTask::count_retries(rx);
    let mut total = 0;
    // Both ways, every node up; then with node 3 down, and back; then with node 1 down.
    for (round, down) in [(0, None), (1, Some(3)), (2, Some(1))] {
        if let Some(k) = down {
            cluster.stop_node(k);
        }
        app_writes(&local, &format!("mine{round}"), 20).await;
        device_writes(n2, &format!("theirs{round}"), 20);
        total += 40;
        if down == Some(1) {
            // The sync cannot reach its node; the app and the other device write on.
            cluster.restart_node(1);
        }
        let (last_mine, last_theirs) = (format!("mine{round}-0019"), format!("theirs{round}-0019"));
        let took = wait_for(ARRIVES, &format!("round {round} both ways"), || async {
            has(&via2, &last_mine).await && has(&local, &last_theirs).await
        })
        .await;
        eprintln!("{test}: round {round} (node {down:?} down) converged in {took:?}");
        if let Some(3) = down {
            cluster.restart_node(3);
        }
    }
    // Exact: 0/0 once the last writes' answers are in (the count is what the sync learned).
    wait_for(ARRIVES, "status 0/0", || async {
        status(&local, &via1).await == (0, Some(0))
    })
    .await;
    assert_same_leaves(&local, &via2, total).await;

    cancel.cancel();
    let summary = sync.await.unwrap().unwrap();
    assert!(summary.push.cancelled && summary.pull.cancelled);
    // Each side's 60 documents crossed. The push may write more (77 once): most likely the
    // revisions the other device wrote through node 2 while node 1 was down, which the
    // store pulled and then offered back, and which node 1's `_revs_diff`, asked right after
    // its restart, called missing because its own copies had not got them yet. Writing a
    // revision the cluster has is a no-op (`new_edits=false`); what counts is checked
    // above: the same leaves on both sides, and status 0/0.
    // FIXME(#24): confirm which revisions those are (a recording proxy on the push).
    assert!(summary.push.stats.docs_written >= 60, "{:?}", summary.push);
    assert_eq!(summary.pull.stats.docs_written, 60);
    let retries = events.await.unwrap();
    assert!(retries > 0, "node 1's outage was never noticed");
}
