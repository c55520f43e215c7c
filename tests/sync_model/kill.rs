//! The model's real crash (issue 21): `settee sync STORE URL` as a child process, SIGKILLed
//! in the middle of its run, after random edits on both sides. After each kill the store is
//! reopened and the model's invariants are checked against the server: nothing lost (every
//! revision either side had before the run is still there), nothing duplicated (each document
//! once in either side's `_changes`, the store's counts agree), and the sync state never
//! calls a revision synced that the server lacks ([`Sequence::check`] after a crash: the
//! store may list more than the oracle, never less). The sequence then ends as every other
//! does, with a complete sync after which both sides agree.

#[allow(unused_imports)]
use settee::Documents as _;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use settee::replicate::Filter;
use settee::store::{ChangesOptions, ChangesStyle};

use super::{assert_none_left, finish, is_pouchdb_server, new_sequence, sweep, Sequence};
use crate::common::Server;

/// Runs of the killed sync per test: each a few edits and one `settee sync` child.
const RUNS: usize = 20;
/// This test's server databases' prefix: not the model test's, which checks in the same
/// process that none of its own is left while this test may still hold its one.
const PREFIX: &str = "model-kill";
/// A child that prints nothing for this long, and does not exit, hangs.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// How one child run ended.
enum Ended {
    /// SIGKILLed after this many progress lines.
    Killed(usize),
    /// It finished first (exit code 0, or 3 when the server refused documents).
    Finished,
}

impl Sequence {
    /// Runs `settee sync` on the store as a child process, and kills it after it has printed
    /// `lines` progress lines (one per batch, `--json`) and a few microseconds more. The
    /// store is closed while the child runs and reopened after it.
    fn sync_in_a_child(&mut self, server: &Server, lines: usize, after: Duration) -> Ended {
        let store = self.dir.path().join("local");
        drop(self.db.take());
        let url = format!("{}/{}", server.url, self.remote.name());
        let url = match &server.user {
            Some(u) => url.replacen("://", &format!("://{u}@"), 1),
            None => url,
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
            .arg("sync")
            .arg(&store)
            .arg(&url)
            .args(["--batch-size", "1", "--checkpoint-interval", "0", "--json"])
            .env(
                "SETTEE_PASSWORD",
                server.password.clone().unwrap_or_default(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = 0;
        let ended = loop {
            if seen == lines {
                // Not waiting for anything: this picks where in its next batch the child
                // dies (writing the store, recording what the server confirmed, or a
                // checkpoint).
                std::thread::sleep(after);
                child.kill().unwrap(); // SIGKILL on Unix
                break Ended::Killed(seen);
            }
            match rx.recv_timeout(CHILD_DEADLINE) {
                Ok(line) => {
                    line.unwrap();
                    seen += 1;
                }
                // Its stdout closed: it exited.
                Err(mpsc::RecvTimeoutError::Disconnected) => break Ended::Finished,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    self.fail(format!(
                        "settee sync printed nothing for {CHILD_DEADLINE:?}: it hangs"
                    ));
                }
            }
        };
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let ended = match (ended, output.status.signal(), output.status.code()) {
            (Ended::Killed(n), Some(9), _) => Ended::Killed(n),
            (_, None, Some(0 | 3)) => Ended::Finished,
            (_, signal, code) => self.fail(format!(
                "settee sync ended with code {code:?}, signal {signal:?}: {stderr}"
            )),
        };
        self.db = Some(super::open_store(&store));
        ended
    }

    /// Nothing lost, nothing duplicated: every revision of `before` (each side's leaves
    /// before the run) is still on that side, and each document is in each side's
    /// `_changes` once.
    async fn check_nothing_lost(&self, before: &Before) {
        let missing = self.db().revs_diff(before.local.clone()).unwrap();
        if let Some((id, d)) = missing.iter().find(|(_, d)| !d.missing.is_empty()) {
            self.fail(format!("the store lost {id} {:?}", d.missing));
        }
        let missing = self.remote.revs_diff(&before.server).await.unwrap();
        if let Some((id, d)) = missing.iter().find(|(_, d)| !d.missing.is_empty()) {
            self.fail(format!("the server lost {id} {:?}", d.missing));
        }
        // `server_leaves` fails on a document listed twice.
        self.server_leaves().await;
        let feed = self
            .db()
            .changes(&ChangesOptions {
                style: ChangesStyle::AllDocs,
                ..Default::default()
            })
            .unwrap();
        let ids: std::collections::BTreeSet<&String> = feed.results.iter().map(|c| &c.id).collect();
        let info = self.db().info().unwrap();
        if ids.len() != feed.results.len()
            || ids.len() as u64 != info.doc_count + info.doc_del_count
        {
            self.fail(format!(
                "the store's feed lists {} rows for {} ids, its info {} documents",
                feed.results.len(),
                ids.len(),
                info.doc_count + info.doc_del_count
            ));
        }
    }
}

/// Both sides' leaves before a run.
struct Before {
    local: std::collections::BTreeMap<String, Vec<settee::Rev>>,
    server: std::collections::BTreeMap<String, Vec<settee::Rev>>,
}

/// CouchDB and pouchdb-server alike (pouchdb-server without the validation function, as the
/// model test: see the module comment of `sync_model.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_a_sync_killed_mid_run_loses_nothing_and_claims_nothing() {
    let server = Server::get();
    sweep(PREFIX);
    let seed: u64 = std::env::var("SETTEE_SYNC_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let validate = !is_pouchdb_server(&server).await;
    eprintln!("sync kill: seed {seed} (SETTEE_SYNC_MODEL_SEED={seed} replays it)");
    let mut seq = new_sequence(&server, PREFIX, seed, validate).await;
    let (mut kills, mut mid_run) = (0, 0);
    for run in 0..RUNS {
        for _ in 0..seq.rng.gen_range(2..6) {
            let op = seq.rng.gen_range(0..=8);
            seq.step_op(op).await;
        }
        let before = Before {
            local: seq.local_leaves(),
            server: seq.server_leaves().await,
        };
        // A run prints a line per batch of either direction (a handful here): most kills
        // land inside it, some after it ended.
        let lines = seq.rng.gen_range(0..8);
        let after = Duration::from_micros(seq.rng.gen_range(0..20_000));
        seq.log.push(format!(
            "settee sync, killed after {lines} lines and {after:?}"
        ));
        seq.filter = Filter::All;
        match seq.sync_in_a_child(&server, lines, after) {
            Ended::Killed(lines) => {
                kills += 1;
                mid_run += usize::from(lines > 0);
                seq.suspect = true;
            }
            // A complete unfiltered sync: nothing is suspect any more.
            Ended::Finished => {
                seq.log.push(format!("run {run}: finished first"));
                seq.suspect = false;
            }
        }
        seq.check_nothing_lost(&before).await;
        seq.check().await;
    }
    eprintln!("sync kill: {kills} of {RUNS} runs killed, {mid_run} after their first batch");
    assert!(kills > 0, "no run was killed: every child finished first");
    finish(seq).await;
    // Every child was reaped (killed and waited for, or exited) before the sequence ended,
    // so none of their requests can reach the server after the database is deleted.
    assert_none_left(PREFIX);
}
