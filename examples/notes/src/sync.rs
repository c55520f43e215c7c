//! Live two-way sync with the configured CouchDB database, and the global sync state the
//! page shows (local only, connecting, syncing, synced, offline and retrying in N s, error),
//! with the time of the last complete sync.
//!
//! One supervisor task per remote runs `Local::sync` continuously (push and pull) and
//! follows its `Syncing` handle's events. The replicator retries transient failures
//! itself, so a server or network that comes back is picked up with no action from anyone;
//! the supervisor restarts the sync after the failures the replicator gives up on (the
//! server unreachable when the sync starts, a wrong password, a missing database it may not
//! create), with a capped backoff. "Sync now" ([`SyncCtl::sync_now`]) cuts short whichever
//! wait is under way: the replicator's before a retry (`RetryNow`) or the supervisor's
//! before a restart. The sync's events drive the state here; the badges and the unsynced
//! count are Settee's per-document sync state (`state.rs`). A publisher task sends the
//! state and the changed badges to the pages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
// The facade re-exports `Event` but not the `Direction` its variants carry.
use settee::Direction;
use settee::{CancellationToken, Event, Local, ReplicateOptions, RetryNow, RetryPolicy};
use tokio::sync::Notify;

use crate::live::{Hub, Update};
use crate::note::now_ms;
use crate::settings::Remote;
use crate::state::{Counts, Tracker};
use crate::Result;

/// The replicator's retries: quick at first, then at most this far apart, so that sync
/// resumes within seconds of the server coming back.
const RETRY: RetryPolicy = RetryPolicy {
    initial_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(5),
    max_retries: 4,
};

/// The supervisor's delays before starting a sync again after it failed: for a failure that
/// may pass by itself (the server unreachable at start), and for one that needs someone to
/// act (a wrong password): then there is no point in asking often.
const RESTART_TRANSIENT: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(5));
const RESTART_FATAL: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(30));

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
    /// The user the app signs in as, if any.
    pub user: Option<String>,
    /// What the sync is doing.
    pub state: Phase,
    /// Why it is offline or failing, in words a person acts on ("name or password is
    /// incorrect", "server unreachable"); no credentials in it.
    pub message: Option<String>,
    /// The last failure since the server was set, even when the sync works again (the
    /// sync settings show it), and when it happened (ms since 1970).
    pub last_error: Option<String>,
    /// When `last_error` happened (ms since 1970).
    pub last_error_at: Option<i64>,
    /// When offline or failing: how long until the next attempt.
    pub retry_in_ms: Option<u64>,
    /// When both directions were last caught up (ms since 1970).
    pub last_synced_at: Option<i64>,
    /// Notes the server does not have yet (waiting to upload or rejected).
    pub unsynced: usize,
    /// Notes in conflict.
    pub conflicts: usize,
    /// Notes whose current revision the server refused (part of `unsynced`).
    pub rejected: usize,
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
    /// The last failure with this remote, worded, and when (ms since 1970).
    last_error: Option<(String, i64)>,
}

struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the sync with the configured remote and keeps the global state.
pub struct SyncCtl {
    db: Local,
    tracker: Arc<Tracker>,
    hub: Hub,
    /// Wakes the publisher: something changed the state or the badges.
    changed: Arc<Notify>,
    status: Mutex<Status>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Given to every sync this runs (in its `ReplicateOptions`, so that it outlives each
    /// `Syncing` handle and reaches a sync that is starting): "Sync now" triggers it.
    retry_now: RetryNow,
    /// Wakes the supervisor waiting to restart a sync that stopped ("Sync now").
    restart_now: Notify,
}

impl std::fmt::Debug for SyncCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCtl").finish_non_exhaustive()
    }
}

impl SyncCtl {
    pub(crate) fn new(db: Local, tracker: Arc<Tracker>, hub: Hub, changed: Arc<Notify>) -> SyncCtl {
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
                last_error: None,
            }),
            running: tokio::sync::Mutex::new(None),
            retry_now: RetryNow::new(),
            restart_now: Notify::new(),
        }
    }

    /// "Sync now": a sync waiting to retry (offline, or after a server error) retries at
    /// once, and a sync that stopped starts again at once. Returns whether anything was
    /// waiting (a sync that is running or caught up needs nothing: it follows changes live).
    pub fn sync_now(&self) -> bool {
        let retried = self.retry_now.trigger();
        let restarting = self.lock().stopped.is_some();
        if restarting {
            // Only the supervisor waits on this, and only while `stopped` is set.
            self.restart_now.notify_waiters();
        }
        tracing::info!(retried, restarting, "sync now");
        retried || restarting
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
            st.last_error = None;
        }
        let client = remote.as_ref().and_then(|r| r.open().ok());
        self.tracker.set_remote(client, self.changed.clone()).await;
        if let Some(remote) = remote {
            self.read_last_sync().await;
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
                st.last_error = Some((failure.message.clone(), now_ms()));
                st.stopped = Some((failure.message, failure.transient, Instant::now() + delay));
                st.push = Dir::Starting;
                st.pull = Dir::Starting;
            }
            self.changed.notify_one();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.restart_now.notified() => {}
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
                    message: format!("the server address cannot be used: {e}"),
                    transient: false,
                    caught_up: false,
                })
            }
        };
        let opts = ReplicateOptions {
            continuous: true,
            create_target: true,
            retry: RETRY,
            retry_now: self.retry_now.clone(),
            ..Default::default()
        };
        let mut sync = self.db.sync(&remote_db, opts);
        let mut caught_up = false;
        loop {
            // Both futures are cancel-safe: an event not taken stays in the handle's queue.
            tokio::select! {
                event = sync.next() => match event {
                    Some(event) => caught_up |= self.on_event(event),
                    None => break,
                },
                () = cancel.cancelled() => {
                    sync.cancel();
                    if let Err(e) = sync.finish().await {
                        tracing::debug!(error = %e, "the cancelled sync ended with an error");
                    }
                    return None;
                }
            }
        }
        let result = sync.finish().await;
        if cancel.is_cancelled() {
            return None;
        }
        let (message, transient) = match result {
            Ok(_) => ("the sync stopped".to_owned(), true),
            Err(e) => (reason(&e), is_transient(&e)),
        };
        Some(Failure {
            message,
            transient,
            caught_up,
        })
    }

    /// When both directions last completed, from the store's sync status (no network).
    async fn read_last_sync(&self) {
        match self.tracker.counts().await {
            Ok((_, last)) => {
                let when = |t: &Option<String>| t.as_deref().and_then(rfc3339_ms);
                if let (Some(push), Some(pull)) = (when(&last.push), when(&last.pull)) {
                    let mut st = self.lock();
                    if st.last_synced_at.is_none() {
                        st.last_synced_at = Some(push.min(pull));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the sync status"),
        }
    }

    /// Takes one replicator event into the state; says whether both directions are caught
    /// up now.
    fn on_event(&self, event: Event) -> bool {
        let mut st = self.lock();
        match event {
            Event::Active { direction } => *st.dir(direction) = Dir::Active,
            Event::Change { direction, .. } => *st.dir(direction) = Dir::Active,
            Event::Checkpoint { .. } => {}
            // The wait before a retry is over: trying again.
            Event::Retrying { direction, .. } => *st.dir(direction) = Dir::Starting,
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
                name,
                retrying: true,
                retry_in_ms,
            } => {
                let wait = Duration::from_millis(retry_in_ms.unwrap_or(0));
                let message = reason_of_event(&name, &message);
                st.last_error = Some((message.clone(), now_ms()));
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
    fn view(&self, counts: Counts) -> SyncView {
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
            user: st.remote.as_ref().and_then(|r| r.user().map(str::to_owned)),
            state,
            message,
            last_error: st.last_error.as_ref().map(|(m, _)| m.clone()),
            last_error_at: st.last_error.as_ref().map(|(_, at)| *at),
            retry_in_ms,
            last_synced_at: st.last_synced_at,
            unsynced: counts.unsynced,
            conflicts: counts.conflicts,
            rejected: counts.rejected,
        }
    }

    /// The global state now. Reads the store (counts).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn current(&self) -> Result<SyncView> {
        let (counts, _) = self.tracker.counts().await?;
        Ok(self.view(counts))
    }

    /// Sends the state and the changed badges to the pages whenever something changed.
    /// Runs for the life of the app.
    pub(crate) async fn publish(self: Arc<Self>) {
        loop {
            self.changed.notified().await;
            // Badges that change after the counts are read wake this loop again, so a page
            // ends with both as they are; on an error they stay for the next round.
            match self.tracker.counts().await {
                Ok((counts, _)) => {
                    let badges = self.tracker.take_changed();
                    let sync = self.view(counts);
                    self.hub.send(Update::Sync {
                        sync,
                        badges,
                        full: false,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "reading the sync status"),
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

/// The error and its causes, `: `-separated, as the page shows why the sync stopped.
fn error_chain(e: &settee::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Why a sync failed, in the words the page shows: what the person can act on first
/// (the facade's `ErrorKind`), then the details for the kinds that have no plain wording.
fn reason(e: &settee::Error) -> String {
    use settee::ErrorKind as K;
    match e.kind() {
        K::Unauthorized => "name or password is incorrect".to_owned(),
        K::Offline => "server unreachable".to_owned(),
        K::Forbidden => format!("the server refuses this user: {}", error_chain(e)),
        K::NotFound => format!(
            "the database is not on the server (and may not be created): {}",
            error_chain(e)
        ),
        K::Server => format!("the server failed: {}", error_chain(e)),
        _ => error_chain(e),
    }
}

/// The same wording for a replicator's `Error` event, which carries the error's CouchDB
/// name (the transport's own for a network failure) and its message.
fn reason_of_event(name: &str, message: &str) -> String {
    match name {
        "transport" | "offline" | "timeout" => "server unreachable".to_owned(),
        "unauthorized" => "name or password is incorrect".to_owned(),
        "forbidden" => format!("the server refuses this user: {message}"),
        _ => message.to_owned(),
    }
}

/// Whether a failed sync may succeed by itself later (the server unreachable or busy)
/// rather than need someone to act (a wrong password, a database it may not create). The
/// facade's error has no such query: the replicator's own answer is behind its
/// `Replicate` variant.
fn is_transient(e: &settee::Error) -> bool {
    matches!(e, settee::Error::Replicate(e) if e.is_transient())
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

    #[test]
    fn failures_are_worded_for_people() {
        assert_eq!(
            reason_of_event("transport", "error sending request"),
            "server unreachable"
        );
        assert_eq!(
            reason_of_event("unauthorized", "Name or password is incorrect."),
            "name or password is incorrect"
        );
        assert_eq!(reason_of_event("bad_gateway", "502"), "502");
    }
}
