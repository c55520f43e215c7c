//! Issue 19's findings against the real server: the sync state is a cache of what the remote
//! holds, and whatever the remote says overrides it. A remote that was reset (dropped and
//! recreated with a validation function) or restored from an older copy reads as unsynced
//! until it holds the documents again; a document the local store refused during a pull
//! is part of the sync state (listed, counted, retried).

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use settee::replicate::{Peer, ReplicateOptions, RetryPolicy};
use settee::SyncState;
use settee_testkit::http::{self, Reply, Request, Rule};
use settee_testkit::{TestDb, TestServer};

use common::sync_once;

/// `settee` run as a user would (piped), with the server's password in the environment.
fn settee(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = common::settee_with_password().run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code().unwrap(), lines, stderr)
}

/// Database `db`, created, reached through a proxy to the test server whose rule is
/// `rule` (for library calls: the credentials are in its URL).
async fn through_proxy<F>(db: &TestDb, rule: F) -> settee::Remote
where
    F: Fn(&Request) -> Rule + Send + Sync + 'static,
{
    let (proxy, _log) = http::proxy(db.server().url(), rule).await;
    let r =
        settee::Remote::new(&db.server().via(&proxy).db_url_with_credentials(db.name())).unwrap();
    r.to_peer().create().await.unwrap();
    r
}

/// What the server itself answers for a document: its status code.
fn server_status(db: &str, id: &str) -> u16 {
    TestServer::get()
        .raw_request("GET", &format!("/{db}/{id}"), None)
        .0
}

/// One request to the server, which must succeed.
fn server_request(method: &str, path: &str, body: Option<Value>) {
    let body = body.map(|b| b.to_string());
    let (status, text) =
        TestServer::get().raw_request(method, &format!("/{path}"), body.as_deref());
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
}

/// Issue 19, finding 1, as the issue tells it: `r1`, `r2`, `r3` synced; the database is
/// dropped and recreated with a `validate_doc_update` that refuses `r2`. The sync re-pushes,
/// `r2` is refused (exit 3), and `status` must say so: 1 unpushed, 1 rejected, `r2` listed
/// (it said 0, 0 and nothing, while the server answered 404 for `r2`).
#[test]
fn issue_19_a_remote_that_was_reset_reads_as_unsynced_until_it_holds_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let name_db = TestDb::named("reset");
    let name = name_db.name();
    let local = dir.path().join("local");
    let local = local.to_str().unwrap();
    let url = name_db.url_with_user();
    server_request("PUT", name, None);
    for id in ["r1", "r2", "r3"] {
        let (code, _, err) = settee(&["put", local, &json!({"_id": id}).to_string()]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = settee(&["sync", local, &url]);
    assert_eq!(code, 0, "{err}");
    let (_, st, _) = settee(&["status", local, &url]);
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(0), &json!(0))
    );

    // The database is reset and now refuses r2.
    server_request("DELETE", name, None);
    server_request("PUT", name, None);
    server_request(
        "PUT",
        &format!("{name}/_design/guard"),
        Some(json!({"validate_doc_update":
            "function (doc) { if (doc._id === 'r2') { throw({forbidden: 'r2 is not welcome'}); } }"})),
    );
    let (code, _, err) = settee(&["sync", local, &url]);
    assert_eq!(code, 3, "r2 is refused: {err}");
    assert_eq!(server_status(name, "r2"), 404);
    assert_eq!(server_status(name, "r1"), 200);
    let (_, st, _) = settee(&["status", local, &url]);
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["rejected"]),
        (&json!(1), &json!(1)),
        "{st:?}"
    );
    let (_, docs, _) = settee(&["status", local, &url, "--docs"]);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        (&docs[0]["id"], &docs[0]["state"]),
        (&json!("r2"), &json!("rejected"))
    );
    assert_eq!(docs[0]["reason"], "r2 is not welcome");
    // Still so after another run, which offers r2 again (the server's rules may have
    // changed) and hears the refusal again.
    let (code, _, err) = settee(&["sync", local, &url]);
    assert_eq!(code, 3, "{err}");
    let (_, docs, _) = settee(&["status", local, &url, "--docs"]);
    assert_eq!(docs.len(), 1, "{docs:?}");
}

/// A database restored from an older copy lacks what was pushed after the copy was made.
/// Its `_revs_diff` says so, and that overrides the recorded state at once: while the push
/// cannot write (here a proxy refuses `_bulk_docs`, and the run gives up), `status` says
/// the edit is unpushed, not synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_a_remote_restored_from_an_older_copy_reads_as_unsynced_once_it_says_so() {
    let name_db = TestDb::named("restored");
    let name = name_db.name();
    let backup_db = TestDb::named("restored-backup");
    let refuse = Arc::new(AtomicBool::new(false));
    let flag = refuse.clone();
    let r = through_proxy(&name_db, move |req| {
        if flag.load(Ordering::SeqCst) && req.path().ends_with("/_bulk_docs") {
            Rule::Answer(Reply::json(
                500,
                &json!({"error": "unknown_error", "reason": "the disk is on fire"}),
            ))
        } else {
            Rule::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::open(dir.path().join("local")).unwrap();
    for id in ["a", "b", "c"] {
        l.put(json!({"_id": id})).await.unwrap();
    }
    let opts = || ReplicateOptions {
        retry: RetryPolicy {
            initial_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(50),
            max_retries: 1,
        },
        ..Default::default()
    };
    let sync = |l: settee::Local, r: settee::Remote| async move {
        settee::replicate::sync(l.to_peer(), r.to_peer(), opts(), None, Default::default()).await
    };
    sync(l.clone(), r.clone()).await.unwrap();
    // The copy is made now: it has a, b and c at their first revisions.
    server_request(
        "POST",
        "_replicate",
        Some(json!({"source": name_db.url_with_credentials(),
                    "target": backup_db.url_with_credentials(), "create_target": true})),
    );
    let cur = l.get("a", &Default::default()).await.unwrap();
    let edited = l
        .put(json!({"_id": "a", "_rev": cur["_rev"], "n": 2}))
        .await
        .unwrap();
    sync(l.clone(), r.clone()).await.unwrap();
    assert_eq!(
        l.sync_state(&r, "a").await.unwrap(),
        Some(SyncState::Synced)
    );

    // Restored from the copy: the edit of "a" is gone from the server.
    server_request("DELETE", name, None);
    server_request(
        "POST",
        "_replicate",
        Some(json!({"source": backup_db.url_with_credentials(),
                    "target": name_db.url_with_credentials(), "create_target": true})),
    );
    refuse.store(true, Ordering::SeqCst);
    let failed = sync(l.clone(), r.clone()).await;
    assert!(failed.is_err(), "the push could not write: {failed:?}");
    let want = SyncState::Unpushed {
        revs: vec![edited["rev"].as_str().unwrap().parse().unwrap()],
    };
    assert_eq!(l.sync_state(&r, "a").await.unwrap(), Some(want));
    let st = l.status(&r).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.rejected), (1, 0), "{st:?}");
    for id in ["b", "c"] {
        assert_eq!(l.sync_state(&r, id).await.unwrap(), Some(SyncState::Synced));
    }
    // Once it can write, the edit is pushed again and synced.
    refuse.store(false, Ordering::SeqCst);
    sync(l.clone(), r.clone()).await.unwrap();
    assert_eq!(
        l.sync_state(&r, "a").await.unwrap(),
        Some(SyncState::Synced)
    );
    let on_server = r.get("a", &Default::default()).await.unwrap();
    assert_eq!(on_server["_rev"], edited["rev"]);
    let listed: Vec<_> = l.unsynced(&r).unwrap().collect().await;
    assert!(listed.is_empty(), "{listed:?}");
}

/// Issue 19, finding 5: a document the local store refused during a pull was in the run's
/// failures and nowhere else: never retried, never counted. It is part of the sync state
/// now: `status` counts it, `status --docs` lists it with the reason, and the next sync asks
/// for it again. Here a proxy adds a member the store refuses (`_bogus`) to one document
/// of the first pull's `_bulk_get` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_a_document_refused_during_a_pull_is_listed_counted_and_retried() {
    let name_db = TestDb::named("pullfail");
    let spoil = Arc::new(AtomicBool::new(true));
    let flag = spoil.clone();
    let r = through_proxy(&name_db, move |req| {
        if !(flag.load(Ordering::SeqCst) && req.path().ends_with("/_bulk_get")) {
            return Rule::Forward;
        }
        Rule::Edit(Box::new(|mut reply: Reply| {
            let mut body = reply.body_json().unwrap();
            for result in body["results"].as_array_mut().unwrap() {
                if result["id"] == "bad" {
                    for d in result["docs"].as_array_mut().unwrap() {
                        d["ok"]["_bogus"] = json!(1);
                    }
                }
            }
            reply.body = body.to_string().into_bytes();
            reply
        }))
    })
    .await;
    for id in ["good", "bad"] {
        r.put(json!({"_id": id, "n": 1})).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::open(dir.path().join("local")).unwrap();
    let sync = || {
        settee::replicate::sync(
            l.to_peer(),
            r.to_peer(),
            Default::default(),
            None,
            Default::default(),
        )
    };
    let summary = sync().await.unwrap();
    assert_eq!(
        summary.pull.doc_failures.len(),
        1,
        "{:?}",
        summary.pull.doc_failures
    );
    assert!(l.get("bad", &Default::default()).await.is_err());
    let state = l.sync_state(&r, "bad").await.unwrap().unwrap();
    let SyncState::PullFailed { error, reason, .. } = &state else {
        panic!("{state:?}");
    };
    assert_eq!(error, "doc_validation");
    assert!(reason.contains("_bogus"), "{reason}");
    let st = l.status(&r).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.pull_failed), (0, 1), "{st:?}");
    let listed: Vec<_> = l.unsynced(&r).unwrap().map(|x| x.unwrap()).collect().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, "bad");
    // A sync that moves nothing new still counts it (its checkpoint is past the change) and,
    // with the fault still there, keeps it listed.
    sync().await.unwrap();
    assert_eq!(l.status(&r).await.unwrap().local.pull_failed, 1);
    // The fault is gone: the next sync asks for it again, and it arrives.
    spoil.store(false, Ordering::SeqCst);
    let summary = sync().await.unwrap();
    assert!(
        summary.pull.doc_failures.is_empty(),
        "{:?}",
        summary.pull.doc_failures
    );
    let doc = l.get("bad", &Default::default()).await.unwrap();
    assert_eq!(doc["n"], 1);
    assert_eq!(
        l.sync_state(&r, "bad").await.unwrap(),
        Some(SyncState::Synced)
    );
    let st = l.status(&r).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.pull_failed), (0, 0), "{st:?}");
}

/// A `_revs_diff` answer leaves out what the target holds, so a row lost on the way made a
/// document look held: it was never pushed, the checkpoint moved past it and `status` said
/// synced. A revision left out that the store does not know the server to hold is asked
/// about again, up to three times in all. Here a proxy drops `b` from the first two
/// `_revs_diff` answers that list it (the second is the first asking again: the fault test
/// of `tests/faults.rs` met this under load, and `b` was never pushed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_a_revs_diff_that_leaves_out_a_document_is_asked_again() {
    let name_db = TestDb::named("revsdiff");
    let name = name_db.name();
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = dropped.clone();
    let r = through_proxy(&name_db, move |req| {
        if !req.path().ends_with("/_revs_diff") || count.load(Ordering::SeqCst) >= 2 {
            return Rule::Forward;
        }
        let count = count.clone();
        Rule::Edit(Box::new(move |mut reply: Reply| {
            let mut body = reply.body_json().unwrap();
            if body.as_object_mut().unwrap().remove("b").is_some() {
                count.fetch_add(1, Ordering::SeqCst);
            }
            reply.body = body.to_string().into_bytes();
            reply
        }))
    })
    .await;
    // Not empty, so the push asks `_revs_diff` (an empty target skips it).
    r.put(json!({"_id": "already"})).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::open(dir.path().join("local")).unwrap();
    for id in ["a", "b", "c"] {
        l.put(json!({"_id": id})).await.unwrap();
    }
    sync_once(&l, &r).await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "the proxy dropped b twice"
    );
    assert_eq!(server_status(name, "b"), 200, "b was pushed");
    let st = l.status(&r).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.rejected), (0, 0), "{st:?}");
}

/// With `new_edits=false` CouchDB answers only the refusals, so a refusal lost on the way
/// read as a success: the document looked synced, the checkpoint passed it, and the server
/// never had it. Writes to a server are confirmed with `_revs_diff`; a revision missing
/// without a refusal writes the batch again, and then the refusal is heard. Here a proxy
/// empties the first `_bulk_docs` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_a_refusal_lost_from_a_bulk_docs_answer_is_heard_on_the_second_write() {
    let name_db = TestDb::named("unheard");
    let name = name_db.name();
    let emptied = Arc::new(AtomicBool::new(false));
    let flag = emptied.clone();
    let r = through_proxy(&name_db, move |req| {
        if !req.path().ends_with("/_bulk_docs") || flag.load(Ordering::SeqCst) {
            return Rule::Forward;
        }
        let flag = flag.clone();
        Rule::Edit(Box::new(move |mut reply: Reply| {
            if reply
                .body_json()
                .is_some_and(|b| b.as_array().is_some_and(|a| !a.is_empty()))
            {
                flag.store(true, Ordering::SeqCst);
                reply.body = b"[]".to_vec();
            }
            reply
        }))
    })
    .await;
    r.put(json!({"_id": "_design/guard", "validate_doc_update": common::NO_SECRETS}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::open(dir.path().join("local")).unwrap();
    let bad = l.put(json!({"_id": "s", "secret": true})).await.unwrap();
    l.put(json!({"_id": "fine"})).await.unwrap();
    let summary = sync_once(&l, &r).await;
    assert!(
        emptied.load(Ordering::SeqCst),
        "the proxy emptied an answer"
    );
    assert_eq!(
        summary.push.doc_failures.len(),
        1,
        "{:?}",
        summary.push.doc_failures
    );
    assert_eq!(server_status(name, "s"), 404);
    assert_eq!(server_status(name, "fine"), 200);
    let want = SyncState::Rejected {
        rev: bad["rev"].as_str().unwrap().parse().unwrap(),
        error: "forbidden".into(),
        reason: "no secrets here".into(),
    };
    assert_eq!(l.sync_state(&r, "s").await.unwrap(), Some(want));
    let st = l.status(&r).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.rejected), (1, 1), "{st:?}");
}
