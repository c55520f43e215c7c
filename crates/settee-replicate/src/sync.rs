//! Sync: a push and a pull of the same pair, run together. What is not synced between the
//! pair, read offline, is `offline.rs`'s.

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Direction, Event, Summary};
use crate::peer::Peer;
use crate::{Error, ReplicateOptions, Replication, Result};

/// Both directions' summaries.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    /// Local to remote.
    pub push: Summary,
    /// Remote to local.
    pub pull: Summary,
}

/// Runs a push (`local` to `remote`) and a pull (`remote` to `local`) together, with the same
/// options (the filter applies to both directions). Events of both go to `events`, each
/// tagged with its direction.
///
/// # Errors
/// The first fatal error of either direction; the other direction is cancelled then.
pub async fn sync<L: Peer, R: Peer>(
    local: L,
    remote: R,
    opts: ReplicateOptions,
    events: Option<mpsc::Sender<Event>>,
    cancel: CancellationToken,
) -> Result<SyncSummary> {
    // Create the remote database first if asked: the pull reads from it, so it must exist
    // before either direction starts.
    // A server that is busy or away at that moment is retried as a replication's steps
    // are (a live sync started offline waits for the server instead of ending at once).
    if opts.create_target {
        let mut failures = 0u32;
        loop {
            let created = match remote.info().await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == settee_store::ErrorKind::NotFound => remote.create().await,
                Err(e) => Err(e),
            };
            let e = match created {
                Ok(()) => break,
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            failures = failures.saturating_add(1);
            // Each attempt is reported as a replication's are: an `Error` event, retrying
            // or final, so that a sync with `create_target` reads the same as one without.
            let report = |retrying: bool, delay: Option<std::time::Duration>| Event::Error {
                direction: Direction::Push,
                message: crate::error_chain(&e),
                name: e.name().to_owned(),
                retrying,
                retry_in_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            if !opts.continuous && failures >= opts.retry.attempts() {
                if let Some(tx) = &events {
                    let _ = tx.send(report(false, None)).await;
                }
                return Err(Error::GaveUp {
                    attempts: failures,
                    source: Box::new(e),
                });
            }
            let delay = opts.retry.delay(failures - 1);
            if let Some(tx) = &events {
                let _ = tx.send(report(true, Some(delay))).await;
            }
            tracing::warn!(error = %crate::error_chain(&e), retry_in = ?delay, "could not reach the remote to create it; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
    }
    let push = Replication::new(
        local.clone(),
        remote.clone(),
        ReplicateOptions {
            direction: Direction::Push,
            ..opts.clone()
        },
    );
    // The pull's last read of the remote's changes follows the push's writes to it, or a
    // remote whose feed is no snapshot can hide from that read a document the push was
    // writing, with revisions the remote held before (see `Replication::last_read_after`).
    let push_done = CancellationToken::new();
    let pull = Replication::new(
        remote,
        local,
        ReplicateOptions {
            direction: Direction::Pull,
            create_target: false,
            ..opts
        },
    )
    .last_read_after(push_done.clone());
    let both = cancel.child_token();
    let (p1, p2) = (both.clone(), both.clone());
    let (e1, e2) = (events.clone(), events);
    let push_fut = async move {
        // Fires when the push ends, however it ends.
        let _done = push_done.drop_guard();
        let r = push.run_with(e1, p1.clone()).await;
        if r.is_err() {
            p1.cancel();
        }
        r
    };
    let pull_fut = async move {
        let r = pull.run_with(e2, p2.clone()).await;
        if r.is_err() {
            p2.cancel();
        }
        r
    };
    let (push, pull) = tokio::join!(push_fut, pull_fut);
    match (push, pull) {
        (Ok(push), Ok(pull)) => Ok(SyncSummary { push, pull }),
        // A direction stopped because the other failed reports `Cancelled`: report why.
        (Err(Error::Cancelled), Err(e)) | (Err(e), _) | (_, Err(e)) => Err(e),
    }
}
