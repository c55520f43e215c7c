//! What is not synced between a local store and a remote, per document and in total, read
//! offline from the store's sync state (which the replication's `Peer` hooks keep, see
//! `peer_store.rs`), with the filter the pair is synced with applied here (`NotReplicated`).
//! Only "unpulled" needs the remote.
//!
//! Each question has a form that names the remote by its identity (`*_named`, the name the
//! replication registered it under, [`Peer::identity`]) instead of taking a peer: how the
//! process that holds a store answers them for another process (`settee-server`'s
//! `_settee` endpoints), which knows the remote only by name.

use std::collections::{BTreeMap, HashSet, VecDeque};

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use settee_revtree::Seq;
use settee_store::{Database, SyncState};

use crate::checkpoint::ReplicationLog;
use crate::peer::DocFailure;
use crate::peer::{ChangesRequest, Filter, Peer};
use crate::peer_store::{
    blocking, pull_failures, winning_doc, LAST_PULL_KEY, LAST_PUSH_KEY, PULL_FILTER_KEY,
    PULL_REPLICATION_KEY, PUSH_FILTER_KEY, PUSH_REPLICATION_KEY,
};
use crate::Result;

/// What is not synced between a local store and a remote, read offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The remote as it was asked about: its identity or its address ([`Peer::address`]:
    /// its URL without credentials).
    pub remote: String,
    /// The name the store keeps the remote's state under: its identity
    /// ([`Peer::identity`]), learned when a sync or [`learn_identity`] reached it under
    /// this name or another spelling of it; `remote` itself when none was learned.
    #[serde(default)]
    pub identity: String,
    /// The store keeps no sync state with this remote: no sync with it ever started, under
    /// this spelling of its URL or under one the store learned is the same database. The
    /// counts then say that nothing is known to be there (every document unpushed).
    #[serde(default)]
    pub never_synced: bool,
    /// Documents with a revision the remote is not known to hold, that the sync's filter
    /// includes: every such document, design documents (a Mango index is one) and rejected
    /// ones included; `_local` documents never (they do not replicate). Exact: 0 right
    /// after a complete sync. An app's own documents are `unpushed - unpushed_design`.
    pub unpushed: u64,
    /// Of `unpushed`, the design documents (ids starting with `_design/`): the indexes,
    /// views and validation functions the app or a library wrote, not the app's data.
    /// Absent (0) in a status from an older server.
    #[serde(default)]
    pub unpushed_design: u64,
    /// Of those, documents the remote refused.
    pub rejected: u64,
    /// Documents with a revision the remote does not have that the sync's filter excludes.
    pub not_replicated: u64,
    /// Revisions the remote has that the last pulls could not write here (the store refused
    /// them, or the remote did not give them); the next sync tries them again.
    pub pull_failed: u64,
    /// When the last push finished or caught up (RFC 3339), or wrote its last checkpoint if
    /// that is later: everything the store had then was pushed. `None` if never.
    pub last_push: Option<String>,
    /// When the last pull finished or caught up (or checkpointed), likewise.
    pub last_pull: Option<String>,
}

/// The local side of a (store, remote) pair: the store, the remote's name in it, and the
/// filter its last push used (what decides `NotReplicated`).
#[derive(Debug, Clone)]
struct PairView {
    db: Database,
    remote: String,
    push_filter: Filter,
    pull_filter: Filter,
    /// The replication ids of the last push and pull (their checkpoints' names), if any ran.
    push_id: Option<String>,
    pull_id: Option<String>,
    /// When the last push and pull caught up, as the replicator recorded it.
    last_push: Option<String>,
    last_pull: Option<String>,
    /// What the pulls could not write here, by id.
    pull_failed: Vec<DocFailure>,
}

impl PairView {
    /// The pair of `local` and the remote registered as `name` (its [`Peer::identity`], or
    /// an address the store learned an identity for: `Database::resolve_remote`).
    fn new(local: &Database, name: &str) -> PairView {
        let name = local.resolve_remote(name);
        let meta = local.remote(&name).map(|r| r.meta).unwrap_or_default();
        let filter = |key: &str| {
            meta.get(key)
                .and_then(Filter::from_json)
                .unwrap_or_default()
        };
        let id = |key: &str| meta.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        PairView {
            db: local.clone(),
            push_filter: filter(PUSH_FILTER_KEY),
            pull_filter: filter(PULL_FILTER_KEY),
            push_id: id(PUSH_REPLICATION_KEY),
            pull_id: id(PULL_REPLICATION_KEY),
            last_push: id(LAST_PUSH_KEY),
            last_pull: id(LAST_PULL_KEY),
            pull_failed: pull_failures(local, &name),
            remote: name,
        }
    }

    /// The state of a failed pull of document `id`, if one is kept.
    fn pull_failure(&self, id: &str) -> Option<SyncState> {
        self.pull_failed
            .iter()
            .find(|f| f.id == id)
            .map(pull_failed_state)
    }

    /// Whether the push filter excludes document `id` (blocking: a selector reads the
    /// document). A named filter runs only on a server and a push never uses one, so it
    /// excludes nothing here.
    fn excludes(&self, id: &str) -> settee_store::Result<bool> {
        Ok(match &self.push_filter {
            Filter::All | Filter::Named { .. } => false,
            Filter::DocIds(ids) => !ids.iter().any(|d| d == id),
            Filter::Selector(sel) => match winning_doc(&self.db, id)? {
                Some(doc) => !sel.matches(&doc),
                None => false,
            },
        })
    }

    /// `state` with the filter applied: an unsynced document the filter excludes is
    /// `NotReplicated` (a synced one stays synced: the remote has it).
    fn filtered(&self, id: &str, state: SyncState) -> settee_store::Result<SyncState> {
        if !state.is_synced() && self.excludes(id)? {
            return Ok(SyncState::NotReplicated);
        }
        Ok(state)
    }
}

/// Document `id`'s sync state with `remote`, offline: `None` if the local store has no such
/// document. O(1): the document's sync-state entry (and record), plus the document itself
/// when the pair is synced with a selector.
///
/// # Errors
/// The store's errors.
pub async fn sync_state<R: Peer>(
    local: &Database,
    remote: &R,
    id: &str,
) -> Result<Option<SyncState>> {
    sync_state_named(local, &remote.identity(), id).await
}

/// [`sync_state`] with the remote named by its identity ([`Peer::identity`]).
///
/// # Errors
/// The store's errors.
pub async fn sync_state_named(
    local: &Database,
    remote: &str,
    id: &str,
) -> Result<Option<SyncState>> {
    let view = PairView::new(local, remote);
    let id = id.to_owned();
    // A revision the remote has and a pull could not take outranks the local state: the
    // document is not in sync, whatever this store holds of it.
    if let Some(failed) = view.pull_failure(&id) {
        return Ok(Some(failed));
    }
    blocking(local, move |db| match db.sync_state(&view.remote, &id)? {
        Some(state) => view.filtered(&id, state).map(Some),
        None => Ok(None),
    })
    .await
}

/// Rows [`unsynced`] reads from the store at a time.
const UNSYNCED_PAGE: usize = 256;

/// One page of [`unsynced_page`]: the unsynced documents the filter includes, and where
/// the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsyncedPage {
    /// Documents and their states (`Unpushed`, `Rejected`, `PullFailed`), in id order.
    pub rows: Vec<(String, SyncState)>,
    /// The last id read (rows the filter excludes are read but not returned, so it may be
    /// past the last row): pass it as `after` for the next page. `None` when the page read
    /// nothing: there is no more.
    pub next: Option<String>,
}

/// The documents not known to be on `remote` that the sync's filter includes, in id order,
/// each with its state (`Unpushed` or `Rejected`), read offline, merged in id order with
/// the revisions pulls could not write here (`PullFailed`). The cost is in the number
/// of unsynced documents (with a filter, the excluded ones are read too), not the store's
/// size.
pub fn unsynced<R: Peer>(
    local: &Database,
    remote: &R,
) -> impl Stream<Item = Result<(String, SyncState)>> + Send + 'static {
    unsynced_named(local, &remote.identity())
}

/// [`unsynced`] with the remote named by its identity ([`Peer::identity`]).
pub fn unsynced_named(
    local: &Database,
    remote: &str,
) -> impl Stream<Item = Result<(String, SyncState)>> + Send + 'static {
    struct Walk {
        db: Database,
        remote: String,
        after: Option<String>,
        buffer: VecDeque<(String, SyncState)>,
        done: bool,
    }
    let start = Walk {
        db: local.clone(),
        remote: remote.to_owned(),
        after: None,
        buffer: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(start, |mut w| async move {
        loop {
            if let Some(item) = w.buffer.pop_front() {
                return Some((Ok(item), w));
            }
            if w.done {
                return None;
            }
            match unsynced_page(&w.db, &w.remote, w.after.take(), UNSYNCED_PAGE).await {
                Err(e) => {
                    w.done = true;
                    return Some((Err(e), w));
                }
                Ok(page) => {
                    w.done = page.next.is_none();
                    w.after = page.next;
                    w.buffer.extend(page.rows);
                }
            }
        }
    })
}

/// One page of [`unsynced_named`]: up to `limit` unsynced entries after id `after` are
/// read (fewer rows come back when the filter excludes some), for a caller that pages
/// itself (an HTTP endpoint).
///
/// # Errors
/// The store's errors.
pub async fn unsynced_page(
    local: &Database,
    remote: &str,
    after: Option<String>,
    limit: usize,
) -> Result<UnsyncedPage> {
    let view = PairView::new(local, remote);
    // A page of 0 would never move on.
    let limit = limit.max(1);
    blocking(local, move |db| {
        let rows = db.unsynced(&view.remote, after.as_deref(), limit)?;
        // Done only on an empty page: the store does not promise full pages.
        let next = rows.last().map(|(id, _)| id.clone());
        let mut kept = Vec::with_capacity(rows.len());
        for (id, state) in rows {
            let state = view.filtered(&id, state)?;
            if state != SyncState::NotReplicated {
                kept.push((id, state));
            }
        }
        // The revisions pulls could not write here, in the same id range: after `after`,
        // up to `next` (or to the end on the last page). A document with both comes twice:
        // its local state, then the failed pull.
        let in_range = |id: &str| {
            after.as_deref().is_none_or(|a| id > a) && next.as_deref().is_none_or(|n| id <= n)
        };
        for f in view.pull_failed.iter().filter(|f| in_range(&f.id)) {
            kept.push((f.id.clone(), pull_failed_state(f)));
        }
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(UnsyncedPage { rows: kept, next })
    })
    .await
}

/// A live stream of `remote`'s sync-state changes in the local store, for a UI's badges:
/// each item is a document whose state may have changed (written here, confirmed or
/// refused by a running sync, purged) and its state when the item is read (`None` once the
/// document is gone), with the sync's filter applied. Coalesced: a document changed several
/// times before the stream is polled comes once, with its latest state. Works offline.
pub fn sync_state_changes<R: Peer>(
    local: &Database,
    remote: &R,
) -> impl Stream<Item = Result<(String, Option<SyncState>)>> + Send + 'static {
    let view = PairView::new(local, &remote.identity());
    local.sync_state_changes(&view.remote).then(move |item| {
        let view = view.clone();
        async move {
            let (id, state) = item.map_err(|source| crate::Error::Store {
                path: view.db.path().display().to_string(),
                source,
            })?;
            match state {
                Some(s) if !s.is_synced() && !matches!(view.push_filter, Filter::All) => {
                    let db = view.db.clone();
                    blocking(&db, move |_| {
                        let s = view.filtered(&id, s)?;
                        Ok((id, Some(s)))
                    })
                    .await
                }
                other => Ok((id, other)),
            }
        }
    })
}

/// What is not synced between `local` and `remote`, offline: exact counts of unpushed,
/// rejected and filtered-out documents, and when the last push and pull checkpoints were
/// written. Without a filter the counts are one read; with `doc_ids`, one read per listed
/// id; with a selector, a walk of the unsynced documents.
///
/// # Errors
/// The local store's errors.
pub async fn status<R: Peer>(local: &Database, remote: &R) -> Result<SyncStatus> {
    let mut st = status_named(local, &remote.identity()).await?;
    // Named as the caller knows it, learned identity or not.
    st.remote = remote.address();
    Ok(st)
}

/// [`status`] with the remote named by its identity ([`Peer::identity`]).
///
/// # Errors
/// The local store's errors.
pub async fn status_named(local: &Database, remote: &str) -> Result<SyncStatus> {
    let asked = remote.to_owned();
    let view = PairView::new(local, remote);
    let v = view.clone();
    let (unpushed, rejected, not_replicated) = blocking(local, move |db| {
        let total = db.sync_counts(&v.remote)?;
        let (mut unpushed, mut rejected) = (0u64, 0u64);
        let mut count = |state: &SyncState| {
            if !state.is_synced() && *state != SyncState::NotReplicated {
                unpushed += 1;
                rejected += u64::from(matches!(state, SyncState::Rejected { .. }));
            }
        };
        match &v.push_filter {
            Filter::All | Filter::Named { .. } => return Ok((total.unsynced, total.rejected, 0)),
            Filter::DocIds(ids) => {
                let ids: HashSet<&String> = ids.iter().collect();
                for id in ids {
                    if let Some(state) = db.sync_state(&v.remote, id)? {
                        count(&state);
                    }
                }
            }
            Filter::Selector(_) => {
                let mut after: Option<String> = None;
                loop {
                    let rows = db.unsynced(&v.remote, after.as_deref(), UNSYNCED_PAGE)?;
                    let Some((last, _)) = rows.last() else { break };
                    after = Some(last.clone());
                    for (id, state) in rows {
                        count(&v.filtered(&id, state)?);
                    }
                }
            }
        }
        Ok((unpushed, rejected, total.unsynced.saturating_sub(unpushed)))
    })
    .await?;
    let v = view.clone();
    let unpushed_design = blocking(local, move |db| unpushed_design(&db, &v)).await?;
    let when = |doc: Option<serde_json::Value>| {
        doc.as_ref()
            .and_then(ReplicationLog::from_doc)
            .and_then(|l| l.history.first().map(|s| s.end_time.clone()))
    };
    let mut failed_ids: Vec<&str> = view.pull_failed.iter().map(|f| f.id.as_str()).collect();
    failed_ids.dedup();
    Ok(SyncStatus {
        never_synced: local.remote(&view.remote).is_none(),
        pull_failed: failed_ids.len() as u64,
        remote: asked,
        identity: view.remote,
        unpushed,
        unpushed_design,
        rejected,
        not_replicated,
        // The later of when a run last caught up and its last checkpoint (the same format,
        // so they compare as text); a store synced by an older build has only the latter.
        last_push: when(checkpoint_of(local, view.push_id.as_deref()).await?)
            .max(view.last_push.clone()),
        last_pull: when(checkpoint_of(local, view.pull_id.as_deref()).await?)
            .max(view.last_pull.clone()),
    })
}

/// How many of the pair's unpushed documents are design documents: the store's unsynced
/// listing from the start of the `_design/` id range to its end, so the cost is in the
/// number of unsynced design documents (plus the pending documents the listing merges in).
fn unpushed_design(db: &Database, view: &PairView) -> settee_store::Result<u64> {
    const PREFIX: &str = "_design/";
    let mut n = 0u64;
    // Every design document's id is longer than the prefix, so it sorts after it.
    let mut after = PREFIX.to_owned();
    loop {
        let rows = db.unsynced(&view.remote, Some(&after), UNSYNCED_PAGE)?;
        let full = rows.len() == UNSYNCED_PAGE;
        for (id, state) in rows {
            if !id.starts_with(PREFIX) {
                return Ok(n);
            }
            let state = view.filtered(&id, state)?;
            n += u64::from(!state.is_synced() && state != SyncState::NotReplicated);
            after = id;
        }
        if !full {
            return Ok(n);
        }
    }
}

/// Asks `remote` its identity ([`Peer::learn_identity`]: one `GET /` for a remote
/// database) and records in `local` that `remote`'s address names it, moving any state
/// kept under the address (as a sync's start does): the offline calls then answer for
/// this spelling of the remote's URL, too. Returns the identity. What `settee status`
/// does first when the server answers.
///
/// # Errors
/// The remote's transient errors (offline); the store's.
pub async fn learn_identity<R: Peer>(local: &Database, remote: &R) -> Result<String> {
    remote.learn_identity().await?;
    let (identity, address) = (remote.identity(), remote.address());
    if identity != address {
        let (i, a) = (identity.clone(), address);
        blocking(local, move |db| db.learn_remote_alias(&a, &i).map(|_| ())).await?;
    }
    Ok(identity)
}

/// The state a kept pull failure gives its document.
fn pull_failed_state(f: &DocFailure) -> SyncState {
    SyncState::PullFailed {
        rev: f.rev.clone().unwrap_or_default(),
        error: f.error.clone(),
        reason: f.reason.clone(),
    }
}

/// The local store's checkpoint document `rep_id`, if there is one.
async fn checkpoint_of(
    local: &Database,
    rep_id: Option<&str>,
) -> Result<Option<serde_json::Value>> {
    match rep_id {
        Some(id) => Peer::get_local(local, id).await,
        None => Ok(None),
    }
}

/// Changes per `_changes` page when counting what is unpulled.
const UNPULLED_PAGE: usize = 500;

/// Where counting what is unpulled starts, as the local side of a pair knows it: the
/// source sequence of the last pull's checkpoint, and the pull's filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullSince {
    /// The remote's sequence the last pull checkpointed (`0` if it never ran).
    pub since: Seq,
    /// The pull's filter as [`Filter::to_json`] writes it (`null` for none).
    pub filter: serde_json::Value,
}

/// Where counting `remote`'s unpulled documents starts ([`unpulled_since`]), read offline
/// from the store; `remote` is named by its identity ([`Peer::identity`]).
///
/// # Errors
/// The store's errors.
pub async fn pull_since_named(local: &Database, remote: &str) -> Result<PullSince> {
    let view = PairView::new(local, remote);
    let since = checkpoint_of(local, view.pull_id.as_deref())
        .await?
        .as_ref()
        .and_then(ReplicationLog::from_doc)
        .map(|l| l.source_last_seq)
        .unwrap_or_default();
    Ok(PullSince {
        since,
        filter: view.pull_filter.to_json(),
    })
}

/// How many documents `remote` has revisions of that the local store lacks, among those it
/// changed after the last pull's checkpoint (with the pull's filter): the server's changes
/// after the checkpoint, checked against the store with `_revs_diff`, so a revision the
/// store already has (it pushed it, say) is not counted. Needs the remote.
///
/// # Errors
/// The remote's errors (offline, authentication...) and the store's.
pub async fn unpulled<R: Peer>(local: &Database, remote: &R) -> Result<u64> {
    let from = pull_since_named(local, &remote.identity()).await?;
    unpulled_since(local, remote, &from).await
}

/// [`unpulled`] with the local side as any peer (the process holding the store, over HTTP)
/// and where to start given ([`pull_since_named`]).
///
/// # Errors
/// The remote's errors (offline, authentication...) and the local peer's.
pub async fn unpulled_since<L: Peer, R: Peer>(
    local: &L,
    remote: &R,
    from: &PullSince,
) -> Result<u64> {
    let filter = Filter::from_json(&from.filter).unwrap_or_default();
    let mut since = from.since.clone();
    let mut unpulled: HashSet<String> = HashSet::new();
    loop {
        let page = remote
            .changes(&ChangesRequest {
                since: since.clone(),
                limit: UNPULLED_PAGE,
                filter: filter.clone(),
                wait: None,
            })
            .await?;
        let mut revs: BTreeMap<String, Vec<settee_revtree::Rev>> = BTreeMap::new();
        for c in &page.changes {
            revs.entry(c.id.clone())
                .or_default()
                .extend(c.changes.iter().cloned());
        }
        for (id, diff) in local.revs_diff(revs).await? {
            if !diff.missing.is_empty() {
                unpulled.insert(id);
            }
        }
        if page.changes.len() < UNPULLED_PAGE {
            return Ok(unpulled.len() as u64);
        }
        since = page.last_seq;
    }
}
