//! The Mango workload of issue 12 on settee-store, printed as JSON lines
//! `{impl, op, count, seconds, cpu_seconds, ...}` on stdout.
//!
//! The notes of `bench/notes.rs` with a `notebook` (one of 20, from the note's index, as
//! `bench/find-notes.js` computes it for PouchDB). Phases, each timed on its own:
//!
//! - `bulk_docs` of N notes in batches of 1,000 (immediate durability) into a store without
//!   indexes, then into a store with two indexes (`[notebook, updated_at]`, `[updated_at]`)
//!   created first;
//! - building `[notebook, updated_at]` over the first store (`create_index`);
//! - `find` notebook = X sorted by `updated_at` descending, limit 20, for `BENCH_QUERIES`
//!   notebooks in a pseudo-random order (after 100 warm-up queries): p50, p90, p99.
//!
//! Usage: `settee-find-workload DIR` (DIR must not exist yet). `BENCH_DOCS` (100,000),
//! `BENCH_QUERIES` (2,000).

#[path = "../../notes.rs"]
#[allow(dead_code)]
mod notes;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use settee_store::{Database, FindRequest, OpenOptions};

/// The same allocator as the `settee` CLI and the other Rust bench programs (jemalloc, with
/// `narenas:1` from `.cargo/config.toml`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const BATCH: u64 = 1000;
const NOTEBOOKS: u32 = 20;

/// The notebook of note `i`: its own xorshift stream, so `notes::note` stays as it is.
fn notebook(i: u64) -> String {
    let mut rng = notes::Rng::new((i as u32) ^ 0x5EED_0B0C);
    format!("notebook-{:02}", rng.below(NOTEBOOKS))
}

fn note(i: u64) -> Value {
    let mut n = notes::note("note-", i);
    n["notebook"] = json!(notebook(i));
    n
}

fn var(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

/// CPU time of this process so far (user + system, all threads), from /proc: a shared
/// machine changes wall time more than CPU time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime, in clock ticks of 1/100 s.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn report(op: &str, count: u64, wall: Duration, cpu: Duration, extra: Value) {
    let mut line = json!({
        "impl": "settee",
        "op": op,
        "count": count,
        "seconds": wall.as_secs_f64(),
        "cpu_seconds": cpu.as_secs_f64(),
        "ops_per_sec": count as f64 / wall.as_secs_f64().max(1e-9),
    });
    if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
        l.extend(e);
    }
    println!("{line}");
}

fn load(db: &Database, docs: u64) -> Result<(Duration, Duration)> {
    let (started, cpu) = (Instant::now(), cpu_time());
    let mut i = 0;
    while i < docs {
        let end = (i + BATCH).min(docs);
        let batch: Vec<Value> = (i..end).map(note).collect();
        for r in db.bulk_docs(batch, true)? {
            if !r.is_ok() {
                return Err(format!("write failed: {r:?}").into());
            }
        }
        i = end;
    }
    Ok((started.elapsed(), cpu_time() - cpu))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).ok_or("usage: settee-find-workload DIR")?;
    let dir = Path::new(&dir);
    let docs = var("BENCH_DOCS", 100_000)?;
    let queries = var("BENCH_QUERIES", 2_000)?;
    let by_notebook = json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "nb", "name": "nb"});

    let plain = Database::open_with(OpenOptions::new(dir.join("plain")))?;
    let (wall, cpu) = load(&plain, docs)?;
    report("bulk_docs", docs, wall, cpu, json!({"indexes": 0}));

    let indexed = Database::open_with(OpenOptions::new(dir.join("indexed")))?;
    indexed.create_index(&by_notebook)?;
    indexed.create_index(&json!({"index": {"fields": ["updated_at"]}, "ddoc": "u", "name": "u"}))?;
    let (wall, cpu) = load(&indexed, docs)?;
    report("bulk_docs", docs, wall, cpu, json!({"indexes": 2}));
    drop(indexed);

    let (started, cpu) = (Instant::now(), cpu_time());
    plain.create_index(&by_notebook)?;
    report("build_index", docs, started.elapsed(), cpu_time() - cpu, json!({}));

    let mut rng = notes::Rng::new(0xF1ED);
    let mut times = Vec::with_capacity(queries as usize);
    let (started, cpu) = (Instant::now(), cpu_time());
    for q in 0..queries + 100 {
        let nb = format!("notebook-{:02}", rng.below(NOTEBOOKS));
        let req = FindRequest::parse(&json!({
            "selector": {"notebook": nb},
            "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
            "limit": 20
        }))?;
        let t = Instant::now();
        let found = plain.find(&req)?;
        let elapsed = t.elapsed();
        if found.docs.len() != 20 || found.warning.is_some() {
            return Err(format!("unexpected answer: {} docs, {:?}", found.docs.len(), found.warning).into());
        }
        if q >= 100 {
            times.push(elapsed);
        }
    }
    let (wall, cpu) = (started.elapsed(), cpu_time() - cpu);
    times.sort();
    report(
        "find",
        queries,
        wall,
        cpu,
        json!({"p50_ms": percentile(&times, 0.5), "p90_ms": percentile(&times, 0.9), "p99_ms": percentile(&times, 0.99)}),
    );
    Ok(())
}
