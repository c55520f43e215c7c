//! Where a Settee store's bytes go (issue 24, "Disk"): loads N notes (the same bodies as
//! `bench/notes.rs`) into a new store with `bulk_docs`, then prints JSON lines: the
//! directory's size after the load, the live bytes of each key family (key + value, read
//! with plain sled after the store is closed), and the directory's size after
//! `Database::rewrite` (`compact`, then a copy into fresh files). Usage: `settee-store-disk DIR` (DIR must not exist); `BENCH_DOCS`
//! (default 100,000) and `BENCH_BATCH` (1,000) as in the store workload. With
//! `DISK_ONLY_MEASURE=1` it loads nothing and measures the store at DIR as it is (a store
//! `settee pull` made, for `bench/disk.sh`).

#[path = "../../../notes.rs"]
#[allow(dead_code)]
mod notes;

use std::collections::BTreeMap;
use std::path::Path;

use settee_store::{Database, OpenOptions};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn var(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

/// Bytes of every file under `dir` (what `du --apparent-size` counts).
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// Live bytes per key family (the first key byte), read with sled itself.
fn families(dir: &Path) -> Result<()> {
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree(b"settee")?;
    let mut by_kind: BTreeMap<char, (u64, u64, u64)> = BTreeMap::new();
    for item in tree.iter() {
        let (k, v) = item?;
        let e = by_kind.entry(char::from(k[0])).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    for (kind, (count, keys, values)) in by_kind {
        println!(
            "{}",
            serde_json::json!({"op": "family", "kind": kind.to_string(), "count": count,
                "key_bytes": keys, "value_bytes": values})
        );
    }
    Ok(())
}

fn size(op: &str, dir: &Path) -> Result<()> {
    println!("{}", serde_json::json!({"op": op, "bytes": dir_bytes(dir)?}));
    Ok(())
}

fn main() -> Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: settee-store-disk DIR")?);
    let docs = var("BENCH_DOCS", 100_000)?;
    let batch = var("BENCH_BATCH", 1_000)?.max(1);
    if std::env::var("DISK_ONLY_MEASURE").is_err() {
        let db = Database::open_with(OpenOptions::new(&dir))?;
        let mut i = 0;
        while i < docs {
            let end = (i + batch).min(docs);
            let batch_docs = (i..end).map(|k| notes::note("note-", k)).collect();
            for r in db.bulk_docs(batch_docs, true)? {
                if !r.is_ok() {
                    return Err(format!("bulk_docs: {} failed: {:?}", r.id, r.error).into());
                }
            }
            i = end;
        }
        let json: u64 = (0..docs)
            .map(|k| serde_json::to_vec(&notes::note("note-", k)).map_or(0, |v| v.len() as u64))
            .sum();
        println!("{}", serde_json::json!({"op": "json", "bytes": json, "docs": docs}));
    }
    size("after_load", &dir)?;
    families(&dir)?;
    {
        // `rewrite`: the compaction, then the live keys copied into fresh sled files.
        let db = Database::open_with(OpenOptions::new(&dir))?;
        drop(db.rewrite()?);
    }
    size("after_compact", &dir)?;
    Ok(())
}
