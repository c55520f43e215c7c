//! Coming back, as an offline-first user expects (issue 19): a live sync notices that the
//! server is back by probing it, not by waiting out a backoff that grew during the outage;
//! `retry_now()` cuts a long wait short; a server's `Retry-After` is kept; a one-shot sync
//! with a deadline stops cleanly with its checkpoint and says what is left, and the next run
//! resumes from there. Against the shared test server (Apache CouchDB), through proxies.
//!
//! Waits use generous deadlines (`wait_for`) and the assertions are on events and counts:
//! which reason ended a wait (`Event::Retrying`), what the checkpoint covers, what was read
//! again. None asserts a duration.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use settee::replicate::{Direction, Event, ReplicateOptions, RetryPolicy, RetryReason};
use settee_testkit::faults::FaultProxy;
use settee_testkit::http::{Reply, Rule};
use settee_testkit::wait::wait_for;
use settee_testkit::TestDb;

use common::{has, LiveSyncTask};

/// Reads `events` until one matches `pred`; fails after `deadline`, showing what it saw.
async fn next_matching<S: Stream<Item = Event> + Unpin>(
    events: &mut S,
    deadline: Duration,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {deadline:?}; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("the replication ended before {what}; saw {seen:#?}"));
        let done = pred(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

/// Every document's winning revision, from `_all_docs`.
async fn revs(db: &(impl settee::Documents + crate::common::AsPeer)) -> BTreeMap<String, String> {
    db.all_docs(&Default::default())
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| {
            (
                r.key.clone(),
                r.value.as_ref().unwrap()["rev"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

/// The test database's URL with credentials, through a proxy at `proxy` (a base URL).
fn via(db: &TestDb, proxy: &str) -> String {
    db.server().via(proxy).db_url_with_credentials(db.name())
}

/// A proxy that answers every POST (`_bulk_docs`, `_revs_diff`...) with 503 while `busy` is
/// set, with `Retry-After: retry_after` if given, and forwards everything else.
async fn busy_proxy(db: &TestDb, busy: Arc<AtomicBool>, retry_after: Option<u64>) -> String {
    let (proxy, _log) = settee_testkit::http::proxy(db.server().url(), move |req| {
        if busy.load(Ordering::SeqCst) && req.method == "POST" {
            let mut reply = Reply::json(
                503,
                &json!({"error": "service_unavailable", "reason": "busy"}),
            );
            if let Some(secs) = retry_after {
                reply.headers.push(("Retry-After".into(), secs.to_string()));
            }
            Rule::Answer(reply)
        } else {
            Rule::Forward
        }
    })
    .await;
    proxy
}

fn local_store(dir: &tempfile::TempDir, name: &str) -> settee::Local {
    settee::Local::open(dir.path().join(name)).unwrap()
}

/// How long test (a)'s outage lasts beyond the point where both backoffs have grown past
/// 5 s: `SETTEE_COMING_BACK_OUTAGE_SECS` (0 by default; `bench/coming-back.sh` sets 300 and
/// records the time from the server's return to the next batch, printed by the test).
fn extra_outage() -> Duration {
    let secs = std::env::var("SETTEE_COMING_BACK_OUTAGE_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .expect("SETTEE_COMING_BACK_OUTAGE_SECS: seconds")
        })
        .unwrap_or(0);
    Duration::from_secs(secs)
}

/// (a) A live sync through an outage, with a backoff of 10-20 s at the first failure growing
/// to 60 s: when the server comes back, a probe notices and both directions retry at once:
/// the first `Retrying` after the return says `PeerAnswered`, not `Backoff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_live_sync_comes_back_by_probe_not_by_backoff() {
    let db = TestDb::create("coming-back-probe");
    let proxy = FaultProxy::start(db.server().url()).await;
    let remote = settee::Remote::new(&via(&db, &proxy.url())).unwrap();
    let direct = settee::Remote::new(&db.url_with_credentials()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = local_store(&dir, "local");

    // Every wait is long from the first failure on (10-20 s, then up to 60 s), so a wait
    // that ended within the test's time after the server's return ended by a probe. (With
    // a short first wait, a wait could end by its backoff just as the server returns, and
    // the test would fail without a fault.)
    let retry = RetryPolicy {
        initial_delay: Duration::from_secs(20),
        max_delay: Duration::from_secs(60),
        max_retries: 4,
    };
    let LiveSyncTask {
        task: sync,
        events: mut rx,
        cancel,
    } = LiveSyncTask::start(&local, &remote, retry);
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let collector = tokio::spawn({
        let events = events.clone();
        async move {
            while let Some(e) = rx.recv().await {
                events.lock().unwrap().push(e);
            }
        }
    });
    let caught_up = |dir: Direction| {
        let events = events.clone();
        move || {
            let ok = events.lock().unwrap().iter().any(
                |e| matches!(e, Event::Paused { direction, pending: Some(_) } if *direction == dir),
            );
            async move { ok }
        }
    };
    wait_for(
        Duration::from_secs(60),
        "the push to catch up",
        caught_up(Direction::Push),
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "the pull to catch up",
        caught_up(Direction::Pull),
    )
    .await;

    // The server goes away; the app writes meanwhile, so both directions fail.
    proxy.set_refusing(true);
    local.put(json!({"_id": "written-offline"})).await.unwrap();
    // Until each direction's backoff has grown well past 2 s (probes fail meanwhile).
    let grown = |dir: Direction| {
        let events = events.clone();
        move || {
            let ok = events.lock().unwrap().iter().any(|e| {
                matches!(e, Event::Error { direction, retrying: true, retry_in_ms: Some(ms), .. }
                    if *direction == dir && *ms >= 5000)
            });
            async move { ok }
        }
    };
    wait_for(
        Duration::from_secs(120),
        "the push's backoff to grow",
        grown(Direction::Push),
    )
    .await;
    wait_for(
        Duration::from_secs(120),
        "the pull's backoff to grow",
        grown(Direction::Pull),
    )
    .await;
    let extra = extra_outage();
    if !extra.is_zero() {
        eprintln!("coming-back: outage continues for {extra:?}");
        // The length of the outage under measurement, not a wait for something to happen.
        tokio::time::sleep(extra).await;
    }
    assert!(
        !has(&direct, "written-offline").await,
        "the server was cut off"
    );
    let mark = events.lock().unwrap().len();

    // The server is back: written on it directly, and the cut-off proxy opens again.
    direct
        .put(json!({"_id": "written-on-server"}))
        .await
        .unwrap();
    proxy.set_refusing(false);
    let back = Instant::now();
    // The measurement (printed, never asserted): from the server's return to the first
    // batch each direction writes.
    let mut took = BTreeMap::new();
    wait_for(
        Duration::from_secs(120),
        "a batch in each direction",
        || {
            let seen = events.lock().unwrap()[mark..]
                .iter()
                .filter_map(|e| match e {
                    Event::Change { direction, .. } => Some(format!("{direction:?}")),
                    _ => None,
                })
                .collect::<Vec<_>>();
            for d in seen {
                took.entry(d).or_insert_with(|| back.elapsed());
            }
            let done = took.len() == 2;
            async move { done }
        },
    )
    .await;
    let outage_secs = extra.as_secs();
    eprintln!("coming-back: outage {outage_secs}s+, server back -> next batch: {took:?}");
    wait_for(
        Duration::from_secs(120),
        "the offline write on the server",
        || has(&direct, "written-offline"),
    )
    .await;
    wait_for(
        Duration::from_secs(120),
        "the server's write locally",
        || has(&local, "written-on-server"),
    )
    .await;

    let after: Vec<Event> = events.lock().unwrap()[mark..].to_vec();
    for dir in [Direction::Push, Direction::Pull] {
        let first = after.iter().find_map(|e| match e {
            Event::Retrying { direction, reason } if *direction == dir => Some(*reason),
            _ => None,
        });
        assert_eq!(
            first,
            Some(RetryReason::PeerAnswered),
            "{dir:?} came back by a probe; events after the return: {after:#?}"
        );
    }
    cancel.cancel();
    let summary = sync.await.unwrap().unwrap();
    assert!(summary.push.cancelled && summary.pull.cancelled);
    collector.await.unwrap();
    assert_eq!(revs(&local).await, revs(&direct).await);
}

/// (b) `Syncing::retry_now()` ends a 30-60 s wait at once: the server answered the push's
/// writes with 503 (so no probe ends the wait), it is fine again, and the app says the
/// network is back. The wait ends `Asked`, and the note arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_retry_now_cuts_a_long_backoff_short() {
    let db = TestDb::create("coming-back-retry-now");
    let busy = Arc::new(AtomicBool::new(true));
    let proxy = busy_proxy(&db, busy.clone(), None).await;
    let remote = settee::Remote::new(&via(&db, &proxy)).unwrap();
    let direct = settee::Remote::new(&db.url_with_credentials()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = local_store(&dir, "local");
    local.put(json!({"_id": "note"})).await.unwrap();

    let mut syncing = local.sync(
        &remote,
        ReplicateOptions {
            continuous: true,
            retry: RetryPolicy {
                initial_delay: Duration::from_secs(60),
                max_delay: Duration::from_secs(60),
                max_retries: 4,
            },
            ..Default::default()
        },
    );
    let seen = next_matching(
        &mut syncing,
        Duration::from_secs(60),
        "the push's 503",
        |e| {
            matches!(
                e,
                Event::Error {
                    direction: Direction::Push,
                    retrying: true,
                    ..
                }
            )
        },
    )
    .await;
    let Some(Event::Error { retry_in_ms, .. }) = seen.last() else {
        unreachable!()
    };
    assert!(retry_in_ms.unwrap() >= 30_000, "{seen:#?}");

    busy.store(false, Ordering::SeqCst);
    let was = syncing.retry_now();
    assert!(was, "the push was waiting: {seen:#?}");
    let seen = next_matching(&mut syncing, Duration::from_secs(120), "the retry", |e| {
        matches!(
            e,
            Event::Retrying {
                direction: Direction::Push,
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(
            seen.last(),
            Some(Event::Retrying {
                reason: RetryReason::Asked,
                ..
            })
        ),
        "{seen:#?}"
    );
    wait_for(Duration::from_secs(60), "the note on the server", || {
        has(&direct, "note")
    })
    .await;
    syncing.cancel();
    syncing.finish().await.unwrap();
}

/// (d) A 503 with `Retry-After: 4` keeps its wait although the backoff is 100 ms: the retry
/// is announced no sooner than the server asked, ends by `Backoff` (a server error is not
/// probed: the proxy sees no `HEAD`), and the push then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_retry_after_of_a_503_is_kept() {
    let db = TestDb::create("coming-back-retry-after");
    let busy = Arc::new(AtomicBool::new(true));
    let heads = Arc::new(AtomicUsize::new(0));
    let (proxy, _log) = settee_testkit::http::proxy(db.server().url(), {
        let (busy, heads) = (busy.clone(), heads.clone());
        move |req| {
            if req.method == "HEAD" {
                heads.fetch_add(1, Ordering::SeqCst);
            }
            if req.method == "POST" && busy.swap(false, Ordering::SeqCst) {
                let mut reply = Reply::json(
                    503,
                    &json!({"error": "service_unavailable", "reason": "busy"}),
                );
                reply.headers.push(("Retry-After".into(), "4".into()));
                Rule::Answer(reply)
            } else {
                Rule::Forward
            }
        }
    })
    .await;
    // One attempt per request, so that the replicator sees the 503 (the client's own
    // retries would wait out this Retry-After too).
    let remote = settee::Remote::from_couch(
        settee::couch::RemoteDb::from_url(&via(&db, &proxy))
            .unwrap()
            .with_retry(settee::couch::RetryPolicy::none()),
    );
    let dir = tempfile::tempdir().unwrap();
    let local = local_store(&dir, "local");
    for i in 0..5 {
        local.put(json!({"_id": format!("d{i}")})).await.unwrap();
    }
    let mut push = settee::replicate::Replication::new(
        local.to_peer(),
        remote.to_peer(),
        ReplicateOptions {
            retry: RetryPolicy {
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(60),
                max_retries: 4,
            },
            ..Default::default()
        },
    )
    .spawn();
    let seen = next_matching(&mut push, Duration::from_secs(60), "the end", |e| {
        matches!(e, Event::Complete { .. })
    })
    .await;
    let waits: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Error {
                retrying: true,
                retry_in_ms,
                ..
            } => *retry_in_ms,
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 1, "{seen:#?}");
    assert!(waits[0] >= 4000, "Retry-After: 4 was not kept: {seen:#?}");
    let reasons: Vec<RetryReason> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [RetryReason::Backoff], "{seen:#?}");
    assert_eq!(heads.load(Ordering::SeqCst), 0, "a server error was probed");
    let summary = push.finish().await.unwrap();
    assert_eq!(summary.stats.docs_written, 5);
}

/// (c) A push of 1,000 documents with a deadline, through a server that takes the first
/// five `_bulk_docs` and then answers 503 with a long Retry-After (a server that became
/// slow): the CLI stops at the deadline with exit code 0, says how many changes are left,
/// and checkpoints what is written. The next run resumes there: it reads only what the
/// checkpoint does not cover, and the trees end equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_deadline_stops_cleanly_and_the_next_run_resumes() {
    const DOCS: u64 = 1000;
    const BATCH: u64 = 50;
    const LET_THROUGH: usize = 5;
    let db = TestDb::create("coming-back-deadline");
    let bulk_docs = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicBool::new(true));
    let (proxy, _log) = settee_testkit::http::proxy(db.server().url(), {
        let (bulk_docs, slow) = (bulk_docs.clone(), slow.clone());
        move |req| {
            if req.path().ends_with("/_bulk_docs")
                && slow.load(Ordering::SeqCst)
                && bulk_docs.fetch_add(1, Ordering::SeqCst) >= LET_THROUGH
            {
                let mut reply = Reply::json(
                    503,
                    &json!({"error": "service_unavailable", "reason": "slow"}),
                );
                reply.headers.push(("Retry-After".into(), "3600".into()));
                Rule::Answer(reply)
            } else {
                Rule::Forward
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    {
        let local = settee::Local::open(&path).unwrap();
        for i in 0..DOCS {
            local
                .put(json!({"_id": format!("doc-{i:04}"), "n": i}))
                .await
                .unwrap();
        }
    }
    let (_, password) = db.server().credentials().unwrap();
    let slow_url = db.server().via(&proxy).db_url_with_user(db.name());
    let out = tokio::task::spawn_blocking({
        let (path, url) = (path.clone(), slow_url.clone());
        move || {
            common::settee_with_password()
                .command()
                .args(["replicate", path.to_str().unwrap(), &url])
                .args(["--batch-size", &BATCH.to_string(), "--deadline", "5"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(!stdout.contains(password) && !stderr.contains(password));
    let first: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(first["deadline_reached"], true, "{first}");
    assert_eq!(first["cancelled"], false, "{first}");
    let done = first["end_last_seq"].as_u64().unwrap();
    assert!(
        done > 0 && done % BATCH == 0 && done <= LET_THROUGH as u64 * BATCH,
        "{first}"
    );
    assert_eq!(first["pending"], DOCS - done, "{first}");
    assert!(
        stderr.contains(&format!(
            "stopped at the deadline, {} changes left",
            DOCS - done
        )),
        "{stderr}"
    );

    // The checkpoint covers exactly what the summary says, and it is on the server.
    let local = settee::Local::open(&path).unwrap();
    let direct = settee::Remote::new(&db.url_with_credentials()).unwrap();
    let rep_id = first["replication_id"].as_str().unwrap();
    let Some(store) = local.store() else {
        unreachable!()
    };
    let log = store.get_local(&format!("_local/{rep_id}")).unwrap();
    assert_eq!(log["source_last_seq"], json!(done), "{log}");
    let on_server = revs(&direct).await;
    for i in 0..done {
        assert!(
            on_server.contains_key(&format!("doc-{i:04}")),
            "doc-{i:04} is checkpointed but not on the server"
        );
    }

    // The next run (the same replication: through the same URL), with the server fast again
    // and time enough, starts at the checkpoint and reads only the rest.
    slow.store(false, Ordering::SeqCst);
    let remote = settee::Remote::new(&via(&db, &proxy)).unwrap();
    let second = settee::replicate::Replication::new(
        local.to_peer(),
        remote.to_peer(),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert!(!second.deadline_reached);
    assert_eq!(second.start_last_seq.as_json(), &json!(done));
    assert_eq!(second.stats.changes_read, DOCS - done, "{second:?}");
    assert_eq!(revs(&local).await, revs(&direct).await);
    assert_eq!(revs(&direct).await.len() as u64, DOCS);
}
