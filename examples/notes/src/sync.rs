//! Live two-way sync with the configured CouchDB database, and the global sync state the
//! page shows (local only, connecting, syncing, synced, offline and retrying in N s, error),
//! with the time of the last complete sync.
//!
//! One supervisor task per remote runs `settee::replicate::sync` continuously (push and
//! pull). The replicator retries transient failures itself, so a server or network that
//! comes back is picked up with no action from anyone; the supervisor restarts the sync
//! after the failures the replicator gives up on (the server unreachable when the sync
//! starts, a wrong password, a missing database it may not create), with a capped backoff.
//! The replicator's events drive the state here and the push position in `state.rs`; a
//! publisher task sends the state and changed badges to the pages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use settee::replicate::{replication_id, Direction, Filter, Peer, ReplicationLog, RetryPolicy};
use settee::replicate::{AnyPeer, Event, ReplicateOptions};
use settee::{CancellationToken, Database};
use tokio::sync::{mpsc, Notify};

use crate::live::{Hub, Update};
use crate::note::now_ms;
use crate::settings::Remote;
use crate::state::Tracker;
use crate::{Error, Result};

/// The replicator's retries: quick at first, then at most this far apart, so that sync
/// resumes within seconds of the server coming back.
const RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(5),
    one_shot_attempts: 5,
};

/// The supervisor's delays before starting a sync again after it failed: for a failure that
/// may pass by itself (the server unreachable at start), and for one that needs someone to
/// act (a wrong password): then there is no point in asking often.
const RESTART_TRANSIENT: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(5));
const RESTART_FATAL: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(30));

/// Events buffered between the replicator and the state (the replicator drops progress
/// events when full and waits for room for the others, see `settee::replicate`).
const EVENTS_BUFFER: usize = 256;

/// The global state's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No server configured.
    LocalOnly,
    /// Starting a sync.
    Connecting,
    /// Moving changes.
    Syncing,
    /// Both directions caught up.
    Synced,
    /// The server cannot be reached; retrying by itself.
    Offline,
    /// The server refuses the sync (authentication, permissions); retrying less often.
    Error,
}

/// The global sync state, as `GET /api/sync` and the `sync` live update give it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncView {
    /// The server's database URL, without credentials.
    pub remote: Option<String>,
    /// What the sync is doing.
    pub state: Phase,
    /// Why it is offline or failing (no credentials in it).
    pub message: Option<String>,
    /// When offline or failing: how long until the next attempt.
    pub retry_in_ms: Option<u64>,
    /// When both directions were last caught up (ms since 1970).
    pub last_synced_at: Option<i64>,
    /// Notes the server does not have yet (waiting to upload or rejected).
    pub unsynced: usize,
    /// Notes in conflict.
    pub conflicts: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Dir {
    Starting,
    Active,
    Idle,
    Retrying { message: String, until: Instant },
}

#[derive(Debug)]
struct Status {
    remote: Option<Remote>,
    push: Dir,
    pull: Dir,
    /// The sync stopped with this error; it starts again at `until`.
    stopped: Option<(String, bool, Instant)>,
    last_synced_at: Option<i64>,
}

struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the sync with the configured remote and keeps the global state.
pub struct SyncCtl {
    db: Database,
    tracker: Arc<Tracker>,
    hub: Hub,
    /// Wakes the publisher: something changed the state or the badges.
    changed: Arc<Notify>,
    status: Mutex<Status>,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl std::fmt::Debug for SyncCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCtl").finish_non_exhaustive()
    }
}

impl SyncCtl {
    pub(crate) fn new(
        db: Database,
        tracker: Arc<Tracker>,
        hub: Hub,
        changed: Arc<Notify>,
    ) -> SyncCtl {
        SyncCtl {
            db,
            tracker,
            hub,
            changed,
            status: Mutex::new(Status {
                remote: None,
                push: Dir::Starting,
                pull: Dir::Starting,
                stopped: None,
                last_synced_at: None,
            }),
            running: tokio::sync::Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        // Plain data, consistent at every statement: a panic elsewhere does not spoil it.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remote currently configured.
    pub fn remote(&self) -> Option<Remote> {
        self.lock().remote.clone()
    }

    /// Stops the current sync (after its final checkpoint) and starts one with `remote`, or
    /// none.
    pub async fn set_remote(self: &Arc<Self>, remote: Option<Remote>) {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            old.cancel.cancel();
            let _ = old.task.await;
        }
        {
            let mut st = self.lock();
            st.remote = remote.clone();
            st.push = Dir::Starting;
            st.pull = Dir::Starting;
            st.stopped = None;
            st.last_synced_at = None;
        }
        self.tracker.reset(remote.is_some());
        if let Some(remote) = remote {
            let cancel = CancellationToken::new();
            let this = self.clone();
            let token = cancel.clone();
            let task = tokio::spawn(async move { this.supervise(remote, token).await });
            *running = Some(Running { cancel, task });
        }
        self.changed.notify_one();
    }

    /// Stops syncing (at shutdown), leaving the final checkpoints written.
    pub async fn stop(&self) {
        if let Some(old) = self.running.lock().await.take() {
            old.cancel.cancel();
            let _ = old.task.await;
        }
    }

    /// Runs the sync with `remote` until cancelled, starting it again after failures.
    async fn supervise(self: Arc<Self>, remote: Remote, cancel: CancellationToken) {
        let mut attempt = 0u32;
        loop {
            let Some(failure) = self.run_once(&remote, &cancel).await else {
                return;
            };
            if failure.caught_up {
                attempt = 0;
            }
            let (initial, max) = if failure.transient {
                RESTART_TRANSIENT
            } else {
                RESTART_FATAL
            };
            let delay = initial.saturating_mul(1u32 << attempt.min(16)).min(max);
            attempt = attempt.saturating_add(1);
            tracing::warn!(remote = %remote.shown(), error = %failure.message, retry_in = ?delay, "sync stopped; starting it again");
            {
                let mut st = self.lock();
                st.stopped = Some((failure.message, failure.transient, Instant::now() + delay));
                st.push = Dir::Starting;
                st.pull = Dir::Starting;
            }
            self.changed.notify_one();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return,
            }
            self.lock().stopped = None;
            self.changed.notify_one();
        }
    }

    /// Runs one continuous sync until it fails (returned) or is cancelled (`None`).
    async fn run_once(&self, remote: &Remote, cancel: &CancellationToken) -> Option<Failure> {
        let remote_db = match remote.open() {
            Ok(r) => r,
            Err(e) => {
                return Some(Failure {
                    message: e.to_string(),
                    transient: false,
                    caught_up: false,
                })
            }
        };
        let local = AnyPeer::Local(self.db.clone());
        let remote_peer = AnyPeer::Remote(remote_db);
        self.read_checkpoints(&local, &remote_peer).await;
        let opts = ReplicateOptions {
            continuous: true,
            create_target: true,
            retry: RETRY,
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::channel(EVENTS_BUFFER);
        let sync = settee::replicate::sync(
            local.clone(),
            remote_peer.clone(),
            opts,
            Some(tx),
            cancel.clone(),
        );
        let mut caught_up = false;
        let follow = async {
            while let Some(event) = rx.recv().await {
                let checkpointed = matches!(
                    event,
                    Event::Checkpoint {
                        direction: Direction::Push,
                        ..
                    }
                );
                caught_up |= self.on_event(event);
                // The checkpoint lists every document the session's push failed (progress
                // events, which also carry them, are dropped when the buffer is full).
                if checkpointed {
                    if let Some(log) = push_log(&local, &remote_peer).await {
                        let upto = log.source_last_seq.as_local().unwrap_or(0);
                        self.tracker.rejected_in_checkpoint(&log.doc_failures, upto);
                    }
                }
            }
        };
        let (result, ()) = tokio::join!(sync, follow);
        if cancel.is_cancelled() {
            return None;
        }
        let (message, transient) = match result {
            Ok(_) => ("the sync stopped".to_owned(), true),
            Err(e) => (settee::replicate::error_chain(&e), e.is_transient()),
        };
        Some(Failure {
            message,
            transient,
            caught_up,
        })
    }

    /// Reads the push and pull checkpoints in the local store (no network): where the push
    /// got to, what the server refused, and when both last completed.
    async fn read_checkpoints(&self, local: &AnyPeer, remote: &AnyPeer) {
        let push = push_log(local, remote).await;
        let pull = log(local, remote, local).await;
        if let Some(push) = &push {
            let seq = push.source_last_seq.as_local().unwrap_or(0);
            self.tracker.push_progress(seq);
            self.tracker.rejected_in_checkpoint(&push.doc_failures, seq);
        }
        if let (Some(push), Some(pull)) = (&push, &pull) {
            let when = |l: &ReplicationLog| l.history.first().and_then(|s| rfc3339_ms(&s.end_time));
            let mut st = self.lock();
            if st.last_synced_at.is_none() {
                st.last_synced_at = when(push).min(when(pull));
            }
        }
    }

    /// Takes one replicator event into the state; says whether both directions are caught
    /// up now.
    fn on_event(&self, event: Event) -> bool {
        let mut st = self.lock();
        match event {
            Event::Active { direction } => *st.dir(direction) = Dir::Active,
            Event::Change {
                direction,
                last_seq,
                failures,
                ..
            } => {
                *st.dir(direction) = Dir::Active;
                if direction == Direction::Push {
                    let seq = last_seq.as_local().unwrap_or(0);
                    self.tracker.push_progress(seq);
                    self.tracker.rejected(&failures, seq);
                }
            }
            Event::Checkpoint { direction, seq } => {
                if direction == Direction::Push {
                    if let Some(seq) = seq.as_local() {
                        self.tracker.push_progress(seq);
                    }
                }
            }
            // Caught up. (A pause with no count is the wait before a retry, which the
            // `Error` before it reported.)
            Event::Paused {
                direction,
                pending: Some(_),
            } => *st.dir(direction) = Dir::Idle,
            Event::Paused { pending: None, .. } => {}
            Event::Error {
                direction,
                message,
                retrying: true,
                retry_in_ms,
                ..
            } => {
                let wait = Duration::from_millis(retry_in_ms.unwrap_or(0));
                *st.dir(direction) = Dir::Retrying {
                    message,
                    until: Instant::now() + wait,
                };
            }
            // A failure the replicator does not retry ends the sync: `supervise` reports it.
            Event::Error { .. } | Event::Complete { .. } => {}
        }
        let caught_up = st.push == Dir::Idle && st.pull == Dir::Idle;
        if caught_up {
            st.last_synced_at = Some(now_ms());
        }
        drop(st);
        self.changed.notify_one();
        caught_up
    }

    /// The global state with these counts.
    fn view(&self, unsynced: usize, conflicts: usize) -> SyncView {
        let st = self.lock();
        let now = Instant::now();
        let left = |until: &Instant| {
            Some(
                u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
            )
        };
        let (state, message, retry_in_ms) = match (&st.remote, &st.stopped) {
            (None, _) => (Phase::LocalOnly, None, None),
            (Some(_), Some((message, transient, until))) => (
                if *transient {
                    Phase::Offline
                } else {
                    Phase::Error
                },
                Some(message.clone()),
                left(until),
            ),
            (Some(_), None) => {
                let retrying = [&st.push, &st.pull].into_iter().find_map(|d| match d {
                    Dir::Retrying { message, until } => Some((message, until)),
                    _ => None,
                });
                match retrying {
                    Some((message, until)) => (Phase::Offline, Some(message.clone()), left(until)),
                    None if st.push == Dir::Idle && st.pull == Dir::Idle => {
                        (Phase::Synced, None, None)
                    }
                    None if st.push == Dir::Active || st.pull == Dir::Active => {
                        (Phase::Syncing, None, None)
                    }
                    None => (Phase::Connecting, None, None),
                }
            }
        };
        SyncView {
            remote: st.remote.as_ref().map(Remote::shown),
            state,
            message,
            retry_in_ms,
            last_synced_at: st.last_synced_at,
            unsynced,
            conflicts,
        }
    }

    /// The global state now. Reads the store (counts).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn current(&self) -> Result<SyncView> {
        let t = self.tracker.clone();
        let counts = tokio::task::spawn_blocking(move || t.counts())
            .await
            .map_err(Error::task)??;
        Ok(self.view(counts.unsynced, counts.conflicts))
    }

    /// Sends the state and the changed badges to the pages whenever something changed.
    /// Runs for the life of the app.
    pub(crate) async fn publish(self: Arc<Self>) {
        loop {
            self.changed.notified().await;
            let t = self.tracker.clone();
            match tokio::task::spawn_blocking(move || t.changed_badges()).await {
                Ok(Ok((badges, counts))) => {
                    let sync = self.view(counts.unsynced, counts.conflicts);
                    self.hub.send(Update::Sync {
                        sync,
                        badges,
                        full: false,
                    });
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "computing badges"),
                Err(e) => tracing::warn!(error = %e, "computing badges"),
            }
        }
    }
}

impl Status {
    fn dir(&mut self, direction: Direction) -> &mut Dir {
        match direction {
            Direction::Push => &mut self.push,
            Direction::Pull => &mut self.pull,
        }
    }
}

/// The checkpoint of the replication from `source` to `target`, as kept in the local store.
async fn log(local: &AnyPeer, source: &AnyPeer, target: &AnyPeer) -> Option<ReplicationLog> {
    let id = replication_id(&source.identity(), &target.identity(), &Filter::All);
    match local.get_local(&id).await {
        Ok(doc) => doc.as_ref().and_then(ReplicationLog::from_doc),
        Err(e) => {
            tracing::warn!(error = %e, "reading a sync checkpoint");
            None
        }
    }
}

/// The push's checkpoint.
async fn push_log(local: &AnyPeer, remote: &AnyPeer) -> Option<ReplicationLog> {
    log(local, local, remote).await
}

/// Why a sync stopped.
struct Failure {
    message: String,
    /// Whether it may pass by itself (offline) rather than need someone to act.
    transient: bool,
    /// Whether the sync had caught up before it stopped (the backoff starts over).
    caught_up: bool,
}

/// Milliseconds since 1970 of a checkpoint time (`YYYY-MM-DDTHH:MM:SSZ`, as the replicator
/// writes it), or `None` for any other text.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_times_read_as_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2026-11-01T12:30:05Z"), Some(1_793_536_205_000));
        assert_eq!(rfc3339_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }
}
