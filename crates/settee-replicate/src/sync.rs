//! Sync: a push and a pull of the same pair, run together; and the offline answer to "what
//! have I not synced yet" read from the local checkpoints.

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{replication_id_of, ReplicationLog};
use crate::events::{Direction, Event, Summary};
use crate::peer::{DocFailure, Filter, Peer};
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
    if opts.create_target {
        if let Err(e) = remote.info().await {
            if e.name() != "not_found" {
                return Err(e);
            }
            remote.create().await?;
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
    let pull = Replication::new(
        remote,
        local,
        ReplicateOptions {
            direction: Direction::Pull,
            create_target: false,
            ..opts
        },
    );
    let both = cancel.child_token();
    let (p1, p2) = (both.clone(), both.clone());
    let (e1, e2) = (events.clone(), events);
    let push_fut = async move {
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
        // The direction that failed first cancelled the other: report its error, not the
        // cancellation it caused.
        (Err(Error::Cancelled), Err(e)) | (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// What is unsynced between a local store and a remote, from the local side alone.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    /// Local documents changed since the last successful push (`None` if the store cannot
    /// tell).
    pub unpushed: Option<u64>,
    /// When the last push checkpoint was written (RFC 3339), if ever.
    pub last_push: Option<String>,
    /// When the last pull checkpoint was written, if ever.
    pub last_pull: Option<String>,
    /// Documents that failed to replicate in the last session of either direction.
    pub failures: Vec<DocFailure>,
}

/// Reads the local checkpoints of the push and pull between `local` and `remote` and counts
/// the local changes not yet pushed. Needs no network: the remote is only named (except with
/// a filter function, whose code is part of the replication ids and is read from the
/// remote).
///
/// # Errors
/// The local store's errors.
pub async fn status<L: Peer, R: Peer>(
    local: &L,
    remote: &R,
    filter: &Filter,
) -> Result<SyncStatus> {
    let push_id = replication_id_of(local, remote, filter).await?;
    let pull_id = replication_id_of(remote, local, filter).await?;
    let push = local
        .get_local(&push_id)
        .await?
        .as_ref()
        .and_then(ReplicationLog::from_doc);
    let pull = local
        .get_local(&pull_id)
        .await?
        .as_ref()
        .and_then(ReplicationLog::from_doc);
    let since = push
        .as_ref()
        .map(|l| l.source_last_seq.clone())
        .unwrap_or_default();
    let when = |l: &Option<ReplicationLog>| {
        l.as_ref()
            .and_then(|l| l.history.first())
            .map(|s| s.end_time.clone())
    };
    let mut failures = Vec::new();
    for log in [&push, &pull].into_iter().flatten() {
        failures.extend(log.doc_failures.iter().cloned());
    }
    Ok(SyncStatus {
        unpushed: local.pending_since(&since).await,
        last_push: when(&push),
        last_pull: when(&pull),
        failures,
    })
}

/// How many changes the remote has that the last pull did not reach (the server's
/// `pending` after the pull checkpoint). Needs the network.
///
/// # Errors
/// The peers' errors (offline, authentication...).
pub async fn unpulled<L: Peer, R: Peer>(
    local: &L,
    remote: &R,
    filter: &Filter,
) -> Result<Option<u64>> {
    let pull_id = replication_id_of(remote, local, filter).await?;
    let since = local
        .get_local(&pull_id)
        .await?
        .as_ref()
        .and_then(ReplicationLog::from_doc)
        .map(|l| l.source_last_seq)
        .unwrap_or_default();
    let page = remote
        .changes(&crate::ChangesRequest {
            since,
            limit: 1,
            filter: filter.clone(),
            wait: None,
        })
        .await?;
    Ok(page
        .pending
        .map(|p| p.saturating_add(page.changes.len() as u64)))
}
