//! The store workload of issue 3 on RouchDB (crates.io `rouchdb`, redb storage), printed as
//! the same JSON lines as `bench/store-workload`: `{impl, op, durability, count, seconds,
//! ops_per_sec}`. Same notes (`bench/notes.rs`), same phases, same counts (`BENCH_*` env).
//!
//! RouchDB has no durability setting: every write is one redb transaction committed with
//! redb's default `Durability::Immediate` (fsync), so its lines say "immediate", and the
//! relaxed lines of Settee have no RouchDB counterpart. Usage: `rouchdb-workload DIR`.

#[path = "../../notes.rs"]
#[allow(dead_code)]
mod notes;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rouchdb::{BulkDocsOptions, ChangesOptions, Database, Document};

/// The same allocator as the `settee` CLI and the other Rust bench program (jemalloc, with
/// `narenas:1` from `.cargo/config.toml`), so the Settee/RouchDB ratios compare the
/// databases, not glibc's malloc against jemalloc. Store run 4 in docs/benchmarks.md was the
/// last one on glibc's malloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn var(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn report(op: &str, durability: &str, count: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "rouchdb",
            "op": op,
            "durability": durability,
            "count": count,
            "seconds": seconds,
            "ops_per_sec": count as f64 / seconds,
        })
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `put` takes the id separately and the body without it.
fn put_args(mut v: serde_json::Value) -> (String, serde_json::Value) {
    let id = v
        .as_object_mut()
        .and_then(|o| o.remove("_id"))
        .and_then(|id| id.as_str().map(str::to_owned))
        .unwrap_or_default();
    (id, v)
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: rouchdb-workload DIR")?);
    let docs = var("BENCH_DOCS", 100_000)?;
    let batch = var("BENCH_BATCH", 1_000)?;
    let puts = var("BENCH_PUTS", 10_000)?;
    let gets = var("BENCH_GETS", 100_000)?;
    std::fs::create_dir_all(&dir)?;
    let db = Database::open(dir.join("main.redb"), "rouchdb-workload")?;

    let t = Instant::now();
    let mut i = 0;
    while i < docs {
        let end = (i + batch).min(docs);
        let batch_docs = (i..end)
            .map(|k| Document::from_json(notes::note("note-", k)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in db.bulk_docs(batch_docs, BulkDocsOptions::new()).await? {
            if !r.ok {
                return Err(format!("bulk_docs: {} failed: {:?}", r.id, r.error).into());
            }
        }
        i = end;
    }
    report("bulk_docs", "immediate", docs, t.elapsed());
    println!(
        "{}",
        serde_json::json!({"impl": "rouchdb", "op": "peak_rss_after_bulk", "kib": peak_rss_kib()})
    );

    // Single puts: RouchDB's only mode is immediate, so the 10,000 puts are immediate ones.
    let t = Instant::now();
    for k in 0..puts {
        let (id, body) = put_args(notes::note("put-", k));
        db.put(&id, body).await?;
    }
    report("put", "immediate", puts, t.elapsed());

    let order = notes::read_order(docs, gets);
    let t = Instant::now();
    for &k in &order {
        let doc = db.get(&notes::note_id("note-", k)).await?;
        std::hint::black_box(doc);
    }
    report("get", "-", gets, t.elapsed());

    let t = Instant::now();
    let changes = db.changes(ChangesOptions::default()).await?;
    let rows = changes.results.len() as u64;
    if rows != docs + puts {
        return Err(format!("changes: {rows} rows, expected {}", docs + puts).into());
    }
    report("changes", "-", rows, t.elapsed());
    println!(
        "{}",
        serde_json::json!({"impl": "rouchdb", "op": "peak_rss", "kib": peak_rss_kib()})
    );
    Ok(())
}
