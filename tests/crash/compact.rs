//! `settee compact` killed with SIGKILL in the middle of rewriting a store's files (issue
//! 24, "Disk"): the store opens after each kill with every document, revision tree,
//! `_local` doc and sequence it had, and `verify`s; the leftovers of the swap are gone.
//! Where each kill lands is drawn (seeded) between the moment the copy starts
//! (`compact.new/` appears) and the time a whole rewrite took.

#[allow(unused_imports)]
use settee::Documents as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee::store::{AllDocsOptions, ChangesOptions, Database};

use super::{kills_wanted, reopen, seed, CHILD_DEADLINE};

/// Everything a reader sees of the store: every document with its conflicts, the changes
/// feed, a `_local` doc, the counts.
fn contents(db: &Database) -> Value {
    let all = db
        .all_docs(&AllDocsOptions {
            include_docs: true,
            conflicts: true,
            ..Default::default()
        })
        .unwrap();
    let changes = db.changes(&ChangesOptions::default()).unwrap();
    let info = db.info().unwrap();
    json!({
        "all_docs": serde_json::to_value(&all).unwrap(),
        "changes": serde_json::to_value(&changes).unwrap(),
        "local": db.get_local("_local/checkpoint").unwrap(),
        "counts": [info.doc_count, info.doc_del_count, info.update_seq],
    })
}

/// A store whose rewrite takes a while: documents edited several times, some deleted.
fn fill(store: &Path) {
    let db = Database::open(store).unwrap();
    let mut revs = Vec::new();
    for chunk in 0..20 {
        let docs = (0..100)
            .map(|i| json!({"_id": format!("n{chunk:02}-{i:03}"), "text": "z".repeat(300)}))
            .collect();
        revs.extend(
            db.bulk_docs(docs, true)
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.rev.unwrap())),
        );
    }
    for (n, (id, rev)) in revs.iter_mut().enumerate() {
        if n % 3 == 0 {
            *rev = db
                .put(json!({"_id": id, "_rev": rev.to_string(), "edited": n}))
                .unwrap()
                .rev
                .unwrap();
        }
        if n % 7 == 0 {
            db.delete(id, rev).unwrap();
        }
    }
    db.put_local(json!({"_id": "_local/checkpoint", "seq": 7}))
        .unwrap();
}

/// Runs `settee compact STORE`, killing it `kill_after` after `compact.new/` appears (or
/// never); how long the run took from that moment, and whether it was killed.
fn compact(store: &Path, kill_after: Option<Duration>) -> (Duration, bool) {
    // No server: the plain binary, not the test server's environment.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .arg("compact")
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHILD_DEADLINE;
    let new_dir = store.join("compact.new");
    // Await the copy's start (or the child's end: a run can finish between two looks).
    while !new_dir.exists() && child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "settee compact hangs before its copy"
        );
        std::thread::yield_now();
    }
    let started = Instant::now();
    if let Some(after) = kill_after {
        while started.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::yield_now();
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            return (started.elapsed(), true);
        }
    }
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "settee compact hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "settee compact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (started.elapsed(), false)
}

#[test]
fn issue_24_compact_killed_mid_rewrite_leaves_a_store_with_all_its_data() {
    let seed = seed("issue_24_compact_killed_mid_rewrite_leaves_a_store_with_all_its_data");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    fill(&store);
    let expected = contents(&reopen(&store));
    let (full, _) = compact(&store, None);
    assert_eq!(contents(&reopen(&store)), expected, "after a whole compact");
    let mut killed = 0;
    // A quarter of a replication kill test's count: each round reopens and verifies the store.
    for round in 0..(kills_wanted() / 25).max(3) {
        let at = full.mul_f64(rng.gen_range(0.0..1.0));
        let (_, was_killed) = compact(&store, Some(at));
        killed += usize::from(was_killed);
        let db = reopen(&store);
        assert_eq!(
            contents(&db),
            expected,
            "seed {seed}, round {round}, killed {at:?} into the copy"
        );
        db.verify().unwrap();
        drop(db);
        for leftover in ["compact.new", "compact.old", "compact.swap"] {
            assert!(
                !store.join(leftover).exists(),
                "seed {seed}, round {round}: {leftover} is left"
            );
        }
    }
    eprintln!("{killed} runs killed mid-rewrite (a whole rewrite took {full:?})");
    assert!(
        killed > 0,
        "seed {seed}: no run was killed before it finished"
    );
}
