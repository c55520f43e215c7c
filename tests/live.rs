//! Live sync against a server of the test's own, which the test stops for 30 seconds while
//! the application keeps writing locally, then starts again: everything arrives without
//! restarting the replicator.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use settee::replicate::{Event, Peer, ReplicateOptions, RetryPolicy};
use settee_testkit::faults::FaultProxy;
use settee_testkit::wait::wait_for;
use settee_testkit::{TestDb, TestServer};

use common::{has, LiveSyncTask};

/// How long a change may take to cross: generous, to detect a hang on a loaded machine, never
/// to time the sync (how long it took is printed).
const ARRIVES: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sync_survives_the_server_going_away_for_30_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::OwnServer::start(&dir.path().join("server"));
    let remote = settee::Remote::new(&format!("{}/live", server.url())).unwrap();
    remote.to_peer().create().await.unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();

    let retry = LiveSyncTask::outage_retry();
    let LiveSyncTask {
        task: sync,
        events: rx,
        cancel,
    } = LiveSyncTask::start(&local, &remote, retry);
    let events = LiveSyncTask::count_retries(rx);

    // A change on the server reaches the local store, and back.
    remote
        .put(json!({"_id": "from-server", "v": 1}))
        .await
        .unwrap();
    let took = wait_for(ARRIVES, "from-server locally", || {
        has(&local, "from-server")
    })
    .await;
    eprintln!("server -> local in {took:?}");
    local
        .put(json!({"_id": "from-local", "v": 1}))
        .await
        .unwrap();
    let took = wait_for(ARRIVES, "from-local on the server", || {
        has(&remote, "from-local")
    })
    .await;
    eprintln!("local -> server in {took:?}");

    // The server goes away for 30 seconds; the app keeps writing.
    server.stop();
    let outage = Instant::now();
    let mut written = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        local
            .put(json!({"_id": format!("offline-{written:03}"), "n": written}))
            .await
            .unwrap();
        written += 1;
        // The app's pace of writing, not synchronisation.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !has(&remote, "offline-000").await,
        "the server really was down"
    );
    server.restart();

    // Everything written offline arrives, without restarting the sync.
    let last = format!("offline-{:03}", written - 1);
    wait_for(ARRIVES, "the offline writes on the server", || {
        has(&remote, &last)
    })
    .await;
    for i in 0..written {
        assert!(
            has(&remote, &format!("offline-{i:03}")).await,
            "offline-{i:03} lost"
        );
    }
    // And the pull direction works again too.
    remote.put(json!({"_id": "after-restart"})).await.unwrap();
    wait_for(ARRIVES, "after-restart locally", || {
        has(&local, "after-restart")
    })
    .await;

    cancel.cancel();
    let summary = sync.await.unwrap().unwrap();
    assert!(summary.push.cancelled && summary.pull.cancelled);
    assert!(summary.push.stats.docs_written > written as u64);
    let retries = events.await.unwrap();
    assert!(retries > 0, "the outage was never noticed");
}

/// A live pull with nothing to pull loses its server (the network is cut) and gets it back:
/// it reports `Paused` again once caught up, so a caller showing "offline" learns that the
/// sync is back even though no document moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_direction_reports_paused_again_after_an_outage() {
    let server = TestServer::get();
    let name_db = TestDb::named("paused");
    let name = name_db.name();
    let direct = settee::Remote::new(&server.db_url_with_credentials(name)).unwrap();
    direct.to_peer().create().await.unwrap();
    let proxy = FaultProxy::start(server.url()).await;
    let via_proxy = server.via(&proxy.url()).db_url_with_credentials(name);
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    let opts = ReplicateOptions {
        continuous: true,
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retries: 4,
        },
        ..Default::default()
    };
    let mut handle = settee::replicate::Replication::new(
        settee::Remote::new(&via_proxy).unwrap().to_peer(),
        local.to_peer(),
        opts,
    )
    .spawn();
    async fn next_caught_up(handle: &mut settee::replicate::ReplicationHandle) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(30), handle.next_event())
                .await
                .unwrap_or_else(|_| panic!("no Paused with a count within 30 s; saw {seen:?}"))
                .expect("the replication ended");
            let done = matches!(
                e,
                Event::Paused {
                    pending: Some(_),
                    ..
                }
            );
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
    next_caught_up(&mut handle).await;
    proxy.set_refusing(true);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), handle.next_event()).await {
            Ok(Some(Event::Error { retrying: true, .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("the cut was not reported: {other:?}"),
        }
    }
    proxy.set_refusing(false);
    let seen = next_caught_up(&mut handle).await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Change { .. })),
        "nothing was to be pulled: {seen:?}"
    );
    handle.cancel();
    handle.finish().await.unwrap();
}
