//! Store benchmark: the issue-3 workload on realistic ~1 KB "note" documents.
//!
//! - `bulk_docs/1000_per_batch`: load `SETTEE_BENCH_DOCS` notes (default 100,000) into a
//!   fresh store in `_bulk_docs` batches of 1,000 (durable: one fsync per batch);
//! - `put/relaxed` and `put/immediate`: single `put`s of new notes (throughput per put;
//!   `immediate` fsyncs every put, so it measures the disk's fsync latency);
//! - `get/by_id`: random gets by id from the loaded store;
//! - `changes/full_scan`: one `_changes` read of the whole loaded store;
//! - `bulk_docs_synced/1000_per_batch`: the bulk load into a store that syncs with one
//!   registered remote (each new note gets its unsynced entry);
//! - `sync_state/*` on the loaded store synced with one remote except for 10 notes: the
//!   counts, the list of the unsynced notes, one note's state, and what
//!   `settee_replicate::status` reads offline (counts, list and both checkpoint documents);
//! - `sync_state/first_push`: what a first push to a new remote costs the store: registering
//!   the remote with a store of 10,000 notes, then confirming them all in seq order in
//!   batches of 100, as the replicator does after each batch it writes.
//!
//! Quick run: `SETTEE_BENCH_DOCS=5000 cargo bench -p settee-store`. `SETTEE_BENCH_CACHE_MB`
//! overrides sled's cache size (default: `OpenOptions`' 64 MiB).

// criterion_group!/criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{ChangesOptions, Database, Durability, GetOptions, OpenOptions, Rev};

const BATCH: usize = 1000;

fn doc_count() -> usize {
    std::env::var("SETTEE_BENCH_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

const WORDS: &[&str] = &[
    "meeting", "notes", "offline", "sync", "garden", "recipe", "travel", "budget", "draft", "idea",
    "review", "project", "weekly", "call", "follow", "up", "list", "reading",
];

/// A ~1 KB note, the shape an offline notes app stores.
fn note(i: usize, rng: &mut StdRng) -> Value {
    let mut body = String::with_capacity(900);
    while body.len() < 850 {
        body.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        body.push(' ');
    }
    json!({
        "_id": format!("note-{i:08}"),
        "type": "note",
        "title": format!("{} {} {i}", WORDS[i % WORDS.len()], WORDS[(i / 7) % WORDS.len()]),
        "body": body,
        "tags": [WORDS[i % 5], WORDS[5 + i % 4]],
        "author": "alice@example.com",
        "created_at": 1_700_000_000u64 + i as u64,
        "updated_at": 1_700_000_000u64 + i as u64,
        "pinned": i % 17 == 0,
    })
}

fn open(path: &std::path::Path, durability: Durability) -> Database {
    let defaults = OpenOptions::new(path);
    let cache_capacity = std::env::var("SETTEE_BENCH_CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(defaults.cache_capacity, |mb| mb * 1024 * 1024);
    Database::open_with(OpenOptions {
        durability,
        cache_capacity,
        ..defaults
    })
    .expect("open store")
}

fn load(db: &Database, n: usize) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let docs: Vec<Value> = (i..end).map(|k| note(k, &mut rng)).collect();
        let res = db.bulk_docs(docs, true).expect("bulk_docs");
        assert!(res.iter().all(|r| r.is_ok()));
        i = end;
    }
}

/// The remote the sync-state benchmarks register.
const REMOTE: &str = "http://127.0.0.1:5984/notes";

fn bench_bulk(c: &mut Criterion) {
    let n = doc_count();
    for (group, remotes) in [("bulk_docs", 0), ("bulk_docs_synced", 1)] {
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("1000_per_batch", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let db = open(&dir.path().join("db"), Durability::Immediate);
                    if remotes > 0 {
                        db.register_remote(REMOTE, Default::default())
                            .expect("register");
                    }
                    let t = Instant::now();
                    load(&db, n);
                    total += t.elapsed();
                }
                total
            })
        });
        g.finish();
    }
}

fn bench_sync_state(c: &mut Criterion) {
    let n = doc_count();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(
        &dir.path().join("db"),
        Durability::Relaxed {
            flush_every: Duration::from_millis(500),
        },
    );
    db.register_remote(REMOTE, Default::default())
        .expect("register");
    load(&db, n);
    // The remote confirms everything (as a push would, batch by batch) but 10 notes.
    let mut after: Option<String> = None;
    loop {
        let page = db
            .unsynced(REMOTE, after.as_deref(), BATCH)
            .expect("unsynced");
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let held: std::collections::BTreeMap<String, Vec<Rev>> = page
            .into_iter()
            .filter(|(id, _)| id.as_str() >= "note-00000010")
            .map(|(id, s)| match s {
                settee_store::SyncState::Unpushed { revs } => (id, revs),
                other => panic!("{id} is {other:?}"),
            })
            .collect();
        db.record_remote_revs(REMOTE, &held, &[]).expect("record");
    }
    db.put_local(json!({"_id": "_local/push", "history": []}))
        .expect("checkpoint");
    assert_eq!(db.sync_counts(REMOTE).expect("counts").unsynced, 10);
    let mut g = c.benchmark_group("sync_state");
    g.bench_function(BenchmarkId::new("counts", n), |b| {
        b.iter(|| black_box(db.sync_counts(REMOTE).expect("counts")))
    });
    g.bench_function(BenchmarkId::new("list_10_unsynced", n), |b| {
        b.iter(|| {
            let list = db.unsynced(REMOTE, None, 256).expect("list");
            assert_eq!(list.len(), 10);
            black_box(list)
        })
    });
    let mut rng = StdRng::seed_from_u64(4);
    g.bench_function(BenchmarkId::new("one_doc", n), |b| {
        b.iter(|| {
            let id = format!("note-{:08}", rng.gen_range(0..n));
            black_box(db.sync_state(REMOTE, &id).expect("state"))
        })
    });
    g.bench_function(BenchmarkId::new("status", n), |b| {
        b.iter(|| {
            let counts = db.sync_counts(REMOTE).expect("counts");
            let list = db.unsynced(REMOTE, None, 256).expect("list");
            let push = db.get_local("push").ok();
            let pull = db.get_local("pull").ok();
            black_box((counts, list, push, pull))
        })
    });
    let first_push_docs = 10_000.min(n);
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("first_push", first_push_docs), |b| {
        b.iter_batched_ref(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = open(&dir.path().join("db"), Durability::Immediate);
                let mut by_seq: Vec<(String, Vec<Rev>)> = Vec::new();
                let mut rng = StdRng::seed_from_u64(5);
                for start in (0..first_push_docs).step_by(BATCH) {
                    let docs = (start..(start + BATCH).min(first_push_docs))
                        .map(|i| note(i, &mut rng))
                        .collect();
                    for r in db.bulk_docs(docs, true).expect("load") {
                        by_seq.push((r.id, vec![r.rev.expect("rev")]));
                    }
                }
                (dir, db, by_seq)
            },
            |(_, db, by_seq)| {
                db.register_remote(REMOTE, Default::default())
                    .expect("register");
                for batch in by_seq.chunks(100) {
                    let held = batch.iter().cloned().collect();
                    db.record_remote_revs(REMOTE, &held, &[]).expect("record");
                }
                assert_eq!(db.sync_counts(REMOTE).expect("counts").unsynced, 0);
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1));
    for (name, durability) in [
        (
            "relaxed",
            Durability::Relaxed {
                flush_every: Duration::from_millis(500),
            },
        ),
        ("immediate", Durability::Immediate),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(&dir.path().join("db"), durability);
        let mut rng = StdRng::seed_from_u64(2);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(db.put(note(i, &mut rng)).expect("put"));
            })
        });
    }
    g.finish();
}

fn bench_reads(c: &mut Criterion) {
    let n = doc_count();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(
        &dir.path().join("db"),
        Durability::Relaxed {
            flush_every: Duration::from_millis(500),
        },
    );
    load(&db, n);
    let mut rng = StdRng::seed_from_u64(3);
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1));
    let opts = GetOptions::default();
    g.bench_function("by_id", |b| {
        b.iter(|| {
            let id = format!("note-{:08}", rng.gen_range(0..n));
            black_box(db.get(&id, &opts).expect("get"));
        })
    });
    g.finish();
    let mut g = c.benchmark_group("changes");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("full_scan", n), |b| {
        b.iter(|| {
            let ch = db.changes(&ChangesOptions::default()).expect("changes");
            assert_eq!(ch.results.len(), n);
            black_box(ch);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_bulk,
    bench_put,
    bench_reads,
    bench_sync_state
);
criterion_main!(benches);
