//! What a replication holds in memory, and what it does with numbers a peer sends: fetched
//! documents stay within `max_bytes_in_flight` (one larger document goes alone), and
//! counts that do not add up never panic or wrap.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use serde_json::{json, Value};
use settee_couch::RemoteDb;
use settee_replicate::{DocFailure, FetchRequest, Fetched, Peer, ReplicateOptions, Replication};
use settee_store::Database;
use settee_testkit::http::{self, Reply};
use settee_testkit::peer::{Wrap, Wrapped};

/// Bytes of documents fetched and not yet written, shared by a source and a target.
#[derive(Default)]
struct InFlight {
    now: AtomicU64,
    max: AtomicU64,
    /// (bytes in flight before, bytes fetched) of each fetch.
    fetches: Mutex<Vec<(u64, u64)>>,
}

fn size(docs: &[Box<RawValue>]) -> u64 {
    docs.iter().map(|d| d.get().len() as u64).sum()
}

/// A peer that counts, as a source, what its fetches return, and, as a target, what it
/// writes, in one [`InFlight`]; as a target it can also answer with `extra_failures` made-up
/// rejections per write (a server whose answer does not add up), and refuse the first write
/// of the documents in `refuse_stub_once` with `missing_stub` (as CouchDB does when its copy
/// of the revision a stub refers to differs).
#[derive(Clone)]
struct Counted {
    db: Database,
    flight: Arc<InFlight>,
    extra_failures: usize,
    refuse_stub_once: Arc<Mutex<Vec<String>>>,
}

impl Wrap for Counted {
    type Inner = Database;
    fn inner(&self) -> &Database {
        &self.db
    }
    async fn fetch(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> settee_replicate::Result<Vec<Fetched>> {
        let fetched = Peer::fetch(&self.db, reqs, max_bytes).await?;
        let docs: Vec<Box<RawValue>> = fetched
            .iter()
            .filter_map(|f| match f {
                Fetched::Doc(d) => Some(d.clone()),
                Fetched::Failed(_) => None,
            })
            .collect();
        let bytes = size(&docs);
        let before = self.flight.now.fetch_add(bytes, Ordering::SeqCst);
        self.flight.max.fetch_max(before + bytes, Ordering::SeqCst);
        self.flight.fetches.lock().unwrap().push((before, bytes));
        Ok(fetched)
    }
    async fn write(
        &self,
        docs: Vec<Box<RawValue>>,
        origin: &str,
    ) -> settee_replicate::Result<Vec<DocFailure>> {
        let bytes = size(&docs);
        let mut refused = Vec::new();
        let docs: Vec<Box<RawValue>> = docs
            .into_iter()
            .filter(|d| {
                let v: Value = serde_json::from_str(d.get()).unwrap();
                let id = v["_id"].as_str().unwrap().to_owned();
                let mut once = self.refuse_stub_once.lock().unwrap();
                let Some(at) = once.iter().position(|x| *x == id) else {
                    return true;
                };
                once.remove(at);
                refused.push(DocFailure {
                    id,
                    rev: v["_rev"].as_str().map(str::to_owned),
                    error: "missing_stub".into(),
                    reason: "the target's copy of the stubs' revision differs".into(),
                });
                false
            })
            .collect();
        let mut failures = Peer::write(&self.db, docs, origin).await?;
        failures.extend(refused);
        self.flight.now.fetch_sub(bytes, Ordering::SeqCst);
        for i in 0..self.extra_failures {
            failures.push(DocFailure {
                id: format!("made-up-{i}"),
                rev: None,
                error: "forbidden".into(),
                reason: "an answer with more results than documents".into(),
            });
        }
        Ok(failures)
    }
}

fn pair(
    dir: &tempfile::TempDir,
    extra_failures: usize,
) -> (Wrapped<Counted>, Wrapped<Counted>, Arc<InFlight>) {
    let flight = Arc::new(InFlight::default());
    let open = |name: &str| Database::open(dir.path().join(name)).unwrap();
    let source = Wrapped(Counted {
        db: open("source"),
        flight: flight.clone(),
        extra_failures: 0,
        refuse_stub_once: Arc::default(),
    });
    let target = Wrapped(Counted {
        db: open("target"),
        flight: flight.clone(),
        extra_failures,
        refuse_stub_once: Arc::default(),
    });
    (source, target, flight)
}

const KIB: u64 = 1024;

#[tokio::test]
async fn fetched_documents_in_flight_stay_within_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target, flight) = pair(&dir, 0);
    // 60 documents of ~100 KiB: 6 MiB, with a budget of 1 MiB across 4 batches in flight.
    let body = "x".repeat(100 * 1024);
    let docs: Vec<Value> = (0..60)
        .map(|i| json!({"_id": format!("big-{i:03}"), "body": body}))
        .collect();
    source.db.bulk_docs(docs, true).unwrap();
    let opts = ReplicateOptions {
        batch_size: 10,
        batches_in_flight: 4,
        max_bytes_in_flight: 1024 * KIB,
        ..Default::default()
    };
    let summary = Replication::new(source.clone(), target.clone(), opts)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.stats.docs_written, 60);
    assert_eq!(target.db.info().unwrap().doc_count, 60);
    let max = flight.max.load(Ordering::SeqCst);
    assert!(max <= 1024 * KIB, "{max} bytes were in flight");
    assert!(max >= 200 * KIB, "{max}: batches ran side by side");
    assert_eq!(flight.now.load(Ordering::SeqCst), 0);
    // Each fetch read at most its share (256 KiB), so batches of 10 were fetched in pieces.
    let fetches = flight.fetches.lock().unwrap().clone();
    assert!(fetches.iter().all(|&(_, b)| b <= 256 * KIB), "{fetches:?}");
    assert!(fetches.len() >= 24, "{} fetches", fetches.len());
}

#[tokio::test]
async fn a_document_larger_than_the_budget_goes_through_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target, flight) = pair(&dir, 0);
    let small: Vec<Value> = (0..40)
        .map(|i| json!({"_id": format!("s-{i:03}"), "body": "y".repeat(50 * 1024)}))
        .collect();
    source.db.bulk_docs(small, true).unwrap();
    let huge = json!({"_id": "s-020-huge", "body": "z".repeat(3 * 1024 * 1024)});
    source.db.put(huge).unwrap();
    let opts = ReplicateOptions {
        batch_size: 5,
        batches_in_flight: 4,
        max_bytes_in_flight: 1024 * KIB,
        ..Default::default()
    };
    let summary = Replication::new(source.clone(), target.clone(), opts)
        .run()
        .await
        .unwrap();
    assert!(
        summary.doc_failures.is_empty(),
        "{:?}",
        summary.doc_failures
    );
    assert_eq!(target.db.info().unwrap().doc_count, 41);
    let huge = target.db.get("s-020-huge", &Default::default()).unwrap();
    assert_eq!(huge["body"].as_str().unwrap().len(), 3 * 1024 * 1024);
    let fetches = flight.fetches.lock().unwrap().clone();
    let alone: Vec<_> = fetches.iter().filter(|&&(_, b)| b > 1024 * KIB).collect();
    assert_eq!(alone.len(), 1, "{fetches:?}");
    assert_eq!(alone[0].0, 0, "nothing else was in flight while it was");
    assert!(
        fetches
            .iter()
            .filter(|&&(_, b)| b <= 1024 * KIB)
            .all(|&(before, b)| before + b <= 1024 * KIB),
        "{fetches:?}"
    );
}

/// Issue 19, finding 2: a revision refused with `missing_stub` is fetched again while its
/// batch still held its share of the byte budget, so with one batch in flight (or a revision
/// larger than a share, which needs the whole budget) the refetch waited on itself forever.
#[tokio::test]
async fn issue_19_a_refetch_after_missing_stub_does_not_wait_on_its_own_budget() {
    for (in_flight, body_kib) in [(1, 10), (4, 2048)] {
        let dir = tempfile::tempdir().unwrap();
        let (source, target, flight) = pair(&dir, 0);
        let docs: Vec<Value> = (0..6)
            .map(|i| json!({"_id": format!("d{i}"), "body": "x".repeat(body_kib * 1024)}))
            .collect();
        source.db.bulk_docs(docs, true).unwrap();
        *target.refuse_stub_once.lock().unwrap() = vec!["d2".into(), "d4".into()];
        let opts = ReplicateOptions {
            batch_size: 3,
            batches_in_flight: in_flight,
            max_bytes_in_flight: 1024 * KIB,
            ..Default::default()
        };
        let run = Replication::new(source.clone(), target.clone(), opts).run();
        // A guard against the hang, not a measurement: the run takes milliseconds.
        let summary = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("{in_flight} in flight, {body_kib} KiB: hung"))
            .unwrap();
        assert!(
            summary.doc_failures.is_empty(),
            "{:?}",
            summary.doc_failures
        );
        assert_eq!(target.db.info().unwrap().doc_count, 6);
        assert!(target.refuse_stub_once.lock().unwrap().is_empty());
        assert_eq!(flight.now.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_target_answering_more_results_than_documents_does_not_wrap_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target, _) = pair(&dir, 3);
    let docs: Vec<Value> = (0..2).map(|i| json!({"_id": format!("d{i}")})).collect();
    source.db.bulk_docs(docs, true).unwrap();
    let summary = Replication::new(source, target, Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        summary.stats.docs_written, 0,
        "saturates instead of wrapping"
    );
    assert_eq!(summary.stats.doc_write_failures, 3);
    assert_eq!(summary.doc_failures.len(), 3);
}

#[tokio::test]
async fn a_pending_count_at_the_top_of_the_range_does_not_overflow() {
    let (url, _) = http::serve(|req| {
        let reply = if req.path() == "/db/_changes" {
            Reply::json(
                200,
                &json!({"results": [{"seq": "1", "id": "a", "changes": [{"rev": "1-aaaa"}]}],
                        "last_seq": "1", "pending": u64::MAX}),
            )
        } else {
            Reply::json(404, &json!({"error": "not_found", "reason": "missing"}))
        };
        Box::pin(async move { reply })
    })
    .await;
    let remote = RemoteDb::from_url(&format!("{url}/db")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Database::open(dir.path().join("l")).unwrap();
    // Unpulled counts the documents the store lacks (here "a"), not the server's `pending`.
    let unpulled = settee_replicate::unpulled(&local, &remote).await.unwrap();
    assert_eq!(unpulled, 1);
}
