//! The wait before a retry: how long it lasts (the [`RetryPolicy`]'s backoff, or longer when
//! the server asked with `Retry-After`) and what ends it early: a cheap probe of the peers that
//! finds them answering again after a connection-level failure, or the application's
//! [`RetryNow`]. Whether to retry at all and how failed attempts are counted stay with
//! `replication.rs`; a probe is not an attempt.
//!
//! Why probe: an offline-first user who worked for hours without a network expects the sync
//! to resume the moment the network is back, as PouchDB apps that watch connectivity do. An
//! exponential backoff that has grown to [`RetryPolicy::max_delay`] would otherwise leave up to a
//! minute unused. A probe (`HEAD` of the database, one try) costs the server almost
//! nothing, so it runs every [`PROBE_INTERVAL`]. Server errors (5xx, 429) keep the backoff:
//! the server is there and asked for less load, so probing it more often would not help.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::RetryReason;
use crate::{Error, RetryPolicy};

/// How often a wait after a connection-level failure probes the peers. With the probe's own
/// time (a refused connection answers at once), a server that comes back is noticed within
/// about this long plus one round trip.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest one probe may take: a probe that hangs (a network that drops packets) is
/// given up and the next one starts, so one slow probe does not hide a recovery.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Cuts short the wait before a retry of the replications that share it: for an application
/// that learns from the operating system that the network is back, or a "Sync now" button.
///
/// Every [`crate::ReplicateOptions`] carries one ([`crate::ReplicateOptions::retry_now`]);
/// replications built from clones of the same options share it, so a sync's push and pull
/// are both woken by one call. Cheap to clone (an `Arc`).
///
/// ```
/// let opts = settee_replicate::ReplicateOptions { continuous: true, ..Default::default() };
/// let retry_now = opts.retry_now.clone();
/// // ... start a replication with `opts`; later, when the OS says the network is back:
/// assert!(!retry_now.trigger()); // nothing was waiting yet
/// ```
#[derive(Clone, Default)]
pub struct RetryNow {
    inner: Arc<RetryNowInner>,
}

#[derive(Default)]
struct RetryNowInner {
    /// Bumped by each `trigger`: a wait that began at an older value ends.
    generation: AtomicU64,
    notify: Notify,
    /// Waits in progress.
    waiting: AtomicUsize,
}

impl std::fmt::Debug for RetryNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryNow")
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl RetryNow {
    /// A new trigger, shared by nobody yet.
    pub fn new() -> RetryNow {
        RetryNow::default()
    }

    /// Ends every wait before a retry in progress now (backoff and probing alike): the
    /// replications retry their failed step at once. A server's `Retry-After` is still
    /// honoured: a wait it asked for ends when it allows. A replication that is not waiting
    /// is not affected (nothing is remembered for a later wait). Returns whether any
    /// replication was waiting.
    pub fn trigger(&self) -> bool {
        // Counted before waking them: a woken wait can end, and stop counting, on another
        // thread before this one reads the count again.
        let waiting = self.waiting() > 0;
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
        waiting
    }

    /// How many replications sharing this trigger are waiting before a retry now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Taken when a step fails: from now until the wait before its retry ends, the
    /// replication counts as waiting, and any later `trigger` ends that wait (even one that
    /// comes before the wait begins, while the failure is being reported).
    pub(crate) fn ticket(&self) -> Ticket<'_> {
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        Ticket {
            retry_now: self,
            generation: self.inner.generation.load(Ordering::SeqCst),
        }
    }

    /// Resolves once `trigger` was called after `ticket` was taken.
    async fn triggered_since(&self, ticket: u64) {
        loop {
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a trigger between the two is not missed.
            notified.as_mut().enable();
            if self.inner.generation.load(Ordering::SeqCst) != ticket {
                return;
            }
            notified.await;
        }
    }
}

/// A failed step's claim on a [`RetryNow`] ([`RetryNow::ticket`]); counts as waiting until
/// dropped (the wait may end by cancellation, at any await).
pub(crate) struct Ticket<'a> {
    retry_now: &'a RetryNow,
    generation: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.retry_now.inner.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What kind of failure a retry follows, which decides how the wait before it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The peer could not be reached, or the connection broke (refused, reset, timed out, a
    /// name that does not resolve, a cut feed): probe while waiting.
    Connection,
    /// The server answered with an error (5xx, 429) or something else went wrong: wait out
    /// the backoff, and at least `retry_after` if the server gave one.
    Server {
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// Classifies a transient error.
    pub(crate) fn of(e: &Error) -> Failure {
        use settee_couch::Error as E;
        match e {
            Error::Couch(E::Connect { .. } | E::Transport { .. } | E::FeedInterrupted { .. }) => {
                Failure::Connection
            }
            Error::Couch(c) => Failure::Server {
                retry_after: c.failure().and_then(settee_couch::Failure::retry_after),
            },
            Error::GaveUp { source, .. } => Failure::of(source),
            _ => Failure::Server { retry_after: None },
        }
    }
}

/// The wait before one retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// How long to wait unless something ends the wait early.
    pub(crate) delay: Duration,
    /// Whether to probe the peers while waiting.
    pub(crate) probe: bool,
    /// The server's `Retry-After` (bounded by the policy's `max`): no retry before it, not
    /// even when asked.
    pub(crate) floor: Duration,
}

impl Plan {
    /// The wait before retry number `retry` (0 for the first) after `failure`: the policy's
    /// backoff, lengthened to the server's `Retry-After` (at most `policy.max_delay`: a server
    /// asking for an hour does not stop a live sync for an hour).
    pub(crate) fn new(policy: &RetryPolicy, retry: u32, failure: Failure) -> Plan {
        let backoff = policy.delay(retry);
        match failure {
            Failure::Connection => Plan {
                delay: backoff,
                probe: true,
                floor: Duration::ZERO,
            },
            Failure::Server { retry_after } => {
                let floor = retry_after.unwrap_or_default().min(policy.max_delay);
                Plan {
                    delay: backoff.max(floor),
                    probe: false,
                    floor,
                }
            }
        }
    }
}

/// Waits as `plan` says. `probe` asks the peers whether they answer (`true`: retry now).
/// Returns why the wait ended, or `None` when `cancel` fired. `ticket` is the
/// [`RetryNow::ticket`] taken when the failure was seen, so that a trigger between the
/// failure and the start of the wait still counts.
pub(crate) async fn wait<F, Fut>(
    plan: &Plan,
    mut probe: F,
    ticket: Ticket<'_>,
    cancel: &CancellationToken,
) -> Option<RetryReason>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let until = start + plan.delay;
    let floor = start + plan.floor;
    let asked = ticket.retry_now.triggered_since(ticket.generation);
    let mut asked = std::pin::pin!(asked);
    let elapsed = tokio::time::sleep_until(until);
    let mut elapsed = std::pin::pin!(elapsed);
    // Every future selected on here is cancel-safe: sleeps, a `Notified` re-armed in a loop,
    // a cancellation token, and a probe whose result is only a hint.
    loop {
        let next_probe = if plan.probe {
            (Instant::now() + PROBE_INTERVAL).min(until)
        } else {
            until
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            () = &mut elapsed => return Some(RetryReason::Backoff),
            () = &mut asked => break,
            () = tokio::time::sleep_until(next_probe), if plan.probe => {}
        }
        let answered = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            () = &mut elapsed => return Some(RetryReason::Backoff),
            () = &mut asked => break,
            r = tokio::time::timeout(PROBE_TIMEOUT, probe()) => r.unwrap_or(false),
        };
        if answered {
            return Some(RetryReason::PeerAnswered);
        }
    }
    // Asked to retry now; the server's Retry-After still holds.
    tokio::select! {
        () = cancel.cancelled() => None,
        () = tokio::time::sleep_until(floor) => Some(RetryReason::Asked),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    fn policy(initial: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            initial_delay: Duration::from_secs(initial),
            max_delay: Duration::from_secs(max),
        }
    }

    #[test]
    fn a_connection_failure_probes_and_a_server_error_keeps_its_retry_after() {
        let p = policy(1, 60);
        let conn = Plan::new(&p, 10, Failure::Connection);
        assert!(conn.probe);
        assert!(conn.delay >= Duration::from_secs(30), "{conn:?}");
        let busy = Plan::new(
            &p,
            0,
            Failure::Server {
                retry_after: Some(Duration::from_secs(7)),
            },
        );
        assert!(!busy.probe);
        assert_eq!(busy.delay, Duration::from_secs(7));
        assert_eq!(busy.floor, Duration::from_secs(7));
        // Bounded by the policy's max: an hour is not honoured in full.
        let hour = Plan::new(
            &p,
            0,
            Failure::Server {
                retry_after: Some(Duration::from_secs(3600)),
            },
        );
        assert_eq!(hour.delay, Duration::from_secs(60));
        // A backoff longer than Retry-After wins.
        let late = Plan::new(
            &p,
            10,
            Failure::Server {
                retry_after: Some(Duration::from_secs(1)),
            },
        );
        assert!(late.delay >= Duration::from_secs(30), "{late:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn probing_ends_the_wait_when_the_peer_answers() {
        let plan = Plan::new(&policy(60, 60), 0, Failure::Connection);
        let probes = AtomicU32::new(0);
        let r = wait(
            &plan,
            || {
                let n = probes.fetch_add(1, Ordering::SeqCst) + 1;
                async move { n >= 3 }
            },
            RetryNow::new().ticket(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(r, Some(RetryReason::PeerAnswered));
        assert_eq!(probes.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_error_is_not_probed() {
        let plan = Plan::new(&policy(2, 60), 0, Failure::Server { retry_after: None });
        let probes = AtomicU32::new(0);
        let r = wait(
            &plan,
            || {
                probes.fetch_add(1, Ordering::SeqCst);
                async { true }
            },
            RetryNow::new().ticket(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(r, Some(RetryReason::Backoff));
        assert_eq!(probes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_answers_waits_out_the_backoff() {
        let plan = Plan::new(&policy(10, 60), 0, Failure::Connection);
        let probes = AtomicU32::new(0);
        let r = wait(
            &plan,
            || {
                probes.fetch_add(1, Ordering::SeqCst);
                async { false }
            },
            RetryNow::new().ticket(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(r, Some(RetryReason::Backoff));
        // About one probe a second of a 5-10 s wait.
        let n = probes.load(Ordering::SeqCst);
        assert!((4..=10).contains(&n), "{n} probes");
    }

    // The clock is paused (tokio's test-util): durations here are the logic's, exact and
    // independent of the machine's speed, not measurements.
    #[tokio::test(start_paused = true)]
    async fn retry_now_ends_a_wait_but_not_before_retry_after() {
        let trigger = RetryNow::new();
        let plan = Plan::new(&policy(60, 60), 0, Failure::Server { retry_after: None });
        let ticket = trigger.ticket();
        let cancel = CancellationToken::new();
        let waiting = wait(&plan, || async { false }, ticket, &cancel);
        let mut waiting = std::pin::pin!(waiting);
        // Let the wait begin, then trigger it.
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .is_err());
        assert_eq!(trigger.waiting(), 1);
        assert!(trigger.trigger());
        let start = Instant::now();
        assert_eq!(waiting.await, Some(RetryReason::Asked));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(trigger.waiting(), 0);
        assert!(!trigger.trigger(), "nobody waits now");

        // A trigger before the wait (after the failure's ticket) still counts; a server's
        // Retry-After still holds.
        let plan = Plan::new(
            &policy(1, 60),
            0,
            Failure::Server {
                retry_after: Some(Duration::from_secs(20)),
            },
        );
        let ticket = trigger.ticket();
        trigger.trigger();
        let start = Instant::now();
        assert_eq!(trigger.waiting(), 1, "a failed step counts as waiting");
        let r = wait(&plan, || async { true }, ticket, &CancellationToken::new()).await;
        assert_eq!(r, Some(RetryReason::Asked));
        assert!(start.elapsed() >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_the_wait() {
        let plan = Plan::new(&policy(60, 60), 0, Failure::Connection);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r = wait(&plan, || async { false }, RetryNow::new().ticket(), &cancel).await;
        assert_eq!(r, None);
    }
}
