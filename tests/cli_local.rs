//! The `settee` command on local stores: document commands, errors and exit codes, the
//! store-in-use error, and replication killed with SIGKILL that resumes from its checkpoint.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::{json_lines, ok_json, run};
use settee_testkit::wait::Lines;

fn settee() -> Command {
    common::settee().command()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn document_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes");
    let db = path_str(&db);
    let put = ok_json(&["put", db, r#"{"_id":"a","title":"one"}"#]);
    assert_eq!(put["ok"], true);
    let rev = put["rev"].as_str().unwrap().to_owned();
    assert!(rev.starts_with("1-"));

    let got = ok_json(&["get", db, "a"]);
    assert_eq!(got["title"], "one");
    assert_eq!(got["_rev"], rev.as_str());

    // stdin works too.
    let mut child = settee()
        .args(["put", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"_id":"b","n":2}"#)
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let rows = json_lines(&run(&["all-docs", db]));
    assert_eq!(
        rows.iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    let rm = ok_json(&["rm", db, "b"]);
    assert_eq!(rm["ok"], true);
    let missing = run(&["get", db, "b"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));

    let changes = json_lines(&run(&["changes", db]));
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1]["id"], "b");
    assert_eq!(changes[1]["deleted"], true);

    let info = ok_json(&["info", db]);
    assert_eq!(info["doc_count"], 1);
    assert_eq!(info["doc_del_count"], 1);
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes");
    let db = path_str(&db);
    let out = run(&["put", db, "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid JSON"), "{err}");
    let out = run(&["put", db, r#"{"_id":"_bad"}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("illegal_docid"));
    assert_eq!(ok_json(&["info", db])["update_seq"], 0);
    // Usage errors exit 2.
    assert_eq!(run(&["put"]).status.code(), Some(2));
    assert_eq!(
        run(&["replicate", "a", "b", "--batch-size", "x"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn second_opener_gets_store_in_use_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy");
    let _held = settee::store::Database::open(&path).unwrap();
    let started = Instant::now();
    let out = run(&["info", path_str(&path)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store_in_use"), "{err}");
    assert!(err.contains(path_str(&path)), "{err}");
    // It fails rather than waiting for the lock.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn conflicts_command_lists_every_conflicted_document() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let (a, b) = (path_str(&a), path_str(&b));
    let rev = ok_json(&["put", a, r#"{"_id":"n","v":0}"#])["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(&["replicate", a, b, "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok_json(&[
        "put",
        a,
        &json!({"_id": "n", "_rev": rev, "v": "a"}).to_string(),
    ]);
    ok_json(&[
        "put",
        b,
        &json!({"_id": "n", "_rev": rev, "v": "b"}).to_string(),
    ]);
    assert!(run(&["sync", a, b, "--quiet"]).status.success());
    let ca = json_lines(&run(&["conflicts", a]));
    let cb = json_lines(&run(&["conflicts", b]));
    assert_eq!(ca.len(), 1);
    assert_eq!(ca, cb);
    assert_eq!(ca[0]["id"], "n");
    assert_eq!(ca[0]["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(ca[0]["leaves"].as_array().unwrap().len(), 2);
}

/// Replicates `n` docs with the CLI, killing it with SIGKILL `kills` times at seeded random
/// moments, then lets it finish. Returns the changes read by the final (resuming) run.
#[test]
fn sigkill_mid_replication_resumes_from_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let tgt = dir.path().join("tgt");
    let n = 3000;
    {
        let db = settee::store::Database::open_with(settee::store::OpenOptions {
            durability: settee::store::Durability::Relaxed {
                flush_every: Duration::from_millis(500),
            },
            ..settee::store::OpenOptions::new(&src)
        })
        .unwrap();
        let docs: Vec<Value> = (0..n)
            .map(|i| json!({"_id": format!("doc{i:05}"), "body": "x".repeat(200)}))
            .collect();
        for chunk in docs.chunks(500) {
            db.bulk_docs(chunk.to_vec(), true).unwrap();
        }
        db.flush().unwrap();
    }
    let seed = settee_testkit::seed("SETTEE_KILL_SEED", "kill");
    let mut state = seed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let args = |extra: &[&str]| {
        let mut v = vec![
            "replicate",
            path_str(&src),
            path_str(&tgt),
            "--batch-size",
            "20",
            "--checkpoint-interval",
            "0.02",
            "--json",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let mut killed_with_progress = 0;
    for _ in 0..4 {
        let mut child = settee()
            .args(args(&[]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first checkpoint event, then a random extra delay, then SIGKILL.
        let stdout = child.stdout.take().unwrap();
        let delay = Duration::from_millis(next() % 40);
        let saw_checkpoint = Lines::new(stdout)
            .find(Duration::from_secs(60), "a checkpoint event", |l| {
                l.contains("\"event\":\"checkpoint\"")
            })
            .is_some();
        // Not synchronisation: the random moment of the crash, after some progress.
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if saw_checkpoint && !status.success() {
            killed_with_progress += 1;
        }
    }
    // The store must open after every kill, and the final run must finish the job without
    // re-reading what the checkpoints cover.
    let out = settee().args(args(&[])).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let complete = events
        .iter()
        .find(|e| e["event"] == "complete")
        .expect("a complete event");
    let read = complete["summary"]["changes_read"].as_u64().unwrap();
    assert!(
        killed_with_progress > 0,
        "no kill landed mid-replication: the test proved nothing"
    );
    assert!(read < n, "the resumed run re-read everything ({read})");
    // Nothing lost, nothing duplicated: same documents, same revisions, one each.
    {
        let s = settee::store::Database::open(&src).unwrap();
        let t = settee::store::Database::open(&tgt).unwrap();
        assert_eq!(t.info().unwrap().doc_count, s.info().unwrap().doc_count);
        assert_eq!(
            t.changes(&Default::default()).unwrap().results.len(),
            n as usize
        );
        for c in s.changes(&Default::default()).unwrap().results {
            let d = t.get(&c.id, &Default::default()).unwrap();
            assert_eq!(d["_rev"], c.changes[0].to_string());
        }
    } // closed: the CLI below opens the source again
      // A fresh replication to another target reads all n: the resumed run really resumed.
    let fresh = dir.path().join("fresh");
    let out = run(&["replicate", path_str(&src), path_str(&fresh), "--json"]);
    let events = json_lines(&out);
    let complete = events.iter().find(|e| e["event"] == "complete").unwrap();
    assert_eq!(complete["summary"]["changes_read"].as_u64().unwrap(), n);
}

/// Issue 10: a command that only reads, given a path with no store, says so and creates
/// nothing; `put` (a write) still creates the store.
#[test]
fn read_commands_on_a_missing_store_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let p = path_str(&missing);
    let expected = format!("settee: no Settee store at {p}\n");
    for args in [
        vec!["get", p, "a"],
        vec!["info", p],
        vec!["all-docs", p],
        vec!["changes", p],
        vec!["conflicts", p],
        vec!["status", p, "http://127.0.0.1:1/db"],
        vec!["replicate", p, "http://127.0.0.1:1/db"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!missing.exists(), "{args:?} created {p}");
    }
    // An empty directory holds no store either, and stays empty.
    std::fs::create_dir(&missing).unwrap();
    let out = run(&["info", p]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
    std::fs::remove_dir(&missing).unwrap();

    assert_eq!(ok_json(&["put", p, r#"{"_id":"a"}"#])["ok"], true);
    assert_eq!(ok_json(&["info", p])["doc_count"], 1);
}

/// Issue 10: an unreachable server. Each retry is one line on stderr (no log line, no
/// repeat), `-q` silences them, and giving up is one line naming the attempts and the cause.
#[test]
fn an_unreachable_server_is_retried_one_line_each_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t");
    let t = path_str(&target);
    let cause = "cannot connect to 127.0.0.1:1: connection refused";
    let last = format!("settee: gave up after 5 attempts: {cause}");

    let out = run(&["replicate", "http://127.0.0.1:1/db", t]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    for line in &lines[..4] {
        let rest = line
            .strip_prefix(&format!("settee: {cause} (retrying in "))
            .unwrap_or_else(|| panic!("not a retry line: {line:?}"));
        let secs = rest.strip_suffix("s)").unwrap();
        assert!(secs.parse::<f64>().is_ok(), "{line:?}");
    }
    assert_eq!(lines[4], last);

    let out = run(&["-q", "replicate", "http://127.0.0.1:1/db", t]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{last}\n"));
}
