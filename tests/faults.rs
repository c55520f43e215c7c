//! The fault matrix of issue 19, against Apache CouchDB through the seeded fault proxy
//! (`settee_testkit::faults`). For each fault:
//!
//! 1. a one-shot `settee sync LOCAL URL` that meets it exits 0, 1 or 3 and never panics;
//! 2. the next run (faults stopped) converges: every document's revision tree, as the server
//!    itself answers `open_revs=all&revs=true` (attachment digests included), equals the
//!    store's, and `settee status` is exact (the one document the server's validation
//!    function refuses is the only one unpushed, and it is listed as rejected);
//! 3. a live sync (`Local::sync`, continuous) that meets the same fault recovers by
//!    itself, without a restart, to the same exact state, moving edits made on both sides
//!    while it runs.
//!
//! The data has what makes faults matter: documents on both sides, a conflict made on both
//! sides, a document with two leaves on the server (two `_bulk_get` requests of one id),
//! attachments, and a document the server refuses. Beside the matrix: a continuous
//! `_changes` feed cut mid-row and gone silent (`Documents::changes_stream`), connections refused
//! while the proxy's port is closed, `Retry-After` honoured end to end, and the remote reset
//! (dropped and recreated; restored from an older copy).
//!
//! Each test prints its proxy's seed; `SETTEE_TEST_SEED=<seed>` replays its random choices.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod fault_support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use fault_support::{
    cli, cli_status, cli_url, converged, couch_replicate, direct, direct_cli_url, live_converges,
    recreate, server_put, via,
};
use futures::StreamExt;
use serde_json::{json, Value};
use settee::replicate::{ReplicateOptions, RetryPolicy};
use settee_testkit::faults::{Endpoint, Fault, FaultProxy};
use settee_testkit::wait::wait_for_ok;
use settee_testkit::{TestDb, TestServer};

/// The server refuses documents with `"bad": true`.
const GUARD: &str =
    "function (doc) { if (doc.bad) { throw({forbidden: 'bad documents are refused'}); } }";

/// How long a stall and a silent feed last, and the read timeout of the live client that
/// meets them (shorter, so that it gives up first).
const STALL: Duration = Duration::from_secs(4);
const SHORT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a live sync has to recover and converge.
const RECOVERY: Duration = Duration::from_secs(60);

fn attachment(text: &str) -> Value {
    // Not compressible by CouchDB's rules, so its digest is the bytes' md5 on both sides.
    json!({"a.bin": {"content_type": "application/octet-stream",
        "data": base64::engine::general_purpose::STANDARD.encode(text)}})
}

/// The test's server database, with the guard and the server-side documents.
async fn server_db() -> (TestDb, Vec<String>) {
    let db = TestDb::create("faults");
    let name = db.name().to_owned();
    let remote = direct(&name);
    remote
        .put(json!({"_id": "_design/guard", "validate_doc_update": GUARD}))
        .await
        .unwrap();
    for i in 0..4 {
        remote
            .put(json!({"_id": format!("srv-{i}"), "n": i}))
            .await
            .unwrap();
    }
    remote
        .put(json!({"_id": "srv-att", "_attachments": attachment("from the server")}))
        .await
        .unwrap();
    remote
        .put(json!({"_id": "both", "side": "server"}))
        .await
        .unwrap();
    // Two leaves of one document on the server: a pull asks `_bulk_get` for both.
    let (status, body) = tokio::task::spawn_blocking(move || {
        TestServer::get().raw_request(
            "POST",
            &format!("/{name}/_bulk_docs"),
            Some(
                &json!({"new_edits": false, "docs": [
                    {"_id": "srv-conf", "_rev": "1-aaaa", "v": "a"},
                    {"_id": "srv-conf", "_rev": "1-bbbb", "v": "b"},
                ]})
                .to_string(),
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let ids = [
        "srv-0", "srv-1", "srv-2", "srv-3", "srv-att", "both", "srv-conf",
    ];
    (db, ids.iter().map(|s| s.to_string()).collect())
}

/// Writes a store's documents (ids starting with `prefix`); returns their ids.
async fn local_docs(local: &impl settee::Documents, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..6 {
        let id = format!("{prefix}-{i}");
        local.put(json!({"_id": id, "n": i})).await.unwrap();
        ids.push(id);
    }
    let id = format!("{prefix}-att");
    local
        .put(json!({"_id": id, "_attachments": attachment(prefix)}))
        .await
        .unwrap();
    ids.push(id);
    // Edited twice, then deleted: a tombstone with history.
    let id = format!("{prefix}-gone");
    let r = local.put(json!({"_id": id, "v": 1})).await.unwrap();
    let r = local
        .put(json!({"_id": id, "_rev": r["rev"], "v": 2}))
        .await
        .unwrap();
    local
        .delete(&id, Some(&r["rev"].as_str().unwrap().parse().unwrap()))
        .await
        .unwrap();
    ids.push(id);
    local
        .put(json!({"_id": format!("{prefix}-bad"), "bad": true}))
        .await
        .unwrap();
    local
        .put(json!({"_id": "both", "side": prefix}))
        .await
        .unwrap();
    ids
}

/// `status` after convergence: the refused document is the only one unsynced.
async fn status_is_exact(
    local: &settee::Local,
    remote: &settee::Remote,
    bad: &str,
) -> Result<(), String> {
    let st = local.status(remote).await.map_err(|e| e.to_string())?;
    if (st.local.unpushed, st.local.rejected, st.unpulled) != (1, 1, Some(0)) {
        return Err(format!(
            "status is not 1 unpushed, 1 rejected, 0 unpulled: {st:?}"
        ));
    }
    let listed: Vec<_> = local
        .unsynced(remote)
        .map_err(|e| e.to_string())?
        .collect::<Vec<_>>()
        .await;
    let listed: Vec<String> = listed
        .into_iter()
        .map(|r| {
            r.map(|(id, state)| format!("{id} {state:?}"))
                .unwrap_or_else(|e| e.to_string())
        })
        .collect();
    if listed.len() != 1 || !listed[0].starts_with(&format!("{bad} Rejected")) {
        return Err(format!(
            "unsynced should list {bad} as rejected: {listed:?}"
        ));
    }
    Ok(())
}

/// One row of the matrix: `fault` on the next `times` requests to `at`, first for a
/// one-shot CLI sync, then for a live sync. `timeout`: the live client's read timeout.
async fn matrix_case(at: Endpoint, fault: Fault, times: usize, timeout: Option<Duration>) {
    let (db, mut ids) = server_db().await;
    let name = db.name().to_owned();
    let proxy = FaultProxy::start(TestServer::get().url()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = cli_url(&proxy, &name);

    // 1. One-shot, through the fault.
    let a_path = dir.path().join("a");
    let a = a_path.to_str().unwrap();
    {
        let local = settee::Local::open(a).unwrap();
        ids.extend(local_docs(&local, "a").await);
    }
    proxy.inject(at, fault, times);
    let first = cli(&["sync", a, &url, "--batch-size", "3"]).await;
    let report = proxy.report();
    assert!(
        proxy.injected_count() > 0,
        "the fault never happened: {report}"
    );

    // 2. The next run converges, and status is exact.
    proxy.calm();
    let second = cli(&["sync", a, &url, "--batch-size", "3"]).await;
    // 3 if this run is the one that meets a-bad's refusal, 0 if the first run did.
    assert!(
        matches!(second.code, Some(0 | 3)),
        "the run after the fault fails:\n{}\nfirst run ({:?}):\n{}\n{report}",
        second.stderr,
        first.code,
        first.stderr
    );
    {
        let local = settee::Local::open(a).unwrap();
        if let Err(diff) = converged(&local, &name, &ids, &["a-bad"]).await {
            panic!("not converged after the rerun: {diff}\n{report}");
        }
    }
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"], &st[0]["unpulled"]),
        (&json!(1), &json!(1), &json!(0)),
        "{st:?}\n{report}"
    );
    let docs = cli_status(a, &url, true).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        (&docs[0]["id"], &docs[0]["state"]),
        (&json!("a-bad"), &json!("rejected"))
    );

    // 3. A live sync meets the fault again and recovers by itself.
    let b = settee::Local::open(dir.path().join("b")).unwrap();
    ids.extend(local_docs(&b, "b").await);
    let remote = via(&proxy, &name, timeout);
    let seen = proxy.injected_count();
    proxy.inject(at, fault, times);
    let mut sync = b.sync(
        &remote,
        ReplicateOptions {
            continuous: true,
            batch_size: 3,
            checkpoint_interval: Duration::from_millis(200),
            longpoll: Duration::from_secs(1),
            retry: RetryPolicy {
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
                max_retries: 4,
            },
            ..Default::default()
        },
    );
    // Edits on both sides while it runs.
    server_put(&name, json!({"_id": "srv-late", "late": true})).await;
    b.put(json!({"_id": "b-late", "late": true})).await.unwrap();
    ids.extend(["srv-late".to_owned(), "b-late".to_owned()]);
    live_converges(&mut sync, &proxy, RECOVERY, || async {
        converged(&b, &name, &ids, &["a-bad", "b-bad"]).await?;
        status_is_exact(&b, &remote, "b-bad").await
    })
    .await;
    assert!(
        proxy.injected_count() > seen,
        "the live sync never met the fault: {}",
        proxy.report()
    );
    sync.cancel();
    let _ = sync.finish().await;
}

macro_rules! matrix {
    ($($name:ident: $at:expr, $fault:expr, $times:expr, $timeout:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            matrix_case($at, $fault, $times, $timeout).await;
        }
    )*};
}

matrix! {
    connection_closed_unanswered: Endpoint::Any, Fault::Close, 3, None;
    answered_503: Endpoint::Any, Fault::Status { status: 503, retry_after: None }, 3, None;
    answered_503_with_retry_after: Endpoint::Any, Fault::Status { status: 503, retry_after: Some(1) }, 3, None;
    answered_429: Endpoint::Any, Fault::Status { status: 429, retry_after: None }, 3, None;
    answered_429_with_retry_after: Endpoint::Any, Fault::Status { status: 429, retry_after: Some(1) }, 3, None;
    answer_cut_at_a_random_byte: Endpoint::Any, Fault::CutAt(None), 4, None;
    bulk_docs_written_but_answer_cut_at_byte_0: Endpoint::BulkDocs, Fault::CutAt(Some(0)), 2, None;
    checkpoint_written_but_answer_cut_at_byte_0: Endpoint::LocalWrite, Fault::CutAt(Some(0)), 2, None;
    checkpoint_read_answer_cut_mid_body: Endpoint::LocalRead, Fault::CutBodyAt(10), 2, None;
    stall_longer_than_the_timeout: Endpoint::Any, Fault::Stall(STALL), 1, Some(SHORT_TIMEOUT);
    changes_cut_mid_row: Endpoint::Changes, Fault::CutFeedMidRow, 2, None;
    changes_gone_silent: Endpoint::Changes, Fault::SilentFeed(STALL), 1, Some(SHORT_TIMEOUT);
    bulk_get_result_dropped: Endpoint::BulkGet, Fault::BulkGetDrop, 2, None;
    bulk_get_result_duplicated: Endpoint::BulkGet, Fault::BulkGetDuplicate, 2, None;
    bulk_get_results_reordered: Endpoint::BulkGet, Fault::BulkGetReorder, 2, None;
    changes_rows_repeated: Endpoint::Changes, Fault::ChangesRepeat, 2, None;
    changes_since_rewound: Endpoint::Changes, Fault::ChangesRewind, 3, None;
    revs_diff_omits_a_document: Endpoint::RevsDiff, Fault::RevsDiffOmit, 2, None;
    checkpoint_write_answered_409: Endpoint::LocalWrite, Fault::Status { status: 409, retry_after: None }, 3, None;
    checkpoint_write_answered_500: Endpoint::LocalWrite, Fault::Status { status: 500, retry_after: None }, 3, None;
    bulk_docs_answer_missing_a_row: Endpoint::BulkDocs, Fault::BulkDocsDropRow, 3, None;
}

/// The proxy's port closed (connection refused): the one-shot run fails with exit 1 and
/// says so; the next run converges; a live sync started while refused catches up once the
/// port opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused() {
    let (db, mut ids) = server_db().await;
    let name = db.name().to_owned();
    let proxy = FaultProxy::start(TestServer::get().url()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = cli_url(&proxy, &name);
    let a_path = dir.path().join("a");
    let a = a_path.to_str().unwrap();
    {
        let local = settee::Local::open(a).unwrap();
        ids.extend(local_docs(&local, "a").await);
    }
    proxy.set_refusing(true);
    let refused = cli(&["sync", a, &url]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("connection refused"),
        "{}",
        refused.stderr
    );
    proxy.set_refusing(false);
    let again = cli(&["sync", a, &url]).await;
    assert_eq!(again.code, Some(3), "{}", again.stderr);
    {
        let local = settee::Local::open(a).unwrap();
        converged(&local, &name, &ids, &["a-bad"]).await.unwrap();
        status_is_exact(&local, &via(&proxy, &name, None), "a-bad")
            .await
            .unwrap();
    }

    let b = settee::Local::open(dir.path().join("b")).unwrap();
    ids.extend(local_docs(&b, "b").await);
    let remote = via(&proxy, &name, None);
    proxy.set_refusing(true);
    let mut sync = b.sync(
        &remote,
        ReplicateOptions {
            continuous: true,
            longpoll: Duration::from_secs(1),
            retry: RetryPolicy {
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(500),
                max_retries: 4,
            },
            ..Default::default()
        },
    );
    // Wait for it to meet the refusal (an event, not a sleep).
    loop {
        match tokio::time::timeout(RECOVERY, sync.next()).await {
            Ok(Some(settee::replicate::Event::Error { retrying, .. })) => {
                assert!(retrying, "a live sync must not give up");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no error event while refused: {other:?}"),
        }
    }
    proxy.set_refusing(false);
    live_converges(&mut sync, &proxy, RECOVERY, || async {
        converged(&b, &name, &ids, &["a-bad", "b-bad"]).await?;
        status_is_exact(&b, &remote, "b-bad").await
    })
    .await;
    sync.cancel();
    let _ = sync.finish().await;
}

/// The HTTP client honours `Retry-After` end to end: the request answered `503` with
/// `Retry-After: 2` is sent again no sooner than 2 seconds later (a lower bound on a wait
/// the server asked for, not a measure of speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_end_to_end() {
    let (db, _) = server_db().await;
    let name = db.name().to_owned();
    let proxy = FaultProxy::start(TestServer::get().url()).await;
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a");
    let a = a_path.to_str().unwrap();
    for (at, method) in [(Endpoint::Changes, "GET"), (Endpoint::BulkDocs, "POST")] {
        {
            let local = settee::Local::open(a).unwrap();
            local
                .put(json!({"_id": format!("x-{method}")}))
                .await
                .unwrap();
        }
        let before = proxy.requests_at().len();
        proxy.inject(
            at,
            Fault::Status {
                status: 503,
                retry_after: Some(2),
            },
            1,
        );
        let run = cli(&["sync", a, &cli_url(&proxy, &name)]).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let reqs = proxy.requests_at();
        let hits: Vec<_> = reqs[before..]
            .iter()
            .filter(|(_, r)| r.method == method && at.matches(r))
            .collect();
        assert!(hits.len() >= 2, "{} not retried: {hits:?}", proxy.report());
        let waited = hits[1].0 - hits[0].0;
        assert!(
            waited >= Duration::from_millis(1900),
            "{method} retried after {waited:?}, not after the 2 s Retry-After asked"
        );
    }
}

/// A live `_changes` feed (`Documents::changes_stream`, continuous) cut mid-row or gone silent
/// reconnects by itself from the last row it read: every change arrives, once.
async fn live_feed_case(fault: Fault) {
    let db = TestDb::create("feed");
    let name = db.name().to_owned();
    let proxy = FaultProxy::start(TestServer::get().url()).await;
    for i in 0..5 {
        server_put(&name, json!({"_id": format!("f-{i}")})).await;
    }
    proxy.inject(Endpoint::ContinuousChanges, fault, 2);
    let remote = via(&proxy, &name, Some(SHORT_TIMEOUT));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut feed = Box::pin(remote.changes_stream(settee::ChangesFeed {
                live: true,
                ..Default::default()
            }));
            while let Some(item) = feed.next().await {
                if let Ok(c) = item {
                    seen.lock().unwrap().push(c.id);
                }
            }
        }
    });
    for i in 5..10 {
        server_put(&name, json!({"_id": format!("f-{i}")})).await;
    }
    wait_for_ok(RECOVERY, "every change on the live feed", || async {
        let got = seen.lock().unwrap().clone();
        if got.len() >= 10 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    reader.abort();
    let got = seen.lock().unwrap().clone();
    let mut counts = BTreeMap::new();
    for id in &got {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    assert!(
        counts.len() == 10 && counts.values().all(|n| *n == 1),
        "each change once: {got:?}\n{}",
        proxy.report()
    );
    assert!(proxy.injected_count() >= 1, "{}", proxy.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_changes_cut_mid_row() {
    live_feed_case(Fault::CutFeedMidRow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_changes_gone_silent() {
    live_feed_case(Fault::SilentFeed(STALL)).await;
}

/// The remote dropped and recreated, now with a validation function that refuses `r2`:
/// the next sync pushes everything again, `r2` is refused, and `status` says so (issue 19,
/// finding 1: a reset remote must not read as synced). Once the guard is gone, the next
/// sync converges to 0 and 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_dropped_and_recreated_is_pushed_again() {
    let db = TestDb::create("reset");
    let name = db.name().to_owned();
    let url = direct_cli_url(&name);
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a");
    let a = a_path.to_str().unwrap();
    let ids: Vec<String> = ["r1", "r2", "r3"].iter().map(|s| s.to_string()).collect();
    {
        let local = settee::Local::open(a).unwrap();
        for id in &ids {
            local.put(json!({"_id": id})).await.unwrap();
        }
    }
    assert_eq!(cli(&["sync", a, &url]).await.code, Some(0));
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(0), &json!(0))
    );

    recreate(&name).await;
    let guard = "function (doc) { if (doc._id === 'r2') { throw({forbidden: 'r2 is refused'}); } }";
    direct(&name)
        .put(json!({"_id": "_design/guard", "validate_doc_update": guard}))
        .await
        .unwrap();
    let run = cli(&["sync", a, &url]).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    {
        let local = settee::Local::open(a).unwrap();
        converged(&local, &name, &ids, &["r2"]).await.unwrap();
    }
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(1), &json!(1)),
        "the server refused r2 and answers 404 for it: {st:?}"
    );
    let docs = cli_status(a, &url, true).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        (&docs[0]["id"], &docs[0]["state"]),
        (&json!("r2"), &json!("rejected"))
    );

    // Without the guard, r2 goes through.
    let remote = direct(&name);
    let ddoc = remote
        .get("_design/guard", &Default::default())
        .await
        .unwrap();
    remote
        .delete(
            "_design/guard",
            Some(&ddoc["_rev"].as_str().unwrap().parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(cli(&["sync", a, &url]).await.code, Some(0));
    let local = settee::Local::open(a).unwrap();
    converged(&local, &name, &ids, &[]).await.unwrap();
    drop(local);
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(0), &json!(0)),
        "{st:?}"
    );
}

/// The remote restored from an older copy (CouchDB's `_replicate` to a backup earlier; the
/// database dropped, recreated and filled from the backup): what the backup lacks is pushed
/// again. While that push cannot get through (`_bulk_docs` answered 503), the sync state
/// says those documents are unpushed; once it does, 0 and 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_restored_from_an_older_copy_is_pushed_again() {
    let db = TestDb::create("restore");
    let backup = TestDb::named("restore-backup");
    let name = db.name().to_owned();
    let proxy = FaultProxy::start(TestServer::get().url()).await;
    let url = cli_url(&proxy, &name);
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a");
    let a = a_path.to_str().unwrap();
    let write = |ids: &'static [&'static str]| async move {
        let local = settee::Local::open(a).unwrap();
        for id in ids {
            local
                .put(json!({"_id": id, "_attachments": attachment(id)}))
                .await
                .unwrap();
        }
    };
    write(&["o1", "o2", "o3"]).await;
    assert_eq!(cli(&["sync", a, &url]).await.code, Some(0));
    couch_replicate(&name, backup.name()).await;
    write(&["n1", "n2", "n3"]).await;
    assert_eq!(cli(&["sync", a, &url]).await.code, Some(0));
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(0), &json!(0))
    );

    recreate(&name).await;
    couch_replicate(backup.name(), &name).await;
    // Documents with attachments go up alone (`multipart/related`), the others in
    // `_bulk_docs`: both are refused.
    for endpoint in [Endpoint::BulkDocs, Endpoint::ReplicatedPut] {
        proxy.inject(
            endpoint,
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            usize::MAX,
        );
    }
    let run = cli(&["sync", a, &url]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let docs = cli_status(a, &url, true).await;
    let listed: Vec<(&Value, &Value)> = docs.iter().map(|d| (&d["id"], &d["state"])).collect();
    assert_eq!(
        listed,
        [
            (&json!("n1"), &json!("unpushed")),
            (&json!("n2"), &json!("unpushed")),
            (&json!("n3"), &json!("unpushed"))
        ],
        "the restored server lacks n1..n3: {}",
        proxy.report()
    );

    proxy.calm();
    assert_eq!(cli(&["sync", a, &url]).await.code, Some(0));
    let ids: Vec<String> = ["o1", "o2", "o3", "n1", "n2", "n3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    {
        let local = settee::Local::open(a).unwrap();
        converged(&local, &name, &ids, &[]).await.unwrap();
    }
    let st = cli_status(a, &url, false).await;
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(0), &json!(0)),
        "{st:?}"
    );
}
