//! Mango benchmark (issue 12): `SETTEE_BENCH_DOCS` notes (default 100,000) with `notebook`
//! (one of 20), `tags` and `updated_at`, ~1 KB each.
//!
//! - bulk writes (`_bulk_docs` batches of 1,000, durable) into a store without indexes, then
//!   into one with two indexes (`[notebook, updated_at]` and `[updated_at]`): documents/s
//!   and the ratio;
//! - building `[notebook, updated_at]` over the loaded store;
//! - `find` notebook = X sorted by `updated_at` descending, limit 20: p50/p90/p99 over 2,000
//!   queries on random notebooks.
//!
//! Run: `cargo bench -p settee-store --bench find` (`SETTEE_BENCH_DOCS=20000` for a quick
//! one). The same data and queries for pouchdb-find: `tests/node/find-bench.js`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{Database, FindRequest, OpenOptions};

const BATCH: usize = 1000;
const NOTEBOOKS: usize = 20;

const WORDS: &[&str] = &[
    "meeting", "notes", "offline", "sync", "garden", "recipe", "travel", "budget", "draft", "idea",
    "review", "project", "weekly", "call", "follow", "up", "list", "reading",
];

fn doc_count() -> usize {
    std::env::var("SETTEE_BENCH_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// The note the benchmark describes (and `tests/node/find-bench.js` makes the same).
fn note(i: usize, rng: &mut StdRng) -> Value {
    let mut body = String::with_capacity(900);
    while body.len() < 850 {
        body.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        body.push(' ');
    }
    json!({
        "_id": format!("note-{i:08}"),
        "type": "note",
        "notebook": format!("nb-{:02}", rng.gen_range(0..NOTEBOOKS)),
        "title": format!("{} {} {i}", WORDS[i % WORDS.len()], WORDS[(i / 7) % WORDS.len()]),
        "body": body,
        "tags": [WORDS[i % 5], WORDS[5 + i % 4]],
        "updated_at": 1_700_000_000u64 + rng.gen_range(0..10_000_000u64),
    })
}

fn load(db: &Database, n: usize) -> Duration {
    let mut rng = StdRng::seed_from_u64(1);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let docs: Vec<Value> = (i..end).map(|k| note(k, &mut rng)).collect();
        let res = db.bulk_docs(docs, true).expect("bulk_docs");
        assert!(res.iter().all(|r| r.is_ok()));
        i = end;
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n = doc_count();
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = Database::open_with(OpenOptions::new(dir.path().join("plain"))).expect("open");
    let t_plain = load(&plain, n);
    let indexed = Database::open_with(OpenOptions::new(dir.path().join("indexed"))).expect("open");
    indexed
        .create_index(
            &json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "nb", "name": "nb"}),
        )
        .expect("index");
    indexed
        .create_index(&json!({"index": {"fields": ["updated_at"]}, "ddoc": "u", "name": "u"}))
        .expect("index");
    let t_indexed = load(&indexed, n);
    drop(indexed);
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    println!(
        "bulk_docs {n} notes: no index {:.0} docs/s, two indexes {:.0} docs/s ({:.0}%)",
        rate(t_plain),
        rate(t_indexed),
        100.0 * t_plain.as_secs_f64() / t_indexed.as_secs_f64()
    );
    let started = Instant::now();
    plain
        .create_index(
            &json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "nb", "name": "nb"}),
        )
        .expect("index");
    println!(
        "build [notebook, updated_at] over {n} notes: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(2);
    let mut times = Vec::with_capacity(2000);
    for q in 0..2200 {
        let nb = format!("nb-{:02}", rng.gen_range(0..NOTEBOOKS));
        let req = FindRequest::parse(&json!({
            "selector": {"notebook": nb},
            "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
            "limit": 20
        }))
        .expect("request");
        let started = Instant::now();
        let found = plain.find(&req).expect("find");
        let t = started.elapsed();
        assert_eq!(found.docs.len(), 20);
        assert!(found.warning.is_none());
        if q >= 200 {
            times.push(t);
        }
    }
    times.sort();
    println!(
        "find notebook=X sort updated_at desc limit 20: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.9).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0
    );
}
