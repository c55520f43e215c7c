//! The store workload of issue 3 on settee-store, printed as JSON lines
//! `{impl, op, durability, count, seconds, ops_per_sec}` on stdout.
//!
//! Phases, each timed on its own: `bulk_docs` of N notes in batches of 1,000 (immediate
//! durability, one fsync per batch), single `put`s with immediate durability, the same bulk
//! load into a second store with relaxed durability, single `put`s (relaxed), `get`s by id
//! in a pseudo-random order, and one full `_changes` scan. Counts come from the environment (see `Counts::from_env`) so a quick
//! run can use fewer documents. Usage: `settee-store-workload DIR` (DIR must not exist yet).

#[path = "../../notes.rs"]
#[allow(dead_code)]
mod notes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use settee_store::{ChangesOptions, Database, Durability, GetOptions, OpenOptions};

/// The same allocator as the `settee` CLI and the other Rust bench program (jemalloc, with
/// `narenas:1` from `.cargo/config.toml`), so the Settee/RouchDB ratios compare the
/// databases, not glibc's malloc against jemalloc. Store run 4 in docs/benchmarks.md was the
/// last one on glibc's malloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Counts {
    docs: u64,
    batch: u64,
    puts: u64,
    puts_immediate: u64,
    gets: u64,
}

impl Counts {
    fn from_env() -> Result<Counts> {
        let var = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
                Err(_) => Ok(default),
            }
        };
        Ok(Counts {
            docs: var("BENCH_DOCS", 100_000)?,
            batch: var("BENCH_BATCH", 1_000)?,
            puts: var("BENCH_PUTS", 10_000)?,
            puts_immediate: var("BENCH_PUTS_IMMEDIATE", 1_000)?,
            gets: var("BENCH_GETS", 100_000)?,
        })
    }
}

fn report(op: &str, durability: &str, count: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "settee",
            "op": op,
            "durability": durability,
            "count": count,
            "seconds": seconds,
            "ops_per_sec": count as f64 / seconds,
        })
    );
}

/// Peak resident memory so far (VmHWM), in KiB; 0 where /proc is missing.
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

fn open(path: &Path, durability: Durability) -> Result<Database> {
    // BENCH_CACHE_MB: sled's page cache (the store's default is 64 MiB).
    let cache_capacity = match std::env::var("BENCH_CACHE_MB") {
        Ok(v) => v.parse::<u64>().map_err(|e| format!("BENCH_CACHE_MB={v}: {e}"))? * 1024 * 1024,
        Err(_) => OpenOptions::default().cache_capacity,
    };
    Ok(Database::open_with(OpenOptions {
        path: path.to_owned(),
        durability,
        cache_capacity,
        ..Default::default()
    })?)
}

fn bulk_load(db: &Database, c: &Counts) -> Result<()> {
    let mut i = 0;
    while i < c.docs {
        let end = (i + c.batch).min(c.docs);
        let docs = (i..end).map(|k| notes::note("note-", k)).collect();
        for r in db.bulk_docs(docs, true)? {
            if !r.is_ok() {
                return Err(format!("bulk_docs: {} failed: {:?}", r.id, r.error).into());
            }
        }
        i = end;
    }
    Ok(())
}

fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: settee-store-workload DIR")?);
    let c = Counts::from_env()?;
    let relaxed = Durability::Relaxed {
        flush_every: Duration::from_millis(500),
    };

    // The main store: bulk load with immediate durability (the default: one fsync per batch).
    // It runs first, so the peak RSS reported after it is the 100,000-document load's alone.
    let path = dir.join("main");
    {
        let db = open(&path, Durability::Immediate)?;
        let t = Instant::now();
        bulk_load(&db, &c)?;
        report("bulk_docs", "immediate", c.docs, t.elapsed());
        println!(
            "{}",
            serde_json::json!({"impl": "settee", "op": "peak_rss_after_bulk", "kib": peak_rss_kib()})
        );

        let t = Instant::now();
        for k in 0..c.puts_immediate {
            db.put(notes::note("put-immediate-", k))?;
        }
        report("put", "immediate", c.puts_immediate, t.elapsed());
    }

    // The same load with relaxed durability, into a store of its own (closed afterwards).
    {
        let db = open(&dir.join("relaxed"), relaxed)?;
        let t = Instant::now();
        bulk_load(&db, &c)?;
        db.flush()?;
        report("bulk_docs", "relaxed", c.docs, t.elapsed());
    }

    let db = open(&path, relaxed)?;
    let t = Instant::now();
    for k in 0..c.puts {
        db.put(notes::note("put-", k))?;
    }
    db.flush()?;
    report("put", "relaxed", c.puts, t.elapsed());

    let order = notes::read_order(c.docs, c.gets);
    let opts = GetOptions::default();
    let t = Instant::now();
    for &k in &order {
        let doc = db.get(&notes::note_id("note-", k), &opts)?;
        std::hint::black_box(doc);
    }
    report("get", "-", c.gets, t.elapsed());

    let t = Instant::now();
    let changes = db.changes(&ChangesOptions::default())?;
    let rows = changes.results.len() as u64;
    let expected = c.docs + c.puts + c.puts_immediate;
    if rows != expected {
        return Err(format!("changes: {rows} rows, expected {expected}").into());
    }
    report("changes", "-", rows, t.elapsed());
    println!(
        "{}",
        serde_json::json!({"impl": "settee", "op": "peak_rss", "kib": peak_rss_kib()})
    );
    Ok(())
}
