//! SIGKILL during streamed attachment writes (issue 23), in `crash.rs`'s pattern: this test
//! binary starts itself again as a child that writes attachments from a reader in a loop
//! (some with bytes an earlier one had, some staged and dropped, a `compact` now and then),
//! printing a line as it reads each piece of its source and logging (fsynced) each
//! acknowledged write. The parent kills it mid-stream, reopens the store and checks that
//! `verify` passes (so no chunk of an unfinished write is left: every chunk belongs to a
//! committed attachment, since open removes staged ones), that every acknowledged attachment
//! reads back whole, and that every attachment a document names reads back with its digest
//! (a half-written one is never visible). Rerun a failure with `SETTEE_CRASH_SEED=<seed>`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use base64::Engine;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use settee_store::{AllDocsOptions, Database, OpenOptions};

const CHILD_PATH: &str = "SETTEE_STORE_ATT_CRASH_CHILD";
const CHILD_SEED: &str = "SETTEE_STORE_ATT_CRASH_CHILD_SEED";
const KILLS: usize = 6;
/// Bytes per read of the child's source: several reads per chunk, so kills land inside one.
const PIECE: usize = 64 * 1024;

/// The child's source: seeded bytes, a line on stdout per piece read.
struct Source {
    left: usize,
    rng: StdRng,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left).min(PIECE);
        self.rng.fill(&mut buf[..n]);
        self.left -= n;
        println!("piece");
        Ok(n)
    }
}

fn digest(bytes_md5: Md5) -> String {
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(bytes_md5.finalize())
    )
}

fn acked_log(store: &std::path::Path) -> std::path::PathBuf {
    store.with_extension("acked")
}

#[test]
fn attachment_crash_child() {
    let (Ok(path), Ok(seed)) = (std::env::var(CHILD_PATH), std::env::var(CHILD_SEED)) else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let db = Database::open_with(OpenOptions {
        lock_wait: common::REOPEN_WAIT,
        ..OpenOptions::new(&path)
    })
    .unwrap();
    let mut rng = StdRng::seed_from_u64(seed.parse().unwrap());
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acked_log(&path))
        .unwrap();
    let mut last_seed = 0u64;
    for i in 0u64.. {
        let len = rng.gen_range(0..(1 << 20) + 3);
        // Every third write repeats the previous bytes: the dedup path.
        let source_seed = if i % 3 == 2 { last_seed } else { rng.gen() };
        last_seed = source_seed;
        let source = Source {
            left: len,
            rng: StdRng::seed_from_u64(source_seed),
        };
        let id = format!("{seed}-{i}");
        match rng.gen_range(0..10) {
            0 => drop(db.stage_attachment(source).unwrap()),
            1 => db.compact().unwrap(),
            _ => {
                db.put_attachment_from(&id, None, "a.bin", "application/octet-stream", source)
                    .unwrap();
                let att = db.attachment_reader(&id, None, "a.bin").unwrap();
                // Each line starts with a newline: a line cut by the kill stays apart.
                write!(log, "\n{id} {}\n", att.digest()).unwrap();
                log.sync_all().unwrap();
            }
        }
        println!("ack");
    }
}

/// Reads attachment `a.bin` of `id` a chunk at a time; its digest as the bytes give it.
fn streamed_digest(db: &Database, id: &str) -> (String, String) {
    let mut reader = db.attachment_reader(id, None, "a.bin").unwrap();
    let named = reader.digest().to_owned();
    let mut md5 = Md5::new();
    let mut n = 0u64;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        n += chunk.len() as u64;
        md5.update(&chunk);
    }
    assert_eq!(n, reader.length(), "{id}: length");
    (named, digest(md5))
}

#[test]
fn sigkill_during_attachment_writes_leaves_nothing_half_written() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let seed: u64 = std::env::var("SETTEE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("attachment crash test seed: {seed} (rerun with SETTEE_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0;
    for kill in 1..=KILLS {
        let child_seed: u64 = rng.gen();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "attachment_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_PATH, &path)
            .env(CHILD_SEED, child_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Dies after a random number of pieces read: mostly inside a chunk being staged,
        // sometimes in a commit, a dropped staging or a compaction.
        let target = rng.gen_range(1..80);
        let mut pieces = 0;
        let mut line = String::new();
        while pieces < target {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("seed {seed}: child {child_seed} exited early (run it alone to see why)");
            }
            if line.trim_end() == "piece" {
                pieces += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let db = Database::open_with(OpenOptions {
            lock_wait: common::REOPEN_WAIT,
            ..OpenOptions::new(&path)
        })
        .unwrap_or_else(|e| panic!("seed {seed} kill {kill}: store does not open: {e}"));
        // Every chunk belongs to a committed attachment: open removed the staged ones.
        let report = db
            .verify()
            .unwrap_or_else(|e| panic!("seed {seed} kill {kill}: invariant broken: {e}"));
        assert_eq!(report.staged_attachments, 0, "seed {seed} kill {kill}");
        let log = std::fs::read_to_string(acked_log(&path)).unwrap_or_default();
        for l in log.lines().filter(|l| l.split(' ').count() == 2) {
            let (id, logged) = l.split_once(' ').unwrap();
            let (named, read) = streamed_digest(&db, id);
            assert_eq!(
                (named.as_str(), read.as_str()),
                (logged, logged),
                "seed {seed} kill {kill}: acknowledged {id}"
            );
            acked_total += 1;
        }
        // Whatever a document names (the write the kill cut included) reads back whole.
        for row in db.all_docs(&AllDocsOptions::default()).unwrap().rows {
            let id = row.id.unwrap();
            let (named, read) = streamed_digest(&db, &id);
            assert_eq!(named, read, "seed {seed} kill {kill}: {id}");
        }
    }
    eprintln!("attachment crash test: {KILLS} kills, {acked_total} acknowledged reads checked");
    assert!(
        acked_total > 0,
        "seed {seed}: no write was ever acknowledged"
    );
}
