//! One RouchDB replication for `bench/replication.sh`: `rouchdb-replicate SOURCE TARGET`,
//! each an http(s) URL of a database or a path to a redb file. Prints one JSON line with
//! the wall time and RouchDB's result. Batch size: RouchDB's default (100) unless
//! `REPL_BATCH_SIZE` is set.

use std::time::Instant;

use rouchdb::{Database, ReplicationOptions};

/// The same allocator as the `settee` CLI and the store bench programs (jemalloc, with
/// `narenas:1` from `.cargo/config.toml`), so the Settee/RouchDB ratios compare the
/// databases, not glibc's malloc against jemalloc. Store run 4 in docs/benchmarks.md was the
/// last one on glibc's malloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open(spec: &str) -> Result<Database> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        Ok(Database::http(spec))
    } else {
        // The name is part of the replication id: keep it distinct from the remote db names.
        Ok(Database::open(spec, "rouchdb-local")?)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(target)) = (args.next(), args.next()) else {
        return Err("usage: rouchdb-replicate SOURCE TARGET".into());
    };
    let mut opts = ReplicationOptions::default();
    if let Ok(b) = std::env::var("REPL_BATCH_SIZE") {
        opts.batch_size = b.parse()?;
    }
    let (src, dst) = (open(&source)?, open(&target)?);
    let t = Instant::now();
    let r = src.replicate_to_with_opts(&dst, opts).await?;
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "rouchdb", "seconds": seconds, "ok": r.ok, "docs_read": r.docs_read,
            "docs_written": r.docs_written, "errors": r.errors, "warnings": r.warnings,
        })
    );
    if !r.ok {
        return Err(format!("replication failed: {:?}", r.errors).into());
    }
    Ok(())
}
