//! A full disk (issue 19). The `settee` child runs with a file size limit (`RLIMIT_FSIZE`)
//! and `SIGXFSZ` ignored, so a write past the limit fails with `EFBIG` as a write to a full
//! disk fails with `ENOSPC`; the store maps both to `disk_full`. The limit is set by
//! `prlimit` under `sh` (`trap '' XFSZ` is inherited across `exec`) rather than by
//! `setrlimit` in a `pre_exec` hook, because the workspace forbids `unsafe` code, tests
//! included.
//!
//! A small filesystem shows `ENOSPC` itself, where the machine has one: set
//! `SETTEE_TEST_SMALL_FS` to a directory on a small filesystem (a tmpfs of a few MiB) to run
//! that variant; without it the test prints a note and checks the limit variant only.

#[allow(unused_imports)]
use settee::Documents as _;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee::store::Database;

use super::{assert_same_trees, assert_status_clean, settee, Couch};
use crate::common::wait_until;

/// `len` characters that do not compress: the store keeps bodies zstd-compressed (format 9),
/// so a repeated text would be far smaller on disk than the limits these tests set.
fn incompressible(len: usize) -> String {
    let mut rng = StdRng::seed_from_u64(len as u64);
    let bytes: Vec<u8> = (0..len * 3 / 4).map(|_| rng.gen()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `cmd` run with a file size limit of `limit` bytes (none with `None`), `SIGXFSZ` ignored.
/// Fails the test if it does not exit within a minute (sled waits forever on a log it cannot
/// write; the store must not).
fn run_limited(cmd: Command, limit: Option<u64>, stdin: Option<&Path>) -> Output {
    let mut limited = Command::new("sh");
    limited.arg("-c").arg(
        r#"trap '' XFSZ; lim=$1; shift; if [ "$lim" = none ]; then exec "$@"; fi; exec prlimit --fsize="$lim" "$@""#,
    );
    limited.arg("sh");
    limited.arg(limit.map_or("none".into(), |l| l.to_string()));
    limited.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    if let Some(file) = stdin {
        limited.stdin(std::fs::File::open(file).unwrap());
    }
    let mut child = limited
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh and prlimit (util-linux) run the child");
    let mut exited = false;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(Duration::from_secs(60), "the settee child to exit", || {
            exited = child.try_wait().unwrap().is_some();
            exited
        })
    }));
    if waited.is_err() {
        let _ = child.kill();
        panic!("`settee` did not exit within a minute after the disk filled up: it hangs");
    }
    child.wait_with_output().unwrap()
}

/// A file size limit `room` bytes above what the store at `store` needs to open: its
/// largest file (sled's log), at least one of sled's 512 KiB log segments, which opening a
/// store fills out.
fn limit_above(store: &Path, room: u64) -> u64 {
    let largest = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .max()
        .unwrap();
    largest.max(512 * 1024) + room
}

/// Checks a failed command's stderr: a disk-full message a user understands, naming the
/// store and what to do.
fn assert_disk_full_message(out: &Output, store: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 on a full disk: {stderr}"
    );
    for words in [
        "disk_full",
        "no space left on the disk",
        &store.display().to_string(),
        "free some space",
    ] {
        assert!(stderr.contains(words), "{words:?} is not in: {stderr}");
    }
}

/// A store with three small documents; returns their revisions.
fn small_store(store: &Path) -> Vec<(String, String)> {
    let db = Database::open(store).unwrap();
    (0..3)
        .map(|i| {
            let r = db
                .put(json!({"_id": format!("small-{i}"), "i": i}))
                .unwrap();
            (r.id, r.rev.unwrap().to_string())
        })
        .collect()
}

/// After a failed write: the store opens, verifies, and holds exactly what it held.
fn assert_unchanged(store: &Path, before: &[(String, String)], absent: &str) {
    let db = super::reopen(store);
    db.verify().unwrap();
    for (id, rev) in before {
        let doc = db.get(id, &Default::default()).unwrap();
        assert_eq!(doc["_rev"], json!(rev), "{id}");
    }
    let err = db.get(absent, &Default::default()).unwrap_err();
    assert!(err.is_not_found(), "the failed write was committed: {err}");
    assert_eq!(db.info().unwrap().doc_count, before.len() as u64);
}

/// `settee put STORE` of a 1 MiB document past the store's file size limit: exit 1 with a
/// disk-full message, nothing committed, the store opens and verifies; with the limit
/// lifted the same command works.
#[test]
fn a_write_on_a_full_disk_fails_clearly_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let before = small_store(&store);
    let limit = limit_above(&store, 256 * 1024);
    // Through stdin: too big for an argument.
    let big = dir.path().join("big.json");
    let doc = json!({"_id": "big", "text": incompressible(1 << 20)});
    std::fs::write(&big, doc.to_string()).unwrap();
    let put = || {
        let mut cmd = settee();
        cmd.arg("put").arg(&store);
        cmd
    };
    let out = run_limited(put(), Some(limit), Some(&big));
    assert_disk_full_message(&out, &store);
    assert_unchanged(&store, &before, "big");
    let out = run_limited(put(), None, Some(&big));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = super::reopen(&store);
    db.verify().unwrap();
    assert_eq!(db.info().unwrap().doc_count, 4);
}

/// Child role of [`a_store_handle_refuses_writes_after_a_full_disk`]: with
/// `SETTEE_DISK_FULL_CHILD` set to a store path, write past the limit, then try again, then
/// drop the handle; print each outcome.
#[test]
fn disk_full_child() {
    let Ok(path) = std::env::var("SETTEE_DISK_FULL_CHILD") else {
        return; // Not the child.
    };
    let db = Database::open(&path).unwrap();
    let big = db.put(json!({"_id": "big", "text": incompressible(1 << 20)}));
    println!(
        "big: {}",
        big.map(|_| "ok".into())
            .unwrap_or_else(|e| e.name().to_owned())
    );
    // sled cannot write its log after that: without the store's guard this waits forever.
    let small = db.put(json!({"_id": "small-after"}));
    println!(
        "small: {}",
        small
            .map(|_| "ok".into())
            .unwrap_or_else(|e| e.name().to_owned())
    );
    drop(db);
    println!("dropped");
}

/// The store itself (no CLI): a write past the limit is `disk_full`, and so is the next
/// write on the same handle, at once; dropping the handle returns. The store then opens and
/// holds neither document.
#[test]
fn a_store_handle_refuses_writes_after_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let before = small_store(&store);
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "disk_full::disk_full_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SETTEE_DISK_FULL_CHILD", &store);
    let out = run_limited(child, Some(limit_above(&store, 256 * 1024)), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["big: disk_full", "small: disk_full", "dropped"] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains(line),
            "{line:?} is not in: {stdout}{stderr}"
        );
    }
    assert_unchanged(&store, &before, "big");
    assert_unchanged(&store, &before, "small-after");
}

/// A store where sled left an unfinished snapshot (`snap.*.generating`, empty: opening a
/// store on a full disk leaves one, as does a crash while sled writes one) opens, with its
/// documents, instead of being "not a store": sled 0.34 reads that file as the newest
/// snapshot and reports corruption.
#[test]
fn a_store_with_an_unfinished_snapshot_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let before = small_store(&store);
    let unfinished = store.join(format!("snap.{:016X}.generating", u64::MAX >> 8));
    std::fs::write(&unfinished, b"").unwrap();
    assert_unchanged(&store, &before, "big");
    assert!(
        !unfinished.exists(),
        "the unfinished snapshot is still there"
    );
}

/// The same on a small filesystem (`ENOSPC`), where one is given.
#[test]
fn a_write_on_a_full_small_filesystem_fails_clearly() {
    let Ok(fs) = std::env::var("SETTEE_TEST_SMALL_FS") else {
        eprintln!(
            "note: SETTEE_TEST_SMALL_FS is not set (a directory on a small filesystem, such as \
             a tmpfs of a few MiB): the ENOSPC variant is skipped; the RLIMIT_FSIZE variant runs"
        );
        return;
    };
    let dir = tempfile::tempdir_in(fs).unwrap();
    let store = dir.path().join("store");
    let before = small_store(&store);
    // Fill the filesystem up to 1 MiB with another file (what the user frees later), then
    // write a document twice that size.
    let filler = dir.path().join("filler");
    let free = fs_free(dir.path()).saturating_sub(1024 * 1024);
    std::fs::write(&filler, vec![0u8; usize::try_from(free).unwrap()]).unwrap();
    let big = json!({"_id": "big", "text": incompressible(2 << 20)}).to_string();
    // The document goes through stdin (too big for an argument), from a file elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    drop(big);
    let mut put = settee();
    put.arg("put").arg(&store);
    let out = run_limited(put, None, Some(&file));
    assert_disk_full_message(&out, &store);
    // Opened while the disk is still full: the same error, and the store is not damaged.
    let mut info = settee();
    info.arg("info").arg(&store);
    let out = run_limited(info, None, None);
    assert_disk_full_message(&out, &store);
    std::fs::remove_file(&filler).unwrap();
    assert_unchanged(&store, &before, "big");
}

/// `df`'s free space on the filesystem holding `dir`, in bytes.
fn fs_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// `settee replicate URL STORE` of documents with attachments into a store with a file size
/// limit: it stops with the disk-full error (exit 1, on stderr), the store opens and
/// verifies, and the next run (limit lifted) resumes from the checkpoint to identical trees
/// and an exact status.
#[test]
fn a_pull_into_a_full_disk_stops_with_the_error_and_resumes() {
    let mut rng = StdRng::seed_from_u64(super::seed("disk_full_pull"));
    let couch = Couch::create("disk-full-pull");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = 60;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            // Attachment files are files of their own (format 8), so the file size limit
            // stops a pull at an attachment longer than it: p040's.
            let len = if i == 40 { 3 << 20 } else { 60_000 };
            let bin: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let text = "settee ".repeat(rng.gen_range(100..2000));
            json!({"_id": format!("p{i:03}"), "i": i, "_attachments": {
                "blob.bin": {"content_type": "application/octet-stream", "data": b64(&bin)},
                "note.txt": {"content_type": "text/plain", "data": b64(text.as_bytes())}}})
        })
        .collect();
    rt.block_on(couch.post("/_bulk_docs", json!({"docs": docs})));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop(Database::open(&store).unwrap());
    let url = couch.db.url_with_user();
    let pull = || {
        let mut cmd = settee();
        cmd.arg("replicate").arg(&url).arg(&store);
        cmd.args(["--batch-size", "5", "--checkpoint-interval", "0", "--json"]);
        cmd
    };
    // Room for a few batches, not for p040's attachment (3 MiB, one file of its own).
    let limit = limit_above(&store, 2 * 1024 * 1024);
    let out = run_limited(pull(), Some(limit), None);
    assert_disk_full_message(&out, &store);
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let checkpoints = events.iter().filter(|e| e["event"] == "checkpoint").count();
    assert!(
        checkpoints > 0,
        "no checkpoint before the disk filled up: the limit is too low to show a resume"
    );
    {
        let db = super::reopen(&store);
        db.verify().unwrap();
        let pulled = db.info().unwrap().doc_count;
        assert!(
            pulled < n,
            "everything fit ({pulled}): the limit is too high"
        );
    }
    // Space is back: the next run resumes from the checkpoint and finishes.
    let out = run_limited(pull(), None, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let complete = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "complete")
        .expect("a complete event");
    let read = complete["summary"]["changes_read"].as_u64().unwrap();
    assert!(
        read < n,
        "the run after the disk was full started over ({read} read)"
    );
    let ids: BTreeSet<String> = (0..n).map(|i| format!("p{i:03}")).collect();
    rt.block_on(assert_same_trees(&couch, &store, &ids));
    assert_status_clean(&store, &url, dir.path());
}
