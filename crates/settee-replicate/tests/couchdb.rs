//! The replicator against the test server (Apache CouchDB in CI), where checkpoints, ids and
//! fetches meet a real server's answers: a target deleted and recreated mid-run, a source
//! the user may only read, a filter function changed between runs, and a `_bulk_get`
//! answer that leaves a result out (through a proxy to the real server, which would not do
//! that by itself).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use settee_couch::RemoteDb;
use settee_replicate::{
    DocFailure, Event, Filter, Peer, ReplicateOptions, Replication, RetryPolicy,
};
use settee_store::Database;
use settee_testkit::http::{self, Reply, Rule};
use settee_testkit::peer::{Wrap, Wrapped};
use settee_testkit::{TestDb, TestServer};
use tokio::sync::Notify;

fn store(dir: &tempfile::TempDir, name: &str) -> Database {
    Database::open(dir.path().join(name)).unwrap()
}

/// Quick retries: these tests provoke transient failures on purpose.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retries: 4,
    }
}

/// `n` documents `doc-00000`... in `db` (with `kind` a or b alternating), in one request.
fn fill(db: &TestDb, n: usize) {
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"_id": format!("doc-{i:05}"), "kind": if i % 2 == 0 { "a" } else { "b" }, "n": i}))
        .collect();
    let (status, body) = db.server().raw_request(
        "POST",
        &format!("/{}/_bulk_docs", db.name()),
        Some(&json!({ "docs": docs }).to_string()),
    );
    assert_eq!(status, 201, "{body}");
}

/// The server's document count of a database (a fresh client each time).
async fn doc_count(url: &str) -> u64 {
    RemoteDb::from_url(url)
        .unwrap()
        .info()
        .await
        .unwrap()
        .doc_count
}

fn ids(db: &Database) -> Vec<String> {
    db.all_docs(&Default::default())
        .unwrap()
        .rows
        .into_iter()
        .filter_map(|r| r.id)
        .collect()
}

/// A peer that holds every write after the `hold_after`th checkpoint write (`put_local`)
/// until the test lets it go, so the test can act at a known point of the run.
#[derive(Clone)]
struct Gate<P> {
    inner: P,
    puts: Arc<AtomicUsize>,
    hold_after: usize,
    held: Arc<Notify>,
    release: Arc<Notify>,
}

impl<P: Peer> Gate<P> {
    fn new(inner: P, hold_after: usize) -> Wrapped<Gate<P>> {
        Wrapped(Gate {
            inner,
            puts: Arc::default(),
            hold_after,
            held: Arc::default(),
            release: Arc::default(),
        })
    }
}

impl<P: Peer> Wrap for Gate<P> {
    type Inner = P;
    fn inner(&self) -> &P {
        &self.inner
    }
    async fn write(
        &self,
        docs: Vec<Box<serde_json::value::RawValue>>,
        origin: &str,
    ) -> settee_replicate::Result<Vec<DocFailure>> {
        if self.puts.load(Ordering::SeqCst) == self.hold_after {
            // Once: the next checkpoint write moves `puts` past `hold_after`.
            self.puts.fetch_add(1, Ordering::SeqCst);
            self.held.notify_one();
            self.release.notified().await;
        }
        self.inner.write(docs, origin).await
    }
    async fn put_local(&self, id: &str, doc: Value) -> settee_replicate::Result<String> {
        let rev = self.inner.put_local(id, doc).await?;
        let n = self.puts.load(Ordering::SeqCst);
        if n < self.hold_after {
            self.puts.store(n + 1, Ordering::SeqCst);
        }
        Ok(rev)
    }
}

#[tokio::test]
async fn a_target_deleted_and_recreated_mid_run_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let source = store(&dir, "source");
    let docs: Vec<Value> = (0..300)
        .map(|i| json!({"_id": format!("doc-{i:05}"), "n": i}))
        .collect();
    source.bulk_docs(docs, true).unwrap();
    let target_db = TestDb::create("recreated-target");
    let target_url = target_db.url_with_credentials();
    // Writes stop after the claim (1st put_local) and the first batch's checkpoint (2nd).
    let target = Gate::new(RemoteDb::from_url(&target_url).unwrap(), 2);
    let opts = ReplicateOptions {
        batch_size: 50,
        batches_in_flight: 1,
        checkpoint_interval: Duration::ZERO,
        retry: fast_retry(),
        ..Default::default()
    };
    let mut handle = Replication::new(source.clone(), target.clone(), opts).spawn();
    tokio::time::timeout(Duration::from_secs(60), target.held.notified())
        .await
        .expect("the run reaches its second batch");
    assert_eq!(doc_count(&target_url).await, 50, "one batch is in");
    // The target is deleted and recreated under the running replication.
    let server = target_db.server();
    let path = format!("/{}", target_db.name());
    assert_eq!(server.raw_request("DELETE", &path, None).0, 200);
    assert_eq!(server.raw_request("PUT", &path, None).0, 201);
    target.release.notify_one();

    let mut lost = Vec::new();
    while let Some(event) = handle.next_event().await {
        if let Event::Error { name, retrying, .. } = &event {
            lost.push((name.clone(), *retrying));
        }
    }
    let summary = handle.finish().await.unwrap();
    assert!(summary.ok && !summary.cancelled, "{summary:?}");
    assert_eq!(
        lost,
        [("checkpoint_lost".to_owned(), true)],
        "the lost checkpoint is noticed once and the session restarts"
    );
    assert_eq!(
        doc_count(&target_url).await,
        300,
        "the new target has every document, the first batch included"
    );
    // Its checkpoint is the end of the source, written after the restart.
    let rep = Replication::new(
        source.clone(),
        RemoteDb::from_url(&target_url).unwrap(),
        Default::default(),
    );
    let id = rep.replication_id().await.unwrap();
    let log = RemoteDb::from_url(&target_url)
        .unwrap()
        .get_local(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        log["source_last_seq"],
        json!(source.info().unwrap().update_seq)
    );
    assert_eq!(log["session_id"], json!(summary.session_id));
    // And a next run finds nothing to do.
    let again = rep.run().await.unwrap();
    assert_eq!(again.stats.changes_read, 0);
}

/// Creates user `name` with password `password` in `_users`.
fn create_user(server: &TestServer, name: &str, password: &str) {
    let doc = json!({"name": name, "password": password, "roles": [], "type": "user"});
    let (status, body) = server.raw_request(
        "PUT",
        &format!("/_users/org.couchdb.user:{name}"),
        Some(&doc.to_string()),
    );
    assert!(
        status == 201 || status == 202,
        "creating user {name}: {status} {body}"
    );
}

/// `db`'s URL as `user` with `password`.
fn url_as(db: &TestDb, user: &str, password: &str) -> String {
    db.url()
        .replacen("://", &format!("://{user}:{password}@"), 1)
}

#[tokio::test]
async fn a_reader_only_user_resumes_a_pull_without_reading_again() {
    let source = TestDb::create("reader-source");
    fill(&source, 40);
    let server = source.server().clone();
    let reader = format!("reader-{}", &source.name()[source.name().len() - 8..]);
    create_user(&server, &reader, "pw");
    let security = json!({"members": {"names": [reader]}});
    let (status, body) = server.raw_request(
        "PUT",
        &format!("/{}/_security", source.name()),
        Some(&security.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    // Only admins may write documents (a validation function; CouchDB has no read-only
    // role)...
    let ddoc = json!({"validate_doc_update":
        "function(n, o, u) { if (u.roles.indexOf('_admin') < 0) throw({forbidden: 'read only'}); }"});
    let (status, body) = server.raw_request(
        "PUT",
        &format!("/{}/_design/readonly", source.name()),
        Some(&ddoc.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let as_reader = RemoteDb::from_url(&url_as(&source, &reader, "pw")).unwrap();
    let refused = as_reader.put("mine", &json!({})).await.unwrap_err();
    assert_eq!(refused.name(), "forbidden");

    let dir = tempfile::tempdir().unwrap();
    let target = store(&dir, "target");
    let first = Replication::new(as_reader.clone(), target.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        first.stats.changes_read, 41,
        "40 documents and the design document"
    );
    let second = Replication::new(as_reader.clone(), target.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        second.stats.changes_read, 0,
        "resumed where the first run stopped"
    );
    assert_eq!(ids(&target).len(), 41);
    // ...but validation functions do not apply to `_local` documents, so CouchDB lets a
    // member keep checkpoints on the source: the reader's checkpoint is there.
    let id = Replication::new(as_reader.clone(), target.clone(), Default::default())
        .replication_id()
        .await
        .unwrap();
    assert!(as_reader.get_local(&id).await.unwrap().is_some());
    // The user is part of the replication: the admin's pull of the same pair has its own
    // checkpoints and reads everything.
    let as_admin = RemoteDb::from_url(&source.url_with_credentials()).unwrap();
    let admin_rep = Replication::new(as_admin, target.clone(), Default::default());
    assert_ne!(admin_rep.replication_id().await.unwrap(), id);
    assert_eq!(admin_rep.run().await.unwrap().stats.changes_read, 41);
    let (status, _) = server.raw_request(
        "DELETE",
        &format!(
            "/_users/org.couchdb.user:{reader}?rev={}",
            user_rev(&server, &reader)
        ),
        None,
    );
    assert_eq!(status, 200);
}

fn user_rev(server: &TestServer, name: &str) -> String {
    let (_, body) = server.raw_request("GET", &format!("/_users/org.couchdb.user:{name}"), None);
    let doc: Value = serde_json::from_str(&body).unwrap();
    doc["_rev"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_source_that_refuses_checkpoints_resumes_from_the_targets() {
    // A read-only gateway in front of the real server (as a proxy that lets only reads
    // through, or a Cloudant `_reader` key, would): every write to `_local` is refused.
    let source = TestDb::create("readonly-source");
    fill(&source, 30);
    let server = source.server().clone();
    let (proxy_url, log) = http::proxy(server.url(), |req| {
        if req.path().contains("/_local/") && req.method != "GET" {
            return Rule::Answer(Reply::json(
                403,
                &json!({"error": "forbidden", "reason": "read-only gateway"}),
            ));
        }
        Rule::Forward
    })
    .await;
    let (user, password) = server.credentials().unwrap();
    let via_gateway = format!(
        "{}/{}",
        proxy_url.replacen("://", &format!("://{user}:{password}@"), 1),
        source.name()
    );
    let remote = RemoteDb::from_url(&via_gateway).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = store(&dir, "target");

    let first = Replication::new(remote.clone(), target.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(first.stats.changes_read, 30);
    let refused = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path().contains("/_local/") && r.method == "PUT")
        .count();
    assert!(
        refused >= 1,
        "the source was asked for a checkpoint and refused"
    );

    let second = Replication::new(remote.clone(), target.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        second.stats.changes_read, 0,
        "no change already replicated is read again"
    );
    // New changes are still picked up from there.
    let (status, _) = server.raw_request(
        "PUT",
        &format!("/{}/late", source.name()),
        Some(r#"{"late": true}"#),
    );
    assert_eq!(status, 201);
    let third = Replication::new(remote, target.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(third.stats.changes_read, 1);
    assert_eq!(ids(&target).len(), 31);
}

#[tokio::test]
async fn a_changed_filter_function_does_not_reuse_the_old_checkpoint() {
    let source = TestDb::create("changed-filter");
    fill(&source, 20);
    let server = source.server().clone();
    let ddoc_path = format!("/{}/_design/app", source.name());
    let filter = |kind: &str| json!({"filters": {"by_kind": format!("function(doc) {{ return doc.kind === '{kind}'; }}")}});
    let (status, body) = server.raw_request("PUT", &ddoc_path, Some(&filter("a").to_string()));
    assert_eq!(status, 201, "{body}");
    let remote = RemoteDb::from_url(&source.url_with_credentials()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = store(&dir, "target");
    let opts = ReplicateOptions {
        filter: Filter::Named {
            name: "app/by_kind".into(),
            query_params: Default::default(),
        },
        ..Default::default()
    };
    let first = Replication::new(remote.clone(), target.clone(), opts.clone());
    let first_id = first.replication_id().await.unwrap();
    assert_eq!(first.run().await.unwrap().stats.docs_written, 10);

    // The same filter name now selects the other kind: documents older than the first
    // run's checkpoint must come too.
    let mut ddoc = filter("b");
    ddoc["_rev"] = json!(user_doc_rev(&server, &ddoc_path));
    let (status, body) = server.raw_request("PUT", &ddoc_path, Some(&ddoc.to_string()));
    assert_eq!(status, 201, "{body}");
    let second = Replication::new(remote.clone(), target.clone(), opts.clone());
    assert_ne!(second.replication_id().await.unwrap(), first_id);
    let summary = second.run().await.unwrap();
    assert_eq!(summary.stats.docs_written, 10);
    assert_eq!(ids(&target).len(), 20);
    // Unchanged, it resumes from its own checkpoint.
    let third = Replication::new(remote, target, opts).run().await.unwrap();
    assert_eq!(third.stats.changes_read, 0);
}

fn user_doc_rev(server: &TestServer, path: &str) -> String {
    let (_, body) = server.raw_request("GET", path, None);
    let doc: Value = serde_json::from_str(&body).unwrap();
    doc["_rev"].as_str().unwrap().to_owned()
}

/// A proxy to `db` whose `_bulk_get` answers leave out the result for each id in `drop`,
/// and whose `open_revs` answers for the ids in `missing` are empty.
async fn lossy_proxy(
    db: &TestDb,
    drop: &'static [&'static str],
    missing: &'static [&'static str],
) -> (String, http::Log) {
    let server = db.server().clone();
    let (url, log) = http::proxy(server.url(), move |req| {
        if req.path().ends_with("/_bulk_get") {
            return Rule::Edit(Box::new(move |mut reply| {
                if let Some(mut body) = reply.body_json() {
                    if let Some(results) = body["results"].as_array_mut() {
                        results.retain(|r| !drop.contains(&r["id"].as_str().unwrap_or_default()));
                    }
                    reply.body = body.to_string().into_bytes();
                }
                reply
            }));
        }
        let id = req.path().rsplit('/').next().unwrap_or_default().to_owned();
        if req.query("open_revs").is_some() && missing.contains(&id.as_str()) {
            return Rule::Answer(Reply::json(200, &json!([])));
        }
        Rule::Forward
    })
    .await;
    let (user, password) = server.credentials().unwrap();
    let url = format!(
        "{}/{}",
        url.replacen("://", &format!("://{user}:{password}@"), 1),
        db.name()
    );
    (url, log)
}

#[tokio::test]
async fn a_bulk_get_result_left_out_is_fetched_on_its_own_and_nothing_is_lost() {
    let source = TestDb::create("lossy-bulk-get");
    fill(&source, 30);
    let (url, log) = lossy_proxy(&source, &["doc-00007"], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let target = store(&dir, "target");
    let summary = Replication::new(
        RemoteDb::from_url(&url).unwrap(),
        target.clone(),
        Default::default(),
    )
    .run()
    .await
    .unwrap();
    assert!(
        summary.doc_failures.is_empty(),
        "{:?}",
        summary.doc_failures
    );
    assert_eq!(summary.stats.docs_written, 30);
    assert_eq!(ids(&target).len(), 30);
    let doc = target.get("doc-00007", &Default::default()).unwrap();
    assert_eq!(doc["n"], 7);
    let asked_alone = log.lock().unwrap().iter().any(|r| {
        r.method == "GET" && r.path().ends_with("/doc-00007") && r.query("open_revs").is_some()
    });
    assert!(
        asked_alone,
        "the left-out revision was asked for with open_revs"
    );
}

#[tokio::test]
async fn a_revision_the_source_never_gives_is_a_reported_failure_not_a_silent_skip() {
    let source = TestDb::create("missing-rev");
    fill(&source, 30);
    let (url, _) = lossy_proxy(&source, &["doc-00013"], &["doc-00013"]).await;
    let dir = tempfile::tempdir().unwrap();
    let target = store(&dir, "target");
    let summary = Replication::new(
        RemoteDb::from_url(&url).unwrap(),
        target.clone(),
        Default::default(),
    )
    .run()
    .await
    .unwrap();
    let failed: Vec<&str> = summary.doc_failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(failed, ["doc-00013"]);
    assert_eq!(summary.doc_failures[0].error, "not_found");
    assert_eq!(summary.stats.docs_written, 29);
    assert_eq!(summary.stats.doc_write_failures, 1);
    assert_eq!(ids(&target).len(), 29);
    assert!(target.get("doc-00013", &Default::default()).is_err());
    // The failure is kept with the checkpoint, for `settee status`.
    let id = summary.replication_id.clone();
    let log = target.get_local(&format!("_local/{id}")).unwrap();
    assert_eq!(log["doc_failures"][0]["id"], "doc-00013");
}
