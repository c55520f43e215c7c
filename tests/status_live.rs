//! `settee status` while `settee sync --live` holds the store (issue 19, finding 7). The
//! syncing process holds the store (sled lets one process open it) and advertises a
//! loopback server; `settee status` finds the store in use and asks that process, which
//! answers the sync-state questions for the store it holds. The answers must be exact while
//! the sync runs, the same as once it has stopped, and a holder that does not answer must
//! give a clear error, never a hang.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use settee::replicate::Peer;
use settee::{ReadOptions, SyncState};
use settee_testkit::{wait_until, TestDb};

use common::{guarded_remote, json_lines, status, status_cmd};

/// Everything here waits on a live sync against the shared server: generous, as CI's two
/// cores are shared.
const CONVERGE: Duration = Duration::from_secs(60);

/// A running `settee sync LOCAL URL --live`; dropping it kills it.
struct LiveSync {
    child: Child,
}

impl LiveSync {
    fn start(local: &Path, url: &str) -> LiveSync {
        let child = common::settee_with_password()
            .command()
            .args(["sync", local.to_str().unwrap(), url, "--live", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let advert = local.join(settee::store::ADVERT_FILE);
        let mut sync = LiveSync { child };
        wait_until(CONVERGE, "the live sync's advertisement", || {
            assert!(
                sync.child.try_wait().unwrap().is_none(),
                "the live sync exited"
            );
            advert.exists()
        });
        sync
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Stops it as Ctrl-C does (both directions write a final checkpoint).
    fn stop(mut self) {
        self.signal("-INT");
        let mut exited = None;
        wait_until(CONVERGE, "the live sync to stop", || {
            exited = self.child.try_wait().unwrap();
            exited.is_some()
        });
        // 3: it ran, and the server refused a document (the guarded one).
        assert_eq!(exited.unwrap().code(), Some(3), "the live sync's exit");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LiveSync {
    fn drop(&mut self) {
        // A stopped child would not die of SIGKILL until continued on some systems.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local store with one document the server refuses (`secret`) and one it takes,
/// written before the live sync starts (it then holds the store).
async fn local_store(path: &Path) -> String {
    let l = settee::Local::open(path).unwrap();
    let bad = l
        .put(json!({"_id": "secret", "secret": true}))
        .await
        .unwrap();
    l.put(json!({"_id": "fine", "v": 1})).await.unwrap();
    bad["rev"].as_str().unwrap().to_owned()
}

/// The counts of a `status` line that do not move with the clock (`last_push`/`last_pull`
/// are when a run caught up or checkpointed, and a stopping sync checkpoints once more).
fn counts(line: &Value) -> Value {
    json!({
        "remote": line["remote"],
        "unpushed": line["unpushed"],
        "rejected": line["rejected"],
        "not_replicated": line["not_replicated"],
        "unpulled": line["unpulled"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_status_answers_while_a_live_sync_runs() {
    let name_db = TestDb::named("status-live");
    let url = name_db.url_with_user();
    let remote = guarded_remote(&name_db.url_with_credentials()).await;
    for i in 0..3 {
        remote
            .put(json!({"_id": format!("server-{i}"), "n": i}))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    let bad_rev = local_store(&path).await;

    let sync = LiveSync::start(&path, &url);
    // Written on the server while the sync runs: pulled by it.
    for i in 3..5 {
        remote
            .put(json!({"_id": format!("server-{i}"), "n": i}))
            .await
            .unwrap();
    }
    let converged = json!({
        "remote": url,
        "unpushed": 1,
        "rejected": 1,
        "not_replicated": 0,
        "unpulled": 0,
    });
    let mut during = Vec::new();
    wait_until(
        CONVERGE,
        "status to say 1 unpushed (rejected), 0 unpulled",
        || {
            during = status(&path, &url, false);
            during.len() == 1 && counts(&during[0]) == converged
        },
    );
    assert!(
        during[0]["last_push"].is_string() && during[0]["last_pull"].is_string(),
        "{during:?}"
    );
    assert!(during[0].get("unpulled_error").is_none(), "{during:?}");
    let docs_during = status(&path, &url, true);
    let rejected_line = json!({"id": "secret", "state": "rejected", "rev": bad_rev,
        "error": "forbidden", "reason": "no secrets here"});
    assert_eq!(docs_during, vec![rejected_line.clone()]);

    // The library, opened on the held store, asks the holder too.
    let held = settee::Local::open(&path).unwrap();
    assert!(held.held_by().is_some(), "{held:?}");
    let rejected = SyncState::Rejected {
        rev: bad_rev.parse().unwrap(),
        error: "forbidden".into(),
        reason: "no secrets here".into(),
    };
    assert_eq!(
        held.sync_state(&remote, "secret").await.unwrap(),
        Some(rejected.clone())
    );
    assert_eq!(
        held.sync_state(&remote, "fine").await.unwrap(),
        Some(SyncState::Synced)
    );
    assert_eq!(
        held.sync_state(&remote, "server-4").await.unwrap(),
        Some(SyncState::Synced)
    );
    assert_eq!(held.sync_state(&remote, "nothing").await.unwrap(), None);
    // What the holder says is what the server holds.
    assert!(remote
        .get("secret", &ReadOptions::default())
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(
        remote.get("fine", &ReadOptions::default()).await.unwrap()["v"],
        1
    );

    // The holder's sync-state endpoints take only its credential.
    let advert = settee::store::Advert::read(&path).unwrap();
    let anonymous = settee::couch::RemoteDb::from_url(&advert.url).unwrap();
    let identity = remote.to_peer().identity();
    let refused = anonymous
        .get_extension::<Value>(&["_settee", "sync_status"], &[("remote", &identity)])
        .await
        .unwrap_err();
    assert!(
        matches!(refused, settee::couch::Error::Unauthorized(_)),
        "{refused:?}"
    );
    // A password in the remote's name is dropped, never returned.
    let owner = settee::couch::RemoteDb::from_url(&advert.url_with_credentials()).unwrap();
    let with_password = name_db.url_with_credentials();
    let answered: Value = owner
        .get_extension(&["_settee", "sync_status"], &[("remote", &with_password)])
        .await
        .unwrap();
    assert_eq!(answered["remote"], json!(url));
    assert_eq!(answered["unpushed"], 1);
    if let Some(p) = name_db.server().password() {
        assert!(!answered.to_string().contains(p), "{answered}");
    }

    sync.stop();
    assert!(settee::Local::open(&path).unwrap().store().is_some());
    let after = status(&path, &url, false);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(counts(&after[0]), counts(&during[0]));
    assert_eq!(status(&path, &url, true), docs_during);
}

/// Runs `cmd` and waits for its end, killing it and failing after `deadline`.
fn output_within(mut cmd: Command, deadline: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + deadline;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {deadline:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_a_holder_that_does_not_answer_is_an_error_not_a_hang() {
    let name_db = TestDb::named("status-stale");
    let url = name_db.url_with_user();
    guarded_remote(&name_db.url_with_credentials()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    local_store(&path).await;
    let sync = LiveSync::start(&path, &url);
    let mut during = Vec::new();
    wait_until(CONVERGE, "status to say 1 unpushed (rejected)", || {
        during = status(&path, &url, false);
        during.len() == 1 && during[0]["unpushed"] == 1 && during[0]["rejected"] == 1
    });
    let pid = sync.pid();

    // Stopped (SIGSTOP): it holds the store and its port, and answers nothing.
    sync.signal("-STOP");
    let out = output_within(
        status_cmd(&path, &url, false),
        CONVERGE,
        "status against a stopped holder",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("asking process {pid}, which holds the store")),
        "{err}"
    );
    assert!(json_lines(&out).is_empty());

    // Killed: its advertisement stays, but the store is free, so status reads it here.
    sync.kill();
    assert!(path.join(settee::store::ADVERT_FILE).exists());
    let after = status(&path, &url, false);
    assert_eq!(counts(&after[0]), counts(&during[0]));

    // The stale advertisement while something else holds the store (a one-shot sync, an
    // application that does not serve): a clear error at once (the port is closed).
    let holder = settee::store::Database::open(&path).unwrap();
    let out = output_within(
        status_cmd(&path, &url, true),
        CONVERGE,
        "status --docs against a gone holder",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("asking process {pid}, which holds the store")),
        "{err}"
    );
    drop(holder);
}
