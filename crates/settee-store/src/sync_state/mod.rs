//! Per-document sync state with each remote the store syncs with: which of a document's
//! leaves a remote is not known to hold, and what the remote refused. The store keeps it
//! exact because every change to a document's leaves goes through its write path, which
//! updates the state in the same `sled::Batch` as the data (see `write/`).
//!
//! A remote is *registered*
//! ([`Database::register_remote`](crate::Database::register_remote)) under a name (the
//! replicator passes the remote's identity: its server's uuid with the database name, or a
//! URL without credentials) and gets a small number. For each registered remote, a document with leaves the remote is not known to hold has a `U`
//! entry (`keys::Unsynced`: those leaves, sorted, and the remote's standing rejection, if
//! any); a document without one (and not pending, below) is synced. `Msync` counts the
//! unsynced documents, so counts are one read, and listing walks the entries.
//!
//! Registering a remote does not write an entry per document: the remote gets a *pending*
//! interval of seqs (up to the update seq), and a document whose seq lies in one and that
//! has no entry is unsynced with all its leaves. Writing a document moves it past every
//! interval (its entry, if unsynced, is then written), and a remote's confirmations take the
//! span of the pending seqs they cover out of its intervals, writing entries for whatever
//! else was pending there ([`SyncBatch::settle`]); a held document inside one gets a marker
//! (an entry without leaves). A push confirms in seq order, so its batches write no entries.
//! A write call's own seqs join the intervals when most of its documents are unsynced with
//! all their leaves ([`SyncBatch::extend_pending`]), so local edits write no entries either.
//!
//! What makes a leaf held: a revision read from the remote and written here
//! ([`Database::bulk_docs_json_from`](crate::Database::bulk_docs_json_from), in the write's own batch), or the remote confirming
//! it afterwards ([`Database::record_remote_revs`](crate::Database::record_remote_revs), after a push's write results or a
//! `_revs_diff` that says "not missing"). Every other new leaf (an edit here, a revision from
//! anywhere else, a leaf a purge uncovers) is unsynced for every registered remote. A crash
//! between a remote's write and its confirmation leaves the document unsynced, never the
//! other way round; the next sync confirms it.
//!
//! Filters are not the store's business: it records whatever meta the replicator gives a
//! remote (its sync filters) and never produces [`SyncState::NotReplicated`] itself.
//!
//! A remote may have other names (`aliases.rs`): the replicator names a remote by its
//! identity once it learns it, and records the address it knew it by before as an alias,
//! so that an offline question asked with any spelling it learned reads the same state.
//!
//! Files: `registry.rs` (the registered remotes, their counts and pending intervals, and
//! their records; held in memory by the core), `batch.rs` (the sync part of one write call's
//! batch) with `intervals.rs` (how a batch changes the pending intervals), `remotes.rs`
//! (registering a remote), `read.rs` (a document's state, the counts, the unsynced listing),
//! `confirm.rs` and `lacking.rs` (what a remote says it holds, refused or lacks),
//! `watchers.rs` with `state_changes.rs` (live subscribers), `verify.rs` (the invariants).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use settee_revtree::{Rev, RevTree};

mod alias_map;
mod aliases;
mod batch;
mod confirm;
mod intervals;
mod lacking;
mod read;
pub(crate) mod registry;
mod remotes;
mod state_changes;
mod verify;
pub(crate) mod watchers;

pub use aliases::AliasLearned;
pub(crate) use batch::{Edit, Position, SyncBatch};
pub(crate) use registry::RemoteUpdate;
pub use registry::SyncCounts;

use crate::changes::SeqEntries;
use crate::database::{Counters, Inner};
use crate::keys::Unsynced;
use crate::Result;
use registry::{Pending, Registry};

/// A document's sync state with one remote.
///
/// Serializes with a `state` tag: `{"state":"unpushed","revs":["2-…"]}`, and reads back
/// from the same form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncState {
    /// The remote holds every leaf of the document, and there is one live leaf (or none).
    Synced,
    /// The remote is not known to hold these leaves (sorted).
    Unpushed {
        /// The leaves not known to be on the remote.
        revs: Vec<Rev>,
    },
    /// The remote refused revision `rev` (its validation function said `forbidden` or
    /// `unauthorized`, or another per-document error). Stays until a later revision of the
    /// document is accepted, or the document is deleted or purged here.
    Rejected {
        /// The refused revision.
        rev: Rev,
        /// The remote's error name (`forbidden`, `unauthorized`, ...).
        error: String,
        /// The remote's reason.
        reason: String,
    },
    /// The remote holds every leaf, and the document has several live leaves: a conflict
    /// to resolve (the winner and the losing leaves, best first).
    Conflicted {
        /// The winning revision.
        winner: Rev,
        /// The other live leaves.
        losers: Vec<Rev>,
    },
    /// The sync's filter excludes the document, so it is not replicated to this remote.
    /// The store never answers this itself (it knows no filters); `settee_replicate`
    /// applies the filter a remote was synced with.
    NotReplicated,
    /// The remote has revision `rev` of the document, and the last pull could not take it
    /// here: this store refused it, or the remote did not give it. Every sync tries it
    /// again until it arrives. The store never answers this itself either:
    /// `settee_replicate` keeps what a pull failed to write.
    PullFailed {
        /// The revision the pull could not take (as the remote named it).
        rev: String,
        /// The error's name (`bad_request`, `not_found`, ...).
        error: String,
        /// What went wrong.
        reason: String,
    },
}

impl SyncState {
    /// Whether the remote holds everything of the document (`Synced` or `Conflicted`).
    pub fn is_synced(&self) -> bool {
        matches!(self, SyncState::Synced | SyncState::Conflicted { .. })
    }

    /// The state's name, as the `state` tag says it (`synced`, `unpushed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Unpushed { .. } => "unpushed",
            SyncState::Rejected { .. } => "rejected",
            SyncState::Conflicted { .. } => "conflicted",
            SyncState::NotReplicated => "not_replicated",
            SyncState::PullFailed { .. } => "pull_failed",
        }
    }

    pub(super) fn of_entry(entry: Unsynced) -> SyncState {
        match entry.rejection {
            Some(r) => SyncState::Rejected {
                rev: r.rev,
                error: r.error,
                reason: r.reason,
            },
            None => SyncState::Unpushed { revs: entry.leaves },
        }
    }

    pub(super) fn of_held_tree(tree: &RevTree) -> SyncState {
        if tree.has_conflicts() {
            SyncState::Conflicted {
                winner: tree.winner(),
                losers: tree.conflicts(),
            }
        } else {
            SyncState::Synced
        }
    }
}

/// A remote the store syncs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remote {
    /// Its name (the replicator's identity of the remote: its server's uuid with the
    /// database name, or a URL without credentials when the server has no uuid).
    pub name: String,
    /// What the replicator records about it (its sync filters); opaque to the store.
    pub meta: Map<String, Value>,
    /// Its counts.
    #[serde(flatten)]
    pub counts: SyncCounts,
}

/// A revision a remote refused, for [`crate::Database::record_remote_revs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The document id.
    pub id: String,
    /// The refused revision.
    pub rev: Rev,
    /// The remote's error name.
    pub error: String,
    /// The remote's reason.
    pub reason: String,
}

/// The live by-seq entries with seqs `first..=last`, in seq order.
pub(super) fn live_entries(
    inner: &Inner,
    first: u64,
    last: u64,
) -> impl Iterator<Item = Result<crate::keys::SeqEntry>> + '_ {
    SeqEntries::new(&inner.tree, first.saturating_sub(1), false)
        .map(move |item| item.map_err(|e| e.into_store(inner)))
        .take_while(move |item| item.as_ref().map_or(true, |(e, _)| e.seq <= last))
        .filter_map(|item| match item {
            Ok((entry, None)) => Some(Ok(entry)),
            Ok((_, Some(_))) => None,
            Err(e) => Some(Err(e)),
        })
}

/// The smallest key after `key` (`key` + `0x00`).
pub(super) fn successor(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

/// Every document of a store whose counters are `counters`, unsynced with all its leaves:
/// how many documents that is (each has one live by-seq entry), and the one pending interval
/// up to the update seq that says so for all of them (what a new or reset remote holds).
pub(super) fn all_unsynced(counters: Counters) -> (u64, Pending) {
    let docs = counters.doc_count.saturating_add(counters.doc_del_count);
    let pending = if docs > 0 {
        Pending(vec![(1, counters.update_seq)])
    } else {
        Pending::default()
    };
    (docs, pending)
}

pub(super) fn sorted_leaves(tree: &RevTree) -> Vec<Rev> {
    let mut revs: Vec<Rev> = tree.leaves().into_iter().map(|l| l.rev).collect();
    revs.sort();
    revs
}

/// Registry access on [`Inner`].
impl Inner {
    pub(crate) fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.sync.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.sync.write().unwrap_or_else(|p| p.into_inner())
    }
}
