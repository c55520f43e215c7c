//! Per-document sync state with each remote the store syncs with: which of a document's
//! leaves a remote is not known to hold, and what the remote refused. The store keeps it
//! exact because every change to a document's leaves goes through its write path, which
//! updates the state in the same `sled::Batch` as the data (see `write.rs`).
//!
//! A remote is *registered* ([`Database::register_remote`]) under a name (the replicator
//! passes the remote's identity, a URL without credentials) and gets a small number. For
//! each registered remote, a document with leaves the remote is not known to hold has a `U`
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
//! ([`Database::bulk_docs_json_from`], in the write's own batch), or the remote confirming
//! it afterwards ([`Database::record_remote_revs`], after a push's write results or a
//! `_revs_diff` that says "not missing"). Every other new leaf (an edit here, a revision from
//! anywhere else, a leaf a purge uncovers) is unsynced for every registered remote. A crash
//! between a remote's write and its confirmation leaves the document unsynced, never the
//! other way round; the next sync confirms it.
//!
//! Filters are not the store's business: it records whatever meta the replicator gives a
//! remote (its sync filters) and never produces [`SyncState::NotReplicated`] itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use settee_revtree::{Leaf, Rev, RevTree};

mod lacking;

use crate::changes::SeqEntries;
use crate::database::{Flush, Inner};
use crate::keys::{self, DocRecord, StoredRejection, Unsynced};
use crate::{Database, Error, Result};

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

    fn of_entry(entry: Unsynced) -> SyncState {
        match entry.rejection {
            Some(r) => SyncState::Rejected {
                rev: r.rev,
                error: r.error,
                reason: r.reason,
            },
            None => SyncState::Unpushed { revs: entry.leaves },
        }
    }

    fn of_held_tree(tree: &RevTree) -> SyncState {
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

/// How many documents are not known to be on a remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Documents with a leaf the remote is not known to hold (rejected ones included).
    pub unsynced: u64,
    /// Of those, documents the remote refused.
    pub rejected: u64,
}

/// A remote the store syncs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remote {
    /// Its name (the replicator's identity of the remote: a URL without credentials).
    pub name: String,
    /// What the replicator records about it (its sync filters); opaque to the store.
    pub meta: Map<String, Value>,
    /// Its counts.
    #[serde(flatten)]
    pub counts: SyncCounts,
}

/// A revision a remote refused, for [`Database::record_remote_revs`].
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRemote {
    n: u32,
    name: String,
    #[serde(default)]
    meta: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Pending::is_empty")]
    pending: Pending,
}

/// The registered remotes, in memory. Changed only under the writer lock (registration, and
/// the counts after each batch that changes them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    remotes: Vec<RemoteReg>,
}

#[derive(Debug, Clone)]
struct RemoteReg {
    num: u32,
    name: String,
    meta: Map<String, Value>,
    counts: SyncCounts,
    /// The by-seq spans whose documents the remote is known to hold nothing of (unless
    /// their `U` key says otherwise).
    pending: Pending,
}

impl Registry {
    /// Reads `Mremotes` and `Msync`.
    pub(crate) fn load(
        tree: &sled::Tree,
        storage: &dyn Fn(sled::Error) -> Error,
    ) -> Result<Registry> {
        let remotes = tree.get(keys::META_REMOTES).map_err(storage)?;
        let counts = tree.get(keys::META_SYNC).map_err(storage)?;
        Registry::decode(remotes.as_deref(), counts.as_deref())
    }

    /// The registry that the `Mremotes` and `Msync` records (when present) hold.
    pub(crate) fn decode(remotes: Option<&[u8]>, counts: Option<&[u8]>) -> Result<Registry> {
        let stored: Vec<StoredRemote> = match remotes {
            Some(v) => serde_json::from_slice(v)
                .map_err(|e| Error::corrupt(format!("the remotes record: {e}")))?,
            None => Vec::new(),
        };
        let counts = match counts {
            Some(v) => decode_counts(v)?,
            None => Vec::new(),
        };
        let mut remotes = Vec::with_capacity(stored.len());
        for s in &stored {
            // Numbers count up from 1 and are never reused: the next one must exist, and
            // every stored interval must be sorted, disjoint and non-empty (`verify`
            // checks their end against the update seq).
            if s.n == u32::MAX || !s.pending.is_valid(u64::MAX) {
                return Err(Error::corrupt(format!(
                    "the remotes record: remote {:?} has a bad number or bad pending intervals",
                    s.name
                )));
            }
        }
        for s in stored {
            let c = counts
                .iter()
                .find(|(n, _)| *n == s.n)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            remotes.push(RemoteReg {
                num: s.n,
                name: s.name,
                meta: s.meta,
                counts: c,
                pending: s.pending,
            });
        }
        let mut nums: Vec<u32> = remotes.iter().map(|r| r.num).collect();
        nums.sort_unstable();
        nums.dedup();
        let mut names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if nums.len() != remotes.len() || names.len() != remotes.len() {
            return Err(Error::corrupt("the remotes record names a remote twice"));
        }
        if counts.len() != remotes.len() || counts.iter().any(|(n, _)| !nums.contains(n)) {
            return Err(Error::corrupt(
                "the sync counters do not match the registered remotes",
            ));
        }
        Ok(Registry { remotes })
    }

    /// Asks every question a registry read from disk is asked (the fuzz targets' check
    /// that a decoded registry is usable).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn exercise(&self) {
        for r in &self.remotes {
            let _ = r.pending.smallest();
            let _ = r.pending.contains(r.counts.unsynced);
            let mut p = r.pending.clone();
            p.remove(r.counts.rejected, r.counts.unsynced);
        }
    }

    fn by_name(&self, name: &str) -> Option<&RemoteReg> {
        self.remotes.iter().find(|r| r.name == name)
    }

    fn encode_remotes(&self) -> Result<Vec<u8>> {
        let stored: Vec<StoredRemote> = self
            .remotes
            .iter()
            .map(|r| StoredRemote {
                n: r.num,
                name: r.name.clone(),
                meta: r.meta.clone(),
                pending: r.pending.clone(),
            })
            .collect();
        serde_json::to_vec(&stored).map_err(|e| Error::corrupt(format!("encoding remotes: {e}")))
    }

    fn encode_counts(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 * self.remotes.len());
        for r in &self.remotes {
            out.extend_from_slice(&r.num.to_be_bytes());
            out.extend_from_slice(&r.counts.unsynced.to_be_bytes());
            out.extend_from_slice(&r.counts.rejected.to_be_bytes());
        }
        out
    }

    /// Takes in what a call changed (after its batch is applied).
    pub(crate) fn apply(&mut self, updates: &[RemoteUpdate]) {
        for u in updates {
            if let Some(r) = self.remotes.iter_mut().find(|r| r.num == u.num) {
                r.counts = u.counts;
                if let Some(p) = &u.pending {
                    r.pending = p.clone();
                }
            }
        }
    }
}

/// `Msync` → (number, counts) per remote.
fn decode_counts(bytes: &[u8]) -> Result<Vec<(u32, SyncCounts)>> {
    if bytes.len() % 20 != 0 {
        return Err(Error::corrupt(format!(
            "the sync counters record has {} bytes, not a multiple of 20",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(20)
        .map(|c| {
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[i..i + 8]);
                u64::from_be_bytes(b)
            };
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                SyncCounts {
                    unsynced: u64_at(4),
                    rejected: u64_at(12),
                },
            )
        })
        .collect())
}

/// What a write did to a document, for its sync state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Edit<'a> {
    /// An edit here (`new_edits=true`): its new leaf is unsynced everywhere.
    Local,
    /// A replicated revision (`new_edits=false`) whose leaf is `leaf`: held by the write's
    /// origin, if it has one, unsynced for every other remote.
    Replicated { leaf: &'a Rev },
    /// A purge of some of the document's leaves.
    Purge,
}

/// Where a document stands in the by-seq index before a call changes it: its seq, and its
/// leaves (read only if the seq is in a pending interval, where they are its entry).
pub(crate) struct Position<'t> {
    pub(crate) seq: u64,
    pub(crate) tree: &'t RevTree,
}

/// The sync part of one write call's batch: the documents' states it read or changed, the
/// count changes, and the pending intervals, for the remotes registered when the call
/// began.
pub(crate) struct SyncBatch {
    remotes: Vec<BatchRemote>,
    /// Index into `remotes` of the remote the call's replicated revisions come from.
    origin: Option<usize>,
    /// Document states as this call has left them, by `U` key.
    slots: HashMap<Vec<u8>, Slot>,
}

struct BatchRemote {
    num: u32,
    name: String,
    /// The counts when the call began, and as it has left them.
    before: SyncCounts,
    after: SyncCounts,
    /// The pending intervals as this call has left them, and whether it changed them.
    pending: Pending,
    pending_changed: bool,
}

/// One document's state with one remote during a call.
struct Slot {
    remote: usize,
    /// The state as this call leaves it (`None`: the remote holds every leaf).
    entry: Option<Unsynced>,
    /// What the `U` key holds on disk (`None`: no key; a marker has no leaves).
    disk: Option<Unsynced>,
    /// The document's seq while this call has not moved it (`None` once written here or
    /// removed), and its leaves, sorted, when that seq was pending.
    seq: Option<u64>,
    implicit: Option<Vec<Rev>>,
    /// Whether this call changed `entry`.
    changed: bool,
}

impl Slot {
    /// What the key should hold, given the remote's pending intervals after the call.
    fn desired(&self, pending: &Pending) -> Option<Unsynced> {
        let in_pending = self.seq.is_some_and(|s| pending.contains(s));
        match (&self.entry, in_pending) {
            (entry, false) => entry.clone(),
            // Held, though in a pending interval: a marker says so.
            (None, true) => Some(Unsynced::marker()),
            // The pending interval says it already.
            (Some(e), true)
                if e.rejection.is_none() && self.implicit.as_ref() == Some(&e.leaves) =>
            {
                None
            }
            (Some(e), true) => Some(e.clone()),
        }
    }
}

/// What one call changed for a remote, for the registry once its batch is applied.
pub(crate) struct RemoteUpdate {
    num: u32,
    counts: SyncCounts,
    pending: Option<Pending>,
}

impl SyncBatch {
    /// The sync part of a batch, or `None` when no remote is registered (a write then does
    /// nothing for sync state).
    pub(crate) fn new(inner: &Inner, origin: Option<&str>) -> Option<SyncBatch> {
        let reg = inner.registry();
        if reg.remotes.is_empty() {
            return None;
        }
        let remotes: Vec<BatchRemote> = reg
            .remotes
            .iter()
            .map(|r| BatchRemote {
                num: r.num,
                name: r.name.clone(),
                before: r.counts,
                after: r.counts,
                pending: r.pending.clone(),
                pending_changed: false,
            })
            .collect();
        let origin = origin.and_then(|o| remotes.iter().position(|r| r.name == o));
        Some(SyncBatch {
            remotes,
            origin,
            slots: HashMap::new(),
        })
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.remotes.iter().position(|r| r.name == name)
    }

    /// Document `id`'s state with remote `i`, as this call has left it. `pos` is where the
    /// document stands if this call has not written it yet (`None` for a new document).
    fn get(
        &mut self,
        inner: &Inner,
        i: usize,
        id: &str,
        pos: Option<&Position<'_>>,
    ) -> Result<Option<Unsynced>> {
        let r = &self.remotes[i];
        if let Some(slot) = self.slots.get(&keys::unsynced_key(r.num, id)) {
            return Ok(slot.entry.clone());
        }
        let in_pending = pos.is_some_and(|p| r.pending.contains(p.seq));
        // Markers are only kept inside the pending intervals, and every other entry is
        // counted: with none counted, a document outside them has no key (no read).
        if !in_pending && r.before.unsynced == 0 {
            return Ok(None);
        }
        self.load(inner, i, id, pos.map(|p| p.seq), || {
            pos.map(|p| sorted_leaves(p.tree)).unwrap_or_default()
        })
    }

    /// Reads document `id`'s key for remote `i` into a slot (if it has none yet), the
    /// document being at `seq` with the leaves `leaves` gives, sorted. Returns its state.
    fn load(
        &mut self,
        inner: &Inner,
        i: usize,
        id: &str,
        seq: Option<u64>,
        leaves: impl FnOnce() -> Vec<Rev>,
    ) -> Result<Option<Unsynced>> {
        let r = &self.remotes[i];
        let key = keys::unsynced_key(r.num, id);
        let in_pending = seq.is_some_and(|s| r.pending.contains(s));
        let slot = match self.slots.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => return Ok(o.get().entry.clone()),
            std::collections::hash_map::Entry::Vacant(v) => v,
        };
        let disk = match inner.tree.get(slot.key()).map_err(|e| inner.storage(e))? {
            Some(v) => Some(Unsynced::decode(id, &v)?),
            None => None,
        };
        let implicit = in_pending.then(leaves);
        let entry = match &disk {
            Some(d) if d.is_marker() => None,
            Some(d) => Some(d.clone()),
            None => implicit.clone().map(|leaves| Unsynced {
                leaves,
                rejection: None,
            }),
        };
        slot.insert(Slot {
            remote: i,
            entry: entry.clone(),
            disk,
            seq,
            implicit,
            changed: false,
        });
        Ok(entry)
    }

    /// Sets document `id`'s state with remote `i` (read with [`SyncBatch::get`] first).
    fn set(&mut self, i: usize, id: &str, new: Option<Unsynced>) {
        let r = &mut self.remotes[i];
        let key = keys::unsynced_key(r.num, id);
        let slot = self.slots.entry(key).or_insert_with(|| Slot {
            remote: i,
            entry: None,
            disk: None,
            seq: None,
            implicit: None,
            changed: false,
        });
        if slot.entry == new {
            return;
        }
        let flags = |e: Option<&Unsynced>| (e.is_some(), e.is_some_and(|e| e.rejection.is_some()));
        let (was, was_rej) = flags(slot.entry.as_ref());
        let (is, is_rej) = flags(new.as_ref());
        let step = |n: &mut u64, before: bool, after: bool| match (before, after) {
            (false, true) => *n += 1,
            (true, false) => *n = n.saturating_sub(1),
            _ => {}
        };
        step(&mut r.after.unsynced, was, is);
        step(&mut r.after.rejected, was_rej, is_rej);
        slot.entry = new;
        slot.changed = true;
    }

    /// Document `id` leaves its place in the by-seq index (written again, or removed): a
    /// pending interval no longer speaks for it.
    fn moved(&mut self, id: &str) {
        for r in &self.remotes {
            if let Some(slot) = self.slots.get_mut(&keys::unsynced_key(r.num, id)) {
                slot.seq = None;
                slot.implicit = None;
            }
        }
    }

    /// Document `id` was written again at `seq` with `leaves`: if this call's seqs become
    /// pending ([`SyncBatch::extend_pending`]), its entry may be implicit there.
    fn placed(&mut self, id: &str, seq: u64, leaves: &[Leaf]) {
        let mut sorted: Vec<Rev> = leaves.iter().map(|l| l.rev.clone()).collect();
        sorted.sort();
        for r in &self.remotes {
            if let Some(slot) = self.slots.get_mut(&keys::unsynced_key(r.num, id)) {
                slot.seq = Some(seq);
                slot.implicit = Some(sorted.clone());
            }
        }
    }

    /// Makes the seqs `first..=last` that this write call gave its documents pending with
    /// each remote for which that saves keys: when more of the call's documents are
    /// unsynced there with all their leaves (an edit here, the usual write) than are held
    /// (a pull from that remote, which would need markers). Those documents then need no
    /// `U` key, so a store that syncs writes as few keys as one that does not. The seqs join
    /// the last interval when they follow it; a new interval is only started below
    /// `MAX_PENDING_INTERVALS`.
    pub(crate) fn extend_pending(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        for i in 0..self.remotes.len() {
            let (mut implicit, mut held) = (0usize, 0usize);
            for slot in self.slots.values().filter(|s| s.remote == i) {
                if slot.seq.is_none_or(|s| s < first) {
                    continue;
                }
                match &slot.entry {
                    None => held += 1,
                    Some(e)
                        if e.rejection.is_none() && slot.implicit.as_ref() == Some(&e.leaves) =>
                    {
                        implicit += 1
                    }
                    Some(_) => {}
                }
            }
            if implicit <= held {
                continue;
            }
            let r = &mut self.remotes[i];
            let intervals = &mut r.pending.0;
            let n = intervals.len();
            match intervals.last_mut() {
                Some(iv) if iv.1 + 1 == first => iv.1 = last,
                _ if n < MAX_PENDING_INTERVALS => intervals.push((first, last)),
                _ => continue,
            }
            r.pending_changed = true;
        }
    }

    /// Updates document `id`'s entries after a write that changed its tree from `old` (at
    /// `pos`) to one whose leaves are `leaves` (best first), at `seq`.
    pub(crate) fn track(
        &mut self,
        inner: &Inner,
        id: &str,
        old: Option<Position<'_>>,
        seq: u64,
        leaves: &[Leaf],
        edit: Edit<'_>,
    ) -> Result<()> {
        // A local deletion of the document (its winner is now a tombstone) or a purge ends a
        // standing rejection.
        let ends_rejection = match edit {
            Edit::Local => leaves.first().is_some_and(|w| w.deleted),
            Edit::Purge => true,
            Edit::Replicated { .. } => false,
        };
        for i in 0..self.remotes.len() {
            let entry = self.get(inner, i, id, old.as_ref())?;
            let held_by_write = match edit {
                Edit::Replicated { leaf } if self.origin == Some(i) => Some(leaf),
                _ => None,
            };
            let mut unsynced: Vec<Rev> = leaves
                .iter()
                .filter(|l| {
                    let was_unsynced = entry
                        .as_ref()
                        .is_some_and(|e| e.leaves.binary_search(&l.rev).is_ok());
                    let was_leaf = old.as_ref().is_some_and(|p| p.tree.is_leaf(&l.rev));
                    was_unsynced || (!was_leaf && held_by_write != Some(&l.rev))
                })
                .map(|l| l.rev.clone())
                .collect();
            unsynced.sort();
            let new = if unsynced.is_empty() {
                None
            } else {
                let rejection = match &entry {
                    Some(e) if !ends_rejection => {
                        // Leaves that left the set because the origin's revision extends
                        // them were accepted by the remote.
                        let accepted = held_by_write.is_some()
                            && e.leaves.iter().any(|l| unsynced.binary_search(l).is_err());
                        e.rejection
                            .clone()
                            .filter(|r| !accepted || unsynced.binary_search(&r.rev).is_ok())
                    }
                    _ => None,
                };
                Some(Unsynced {
                    leaves: unsynced,
                    rejection,
                })
            };
            self.set(i, id, new);
        }
        self.placed(id, seq, leaves);
        Ok(())
    }

    /// Removes document `id`'s entries (a purge removed the document, which was at `pos`).
    pub(crate) fn remove_doc(&mut self, inner: &Inner, id: &str, pos: Position<'_>) -> Result<()> {
        for i in 0..self.remotes.len() {
            self.get(inner, i, id, Some(&pos))?;
            self.set(i, id, None);
        }
        self.moved(id);
        Ok(())
    }

    /// Records that remote `i` holds `held` revisions of document `id` (at `pos`). A leaf it
    /// now holds leaves the entry; when something was accepted, a rejection of another
    /// revision that is no longer unsynced ends.
    fn mark_held(
        &mut self,
        inner: &Inner,
        i: usize,
        id: &str,
        pos: Option<&Position<'_>>,
        held: &[Rev],
    ) -> Result<bool> {
        let Some(entry) = self.get(inner, i, id, pos)? else {
            return Ok(false);
        };
        let left: Vec<Rev> = entry
            .leaves
            .iter()
            .filter(|l| !held.contains(l))
            .cloned()
            .collect();
        if left.len() == entry.leaves.len() {
            return Ok(false);
        }
        let new = (!left.is_empty()).then(|| Unsynced {
            rejection: entry
                .rejection
                .clone()
                .filter(|r| left.binary_search(&r.rev).is_ok()),
            leaves: left,
        });
        self.set(i, id, new);
        Ok(true)
    }

    /// Marks the revision a replicated write found already stored as held by the write's
    /// origin (the origin sent it, so it has it). Returns whether that changed anything.
    pub(crate) fn held_by_origin(
        &mut self,
        inner: &Inner,
        id: &str,
        pos: Position<'_>,
        rev: &Rev,
    ) -> Result<bool> {
        match self.origin {
            Some(i) => self.mark_held(inner, i, id, Some(&pos), std::slice::from_ref(rev)),
            None => Ok(false),
        }
    }

    /// Records remote `i`'s refusal of a revision of `id` (at `pos`). A refusal proves the
    /// remote lacks that revision: a document the state called synced there (a remote that
    /// was reset or restored) gets it back as an unsynced leaf, when it is still a leaf.
    fn reject(
        &mut self,
        inner: &Inner,
        i: usize,
        pos: Option<&Position<'_>>,
        r: &Rejection,
    ) -> Result<()> {
        let leaves = match self.get(inner, i, &r.id, pos)? {
            Some(entry) => entry.leaves,
            None => match pos {
                Some(p) if sorted_leaves(p.tree).binary_search(&r.rev).is_ok() => {
                    vec![r.rev.clone()]
                }
                _ => return Ok(()),
            },
        };
        let new = Unsynced {
            leaves,
            rejection: Some(StoredRejection {
                rev: r.rev.clone(),
                error: r.error.clone(),
                reason: r.reason.clone(),
            }),
        };
        self.set(i, &r.id, Some(new));
        Ok(())
    }

    /// Takes the seqs `first..=last` out of remote `i`'s pending intervals. Each document
    /// there that the intervals spoke for is read first, so that [`SyncBatch::finish`]
    /// writes its state out (an explicit entry, or no key where a marker was).
    fn settle(&mut self, inner: &Inner, i: usize, first: u64, last: u64) -> Result<()> {
        for entry in live_entries(inner, first, last) {
            let entry = entry?;
            if !self.remotes[i].pending.contains(entry.seq) {
                continue;
            }
            let mut leaves = entry.leaves;
            self.load(inner, i, &entry.id, Some(entry.seq), || {
                leaves.sort();
                leaves
            })?;
        }
        let r = &mut self.remotes[i];
        r.pending.remove(first, last);
        r.pending_changed = true;
        Ok(())
    }

    /// After remote `i` confirmed or refused documents at `seqs` that were pending (their
    /// slots are loaded): takes what it can of them out of its pending intervals, reading
    /// and writing in proportion to these documents, never to what lies between them.
    ///
    /// The seqs are joined into segments across gaps that hold no other pending document
    /// (seqs of superseded entries, documents outside the intervals), walking each gap
    /// within a budget of [`GAP_WALK_PER_SEQ`] entries per confirmed seq; a segment leaves
    /// the intervals with no write at all (a push in seq order, the usual case, is one
    /// segment per batch). A gap with another pending document, or past the budget, ends a
    /// segment: that document stays pending as it was. A segment whose removal would split
    /// the intervals past [`MAX_PENDING_INTERVALS`] stays in them, and its documents get
    /// markers instead (one key each). Issue 19: taking the whole span from the first seq
    /// to the last out, as before, wrote an entry for every other pending document in it,
    /// thousands in one locked batch when a document of the batch had been edited in flight
    /// (its seq is then far ahead), or when a pull confirmed documents scattered over the
    /// store.
    fn settle_confirmed(&mut self, inner: &Inner, i: usize, seqs: &[u64]) -> Result<()> {
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable();
        seqs.dedup();
        let Some(&first) = seqs.first() else {
            return Ok(());
        };
        let confirmed: HashSet<u64> = seqs.iter().copied().collect();
        let mut budget = (seqs.len() as u64).saturating_mul(GAP_WALK_PER_SEQ);
        let mut segments: Vec<(u64, u64)> = vec![(first, first)];
        for pair in seqs.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let gap = next - prev - 1;
            let joins = gap == 0
                || (gap <= budget && {
                    budget -= gap;
                    let pending = &self.remotes[i].pending;
                    let mut clear = true;
                    for entry in live_entries(inner, prev + 1, next - 1) {
                        let seq = entry?.seq;
                        if pending.contains(seq) && !confirmed.contains(&seq) {
                            clear = false;
                            break;
                        }
                    }
                    clear
                });
            match segments.last_mut() {
                Some(last) if joins => last.1 = next,
                _ => segments.push((next, next)),
            }
        }
        let r = &mut self.remotes[i];
        for (a, b) in segments {
            let mut after = r.pending.clone();
            after.remove(a, b);
            if after.0.len() > MAX_PENDING_INTERVALS && after.0.len() > r.pending.0.len() {
                // Too many intervals already: the documents keep their place in them, and
                // markers say they are held.
                continue;
            }
            r.pending = after;
            r.pending_changed = true;
        }
        while self.remotes[i].pending.0.len() > MAX_PENDING_INTERVALS {
            let Some((a, b)) = self.remotes[i].pending.smallest() else {
                break;
            };
            self.settle(inner, i, a, b)?;
        }
        Ok(())
    }

    /// Puts the changed entries and, if they changed, the counters and the pending intervals
    /// into `batch`. Returns what the registry must learn once the batch is applied.
    pub(crate) fn finish(
        self,
        inner: &Inner,
        batch: &mut sled::Batch,
    ) -> Result<Option<Vec<RemoteUpdate>>> {
        for (key, slot) in &self.slots {
            let desired = slot.desired(&self.remotes[slot.remote].pending);
            if desired == slot.disk {
                continue;
            }
            match desired {
                Some(e) => batch.insert(&key[..], e.encode()?),
                None => batch.remove(&key[..]),
            }
        }
        let pending_changed = self.remotes.iter().any(|r| r.pending_changed);
        if self.remotes.iter().all(|r| r.before == r.after) && !pending_changed {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(20 * self.remotes.len());
        for r in &self.remotes {
            bytes.extend_from_slice(&r.num.to_be_bytes());
            bytes.extend_from_slice(&r.after.unsynced.to_be_bytes());
            bytes.extend_from_slice(&r.after.rejected.to_be_bytes());
        }
        batch.insert(keys::META_SYNC, bytes);
        let updates: Vec<RemoteUpdate> = self
            .remotes
            .into_iter()
            .map(|r| RemoteUpdate {
                num: r.num,
                counts: r.after,
                pending: r.pending_changed.then_some(r.pending),
            })
            .collect();
        if pending_changed {
            let mut reg = inner.registry().clone();
            reg.apply(&updates);
            batch.insert(keys::META_REMOTES, reg.encode_remotes()?);
        }
        Ok(Some(updates))
    }
}

/// At most this many pending intervals per remote: past it, the smallest is written out as
/// entries. Pushes confirmed out of order (several batches in flight) split the intervals
/// for a while; a push by document ids can split them for good.
const MAX_PENDING_INTERVALS: usize = 32;

/// How many by-seq entries a confirmation may walk between its documents, per document, to
/// find gaps it can take out of the pending intervals with them (see
/// [`SyncBatch::settle_confirmed`]).
const GAP_WALK_PER_SEQ: u64 = 64;

/// The by-seq spans (inclusive, sorted, disjoint) whose documents a remote holds nothing
/// of, unless their `U` key says otherwise. Registering a remote makes everything up to
/// the store's update seq pending in one write; pushes take the spans they confirm out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Pending(Vec<(u64, u64)>);

impl Pending {
    pub(crate) fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < seq);
        self.0.get(i).is_some_and(|&(a, _)| a <= seq)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes `first..=last` out.
    fn remove(&mut self, first: u64, last: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < first || a > last {
                out.push((a, b));
                continue;
            }
            if a < first {
                out.push((a, first - 1));
            }
            if b > last {
                out.push((last + 1, b));
            }
        }
        self.0 = out;
    }

    /// The interval with the fewest seqs.
    fn smallest(&self) -> Option<(u64, u64)> {
        self.0.iter().copied().min_by_key(|&(a, b)| b - a)
    }

    /// Whether the intervals are sorted, disjoint, non-empty and end by `max`.
    fn is_valid(&self, max: u64) -> bool {
        self.0.iter().all(|&(a, b)| 1 <= a && a <= b && b <= max)
            && self.0.windows(2).all(|w| w[0].1 < w[1].0)
    }

    fn intervals(&self) -> &[(u64, u64)] {
        &self.0
    }
}

/// Pending seqs up to which [`Database::unsynced`] reads the pending documents from the
/// by-seq index and sorts them; past it, it walks the records in id order.
const PENDING_SCAN_LIMIT: u64 = 4_096;

/// How many times a listing page is read without the writer lock before it takes it (see
/// [`Database::unsynced`]): a page collides only with a confirmation applied while it is
/// read, so a second read nearly always succeeds.
const OPTIMISTIC_READS: usize = 3;

/// Remote `name`'s pending intervals as the stored remotes record (`bytes`) has them.
fn stored_pending(bytes: Option<&[u8]>, name: &str) -> Result<Pending> {
    let Some(bytes) = bytes else {
        return Ok(Pending::default());
    };
    let stored: Vec<StoredRemote> = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("the remotes record: {e}")))?;
    Ok(stored
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.pending)
        .unwrap_or_default())
}

/// Entries removed per batch by `clear_unregistered`.
const REGISTER_BATCH: u64 = 1000;

/// The number the next registered remote gets (numbers are never reused).
pub(crate) fn next_number(reg: &Registry) -> Result<u32> {
    // The remotes record is read from disk: its largest number may be anything
    // `Registry::decode` accepts, so the addition is checked.
    let max = reg.remotes.iter().map(|r| r.num).max().unwrap_or(0);
    max.checked_add(1)
        .filter(|&n| n < u32::MAX)
        .ok_or_else(|| Error::corrupt("the remotes record: no remote number is left"))
}

/// Removes the entries of the number the next remote would get. Stores written before
/// format 6 registered a remote by writing an entry per document in several batches, the
/// registration itself in the last: one cut short by a crash left entries of a number no
/// remote has. One seek when there are none. Runs when a store opens and before a
/// registration.
pub(crate) fn clear_unregistered(
    tree: &sled::Tree,
    reg: &Registry,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<()> {
    let prefix = keys::unsynced_prefix(next_number(reg)?);
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for item in tree.scan_prefix(prefix).take(REGISTER_BATCH as usize) {
            let (k, _) = item.map_err(storage)?;
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tracing::info!(
            removed = n,
            "removing the entries of a registration cut short"
        );
        tree.apply_batch(batch).map_err(storage)?;
    }
}

/// Live sync-state subscribers, woken by writes. Each keeps the set of documents whose state
/// may have changed since it last looked (coalesced: a document changed twice is listed
/// once), so none can lag behind and lose one; it reads the current state when polled.
#[derive(Default)]
pub(crate) struct Watchers {
    active: AtomicUsize,
    list: Mutex<Vec<Weak<Watch>>>,
}

struct Watch {
    remote: String,
    queue: Mutex<WatchQueue>,
}

#[derive(Default)]
struct WatchQueue {
    ids: VecDeque<String>,
    queued: HashSet<String>,
    waker: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-done by a panic: a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watchers {
    /// Whether anyone listens (writes collect nothing for subscribers otherwise).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    /// Queues `ids` for every subscriber of `remote` (of every remote when `None`).
    pub(crate) fn publish<'a>(
        &self,
        remote: Option<&str>,
        ids: impl Iterator<Item = &'a str> + Clone,
    ) {
        let mut list = lock(&self.list);
        list.retain(|w| w.strong_count() > 0);
        for w in list.iter().filter_map(Weak::upgrade) {
            if remote.is_some_and(|r| r != w.remote) {
                continue;
            }
            let mut q = lock(&w.queue);
            for id in ids.clone() {
                if q.queued.insert(id.to_owned()) {
                    q.ids.push_back(id.to_owned());
                }
            }
            if !q.ids.is_empty() {
                if let Some(waker) = q.waker.take() {
                    waker.wake();
                }
            }
        }
    }
}

/// The stream [`Database::sync_state_changes`] returns.
struct StateChanges {
    db: Database,
    watch: Arc<Watch>,
}

impl Drop for StateChanges {
    fn drop(&mut self) {
        self.db.inner.watchers.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Stream for StateChanges {
    type Item = Result<(String, Option<SyncState>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let id = {
            let mut q = lock(&self.watch.queue);
            match q.ids.pop_front() {
                Some(id) => {
                    q.queued.remove(&id);
                    id
                }
                None => {
                    q.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        // Read after the id was taken off the queue: a write after this read queues it again.
        let state = self.db.sync_state(&self.watch.remote, &id);
        Poll::Ready(Some(state.map(|s| (id, s))))
    }
}

impl Database {
    /// Registers `name` as a remote this store syncs with, or updates it: the keys of `meta`
    /// replace those the remote's meta had (the replicator records its sync filters there;
    /// the store does not read them). Returns whether the remote is new.
    ///
    /// A new remote is known to hold nothing yet, so every document is unsynced with all its
    /// leaves: one small write says so (a pending interval up to the update seq, see the
    /// module docs); from then on writes and confirmations keep the state. Before
    /// registration a remote's state reads the same way: every document unpushed.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::SyncState;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let rev = db.put(json!({"_id": "a"}))?.rev.unwrap();
    /// assert!(db.register_remote("http://couch/db", Default::default())?);
    /// assert_eq!(db.sync_state("http://couch/db", "a")?, Some(SyncState::Unpushed { revs: vec![rev.clone()] }));
    /// // The remote confirms it holds the revision (a push wrote it).
    /// db.record_remote_revs("http://couch/db", &[("a".to_string(), vec![rev])].into(), &[])?;
    /// assert_eq!(db.sync_state("http://couch/db", "a")?, Some(SyncState::Synced));
    /// assert_eq!(db.sync_counts("http://couch/db")?.unsynced, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; nothing is registered on error.
    pub fn register_remote(&self, name: &str, meta: Map<String, Value>) -> Result<bool> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut reg = inner.registry().clone();
        let mut batch = sled::Batch::default();
        let fresh = match reg.remotes.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                let before = r.meta.clone();
                r.meta.extend(meta);
                if r.meta == before {
                    return Ok(false);
                }
                false
            }
            None => {
                // Every document is unsynced with a new remote: one pending interval up to
                // the update seq says so for all of them, and the counts come from the
                // store's counters (each document has one live by-seq entry).
                clear_unregistered(&inner.tree, &reg, &|e| inner.storage(e))?;
                let counters = *guard;
                let docs = counters.doc_count.saturating_add(counters.doc_del_count);
                let pending = if docs > 0 {
                    Pending(vec![(1, counters.update_seq)])
                } else {
                    Pending::default()
                };
                reg.remotes.push(RemoteReg {
                    num: next_number(&reg)?,
                    name: name.to_owned(),
                    meta,
                    counts: SyncCounts {
                        unsynced: docs,
                        rejected: 0,
                    },
                    pending,
                });
                batch.insert(keys::META_SYNC, reg.encode_counts());
                true
            }
        };
        batch.insert(keys::META_REMOTES, reg.encode_remotes()?);
        let counters = *guard;
        inner.commit_with(&mut guard, batch, counters, Flush::AsConfigured, || {
            *inner.registry_mut() = reg;
        })?;
        if fresh {
            tracing::info!(remote = name, "registered a remote for sync state");
        }
        Ok(fresh)
    }

    /// The remotes this store syncs with, with their counts.
    pub fn remotes(&self) -> Vec<Remote> {
        self.inner
            .registry()
            .remotes
            .iter()
            .map(|r| Remote {
                name: r.name.clone(),
                meta: r.meta.clone(),
                counts: r.counts,
            })
            .collect()
    }

    /// The registered remote `name`, if it is one.
    pub fn remote(&self, name: &str) -> Option<Remote> {
        self.remotes().into_iter().find(|r| r.name == name)
    }

    /// Document `id`'s sync state with remote `name`; `None` when there is no such document.
    /// Two or three reads (the document's entry, its record when the entry does not say,
    /// the entry again). A remote that is not registered holds nothing yet: every document
    /// is unpushed there.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn sync_state(&self, remote: &str, id: &str) -> Result<Option<SyncState>> {
        let inner = &*self.inner;
        let read_record = || self.load_doc(id);
        let reg_of = || {
            inner
                .registry()
                .by_name(remote)
                .map(|r| (r.num, r.pending.clone()))
        };
        let Some((num, mut pending)) = reg_of() else {
            return Ok(read_record()?.map(|rec| SyncState::Unpushed {
                revs: sorted_leaves(&rec.tree),
            }));
        };
        let key = keys::unsynced_key(num, id);
        let read_key =
            || -> Result<Option<sled::IVec>> { inner.tree.get(&key).map_err(|e| inner.storage(e)) };
        loop {
            let raw = read_key()?;
            if let Some(v) = &raw {
                let e = Unsynced::decode(id, v)?;
                if !e.is_marker() {
                    return Ok(Some(SyncState::of_entry(e)));
                }
            }
            let rec = read_record()?;
            // sled reads are not a snapshot: if the entry or the pending intervals changed
            // meanwhile, the record may not match them; read again.
            let now = reg_of().map(|(_, p)| p);
            if read_key()? != raw || now.as_ref().is_some_and(|p| *p != pending) {
                pending = now.unwrap_or(pending);
                continue;
            }
            return Ok(rec.map(|r| {
                if raw.is_none() && pending.contains(r.seq) {
                    SyncState::Unpushed {
                        revs: sorted_leaves(&r.tree),
                    }
                } else {
                    SyncState::of_held_tree(&r.tree)
                }
            }));
        }
    }

    /// The counts of documents not known to be on remote `name` (one read). For a remote
    /// that is not registered, every document.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn sync_counts(&self, remote: &str) -> Result<SyncCounts> {
        let inner = &*self.inner;
        let Some(num) = inner.registry().by_name(remote).map(|r| r.num) else {
            let info = self.info()?;
            return Ok(SyncCounts {
                unsynced: info.doc_count.saturating_add(info.doc_del_count),
                rejected: 0,
            });
        };
        // From the record, not memory: it is in the same batch as the entries it counts.
        let bytes = inner
            .tree
            .get(keys::META_SYNC)
            .map_err(|e| inner.storage(e))?
            .ok_or_else(|| Error::corrupt("the sync counters record is missing"))?;
        decode_counts(&bytes)?
            .into_iter()
            .find(|(n, _)| *n == num)
            .map(|(_, c)| c)
            .ok_or_else(|| Error::corrupt(format!("no sync counters for remote {remote:?}")))
    }

    /// Up to `limit` documents not known to be on remote `name`, in id order after `after`,
    /// each with its state (`Unpushed` or `Rejected`). Reads the entries, and the by-seq
    /// entries of the pending intervals when there are any: the cost is in the number of
    /// unsynced documents, not the store's size. (Past `PENDING_SCAN_LIMIT` pending seqs,
    /// while a first push to a remote has not got far, it walks the records in id order.)
    /// For a remote that is not registered, every document (a walk of the records).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let page = db.unsynced("http://couch/db", None, 100)?;
    /// assert_eq!(page[0].0, "a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn unsynced(
        &self,
        remote: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let Some((num, pending)) = inner
            .registry()
            .by_name(remote)
            .map(|r| (r.num, r.pending.clone()))
        else {
            return self.walk_records(after, limit, |_, rec| {
                Ok(Some(SyncState::Unpushed {
                    revs: sorted_leaves(&rec.tree),
                }))
            });
        };
        if pending.is_empty() {
            return self.explicit_entries(num, after, limit);
        }
        let span: u64 = pending.intervals().iter().map(|&(a, b)| b - a + 1).sum();
        if span > PENDING_SCAN_LIMIT {
            // Many documents may be pending (a first push has not gone far): walk the
            // records in id order, each with its entry.
            return self.walk_records(after, limit, |id, rec| {
                let key = keys::unsynced_key(num, id);
                match inner.tree.get(&key).map_err(|e| inner.storage(e))? {
                    Some(v) => {
                        let e = Unsynced::decode(id, &v)?;
                        Ok((!e.is_marker()).then(|| SyncState::of_entry(e)))
                    }
                    None => Ok(pending.contains(rec.seq).then(|| SyncState::Unpushed {
                        revs: sorted_leaves(&rec.tree),
                    })),
                }
            });
        }
        // Few pending seqs: the pending documents (from the by-seq index) merged with the
        // entries, in id order. A confirmation applied between the two reads can move a
        // document out of the intervals into an entry the first read did not see (issue
        // 19): it changes the stored intervals in the same batch, so the page is read again
        // when they changed meanwhile, and under the writer lock after a few tries.
        for _ in 0..OPTIMISTIC_READS {
            let before = inner
                .tree
                .get(keys::META_REMOTES)
                .map_err(|e| inner.storage(e))?;
            let pending = stored_pending(before.as_deref(), remote)?;
            let rows = self.merged_page(num, &pending, after, limit)?;
            let now = inner
                .tree
                .get(keys::META_REMOTES)
                .map_err(|e| inner.storage(e))?;
            if now == before {
                return Ok(rows);
            }
        }
        let _writer = inner.lock_writer();
        let pending = inner
            .registry()
            .by_name(remote)
            .map(|r| r.pending.clone())
            .unwrap_or_default();
        self.merged_page(num, &pending, after, limit)
    }

    /// The entries of remote number `num` merged with the documents its `pending`
    /// intervals speak for: up to `limit` after `after`, in id order.
    fn merged_page(
        &self,
        num: u32,
        pending: &Pending,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let mut rows = self.explicit_entries(num, after, limit)?;
        for &(a, b) in pending.intervals() {
            for entry in live_entries(inner, a, b) {
                let entry = entry?;
                if after.is_some_and(|x| entry.id.as_str() <= x) {
                    continue;
                }
                let key = keys::unsynced_key(num, &entry.id);
                if inner
                    .tree
                    .contains_key(&key)
                    .map_err(|e| inner.storage(e))?
                {
                    continue;
                }
                let mut revs = entry.leaves;
                revs.sort();
                rows.push((entry.id, SyncState::Unpushed { revs }));
            }
        }
        rows.sort_by(|x, y| x.0.cmp(&y.0));
        rows.truncate(limit);
        Ok(rows)
    }

    /// Up to `limit` non-marker `U` entries of remote number `num` after `after`, in id
    /// order.
    fn explicit_entries(
        &self,
        num: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let prefix = keys::unsynced_prefix(num).to_vec();
        let start = match after {
            Some(a) => successor(keys::unsynced_key(num, a)),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in inner.tree.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let id = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let entry = Unsynced::decode(id, &v)?;
            if !entry.is_marker() {
                out.push((id.to_owned(), SyncState::of_entry(entry)));
            }
        }
        Ok(out)
    }

    /// Up to `limit` documents after `after`, in id order, with the state `state` gives
    /// them (`None`: left out).
    fn walk_records(
        &self,
        after: Option<&str>,
        limit: usize,
        mut state: impl FnMut(&str, &DocRecord) -> Result<Option<SyncState>>,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let start = match after {
            Some(a) => successor(keys::doc_key(a)),
            None => vec![keys::DOC],
        };
        let mut out = Vec::new();
        for item in inner.tree.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            if k.first() != Some(&keys::DOC) {
                break;
            }
            let id = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let rec = DocRecord::decode(id, &v)?;
            if let Some(st) = state(id, &rec)? {
                out.push((id.to_owned(), st));
            }
        }
        Ok(out)
    }

    /// Records what remote `name` is known to hold, after the fact: `held` revisions (a
    /// push's write results, or a `_revs_diff` that found them not missing) leave the
    /// documents' unsynced leaves, and `rejected` revisions (its per-document refusals) are
    /// recorded against their documents until a later revision is accepted. One batch,
    /// which does not wait for the disk even with `Durability::Immediate`: losing it in a
    /// crash only makes documents look unsynced (never synced), and any later write that is
    /// flushed, such as the replication's next checkpoint, takes it to disk first (sled
    /// recovers a prefix of its batches), so a checkpoint never outlives the confirmations
    /// before it. Does nothing for a remote that is not registered.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; nothing is recorded on error.
    pub fn record_remote_revs(
        &self,
        remote: &str,
        held: &BTreeMap<String, Vec<Rev>>,
        rejected: &[Rejection],
    ) -> Result<()> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let Some(mut sync) = SyncBatch::new(inner, None) else {
            return Ok(());
        };
        let Some(i) = sync.index_of(remote) else {
            return Ok(());
        };
        // Where each document stands, needed only while the remote has pending intervals.
        let pending = !sync.remotes[i].pending.is_empty();
        // A refusal needs the document's leaves whatever the intervals (see `reject`).
        let read = |id: &str, always: bool| -> Result<Option<(u64, RevTree)>> {
            if !pending && !always {
                return Ok(None);
            }
            match inner
                .tree
                .get(keys::doc_key(id))
                .map_err(|e| inner.storage(e))?
            {
                Some(v) => Ok(Some(DocRecord::decode_tree(id, &v)?)),
                None => Ok(None),
            }
        };
        let mut settled = Vec::new();
        for (id, revs) in held {
            let rec = read(id, false)?;
            let pos = rec.as_ref().map(|(seq, tree)| Position { seq: *seq, tree });
            // Only a document whose state this changes is settled: one confirmed with a
            // revision that is no longer a leaf (edited while its batch was in flight) keeps
            // its place, and its new seq says nothing about the batch.
            if sync.mark_held(inner, i, id, pos.as_ref(), revs)? {
                settled.extend(pos.map(|p| p.seq));
            }
        }
        for r in rejected {
            let rec = read(&r.id, true)?;
            let pos = rec.as_ref().map(|(seq, tree)| Position { seq: *seq, tree });
            sync.reject(inner, i, pos.as_ref(), r)?;
            settled.extend(pos.map(|p| p.seq));
        }
        settled.retain(|&s| sync.remotes[i].pending.contains(s));
        sync.settle_confirmed(inner, i, &settled)?;
        sync.commit_alone(inner, &mut guard, remote)?;
        Ok(())
    }

    /// A live stream of sync-state changes with remote `name`: each item is a document whose
    /// state may have changed (written here, confirmed or refused by the remote, purged) and
    /// its state when the item is read (`None` once the document is gone). Coalesced: a
    /// document that changed several times before the stream was polled comes once, with its
    /// latest state. Starts with the changes after the call; read
    /// [`Database::unsynced`] for the state before. A change of a sync's filter is not an
    /// item. Dropping the stream unsubscribes.
    ///
    /// ```
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let mut changes = db.sync_state_changes("http://couch/db");
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let (id, state) = futures::executor::block_on(changes.next()).unwrap()?;
    /// assert_eq!((id.as_str(), state.unwrap().name()), ("a", "unpushed"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync_state_changes(
        &self,
        remote: &str,
    ) -> impl Stream<Item = Result<(String, Option<SyncState>)>> + Send + 'static {
        let watch = Arc::new(Watch {
            remote: remote.to_owned(),
            queue: Mutex::new(WatchQueue::default()),
        });
        let watchers = &self.inner.watchers;
        watchers.active.fetch_add(1, Ordering::SeqCst);
        lock(&watchers.list).push(Arc::downgrade(&watch));
        StateChanges {
            db: self.clone(),
            watch,
        }
    }

    /// Checks the sync-state invariants (part of [`Database::verify`], under the writer
    /// lock): the registry and counters decode and agree; every entry names a registered
    /// remote and an existing document, and its leaves are leaves of that document; the
    /// counters equal the entries and the documents the pending intervals speak for; a
    /// marker's document is in a pending interval; the intervals are sorted, disjoint and
    /// end by `update_seq`. Returns the number of unsynced documents over all remotes.
    pub(crate) fn verify_sync(&self, update_seq: u64) -> Result<u64> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let on_disk = Registry::load(&inner.tree, &storage)?;
        let mem = inner.registry();
        let summary = |r: &Registry| -> Vec<(u32, String, SyncCounts, Pending)> {
            r.remotes
                .iter()
                .map(|x| (x.num, x.name.clone(), x.counts, x.pending.clone()))
                .collect()
        };
        if summary(&on_disk) != summary(&mem) {
            return Err(Error::corrupt(
                "the registered remotes on disk differ from the open store's",
            ));
        }
        let mut counted: HashMap<u32, SyncCounts> = HashMap::new();
        let mut total = 0u64;
        for item in inner.tree.scan_prefix([keys::UNSYNCED]) {
            let (k, v) = item.map_err(storage)?;
            let (num, id) = keys::split_unsynced_key(&k)?;
            let Some(remote) = on_disk.remotes.iter().find(|r| r.num == num) else {
                return Err(Error::corrupt(format!(
                    "sync state of {id:?} for remote {num}, which is not registered"
                )));
            };
            let entry = Unsynced::decode(id, &v)?;
            let rec = inner
                .tree
                .get(keys::doc_key(id))
                .map_err(storage)?
                .ok_or_else(|| {
                    Error::corrupt(format!("sync state of {id:?}, which has no record"))
                })?;
            let rec = DocRecord::decode(id, &rec)?;
            if entry.is_marker() {
                if !remote.pending.contains(rec.seq) {
                    return Err(Error::corrupt(format!(
                        "sync state of {id:?} marks it held outside the pending intervals"
                    )));
                }
                continue;
            }
            for rev in &entry.leaves {
                if !rec.tree.is_leaf(rev) {
                    return Err(Error::corrupt(format!(
                        "sync state of {id:?} lists {rev}, which is not a leaf"
                    )));
                }
            }
            let c = counted.entry(num).or_default();
            c.unsynced += 1;
            c.rejected += u64::from(entry.rejection.is_some());
            total += 1;
        }
        // The documents the pending intervals speak for: those without a key.
        for r in &on_disk.remotes {
            if !r.pending.is_valid(update_seq) {
                return Err(Error::corrupt(format!(
                    "the pending intervals of {:?} are not sorted and disjoint up to the update seq",
                    r.name
                )));
            }
            for &(a, b) in r.pending.intervals() {
                for entry in live_entries(inner, a, b) {
                    let key = keys::unsynced_key(r.num, &entry?.id);
                    if !inner.tree.contains_key(&key).map_err(storage)? {
                        counted.entry(r.num).or_default().unsynced += 1;
                        total += 1;
                    }
                }
            }
        }
        for r in &on_disk.remotes {
            let found = counted.get(&r.num).copied().unwrap_or_default();
            if found != r.counts {
                return Err(Error::corrupt(format!(
                    "sync counters of {:?} say {:?}, its entries {found:?}",
                    r.name, r.counts
                )));
            }
        }
        Ok(total)
    }
}

impl SyncBatch {
    /// The ids of the entries this call changed.
    fn changed_ids(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.changed)
            .filter_map(|(k, _)| {
                keys::split_unsynced_key(k)
                    .ok()
                    .map(|(_, id)| id.to_owned())
            })
            .collect()
    }

    /// Commits a batch of sync state alone (what a remote said, with no document written),
    /// without waiting for the disk: losing it in a crash only leaves the state as it was,
    /// and any later flushed write takes it to disk first. Then tells `remote`'s live
    /// subscribers. Returns whether anything changed.
    pub(crate) fn commit_alone(
        self,
        inner: &Inner,
        guard: &mut MutexGuard<'_, crate::database::Counters>,
        remote: &str,
    ) -> Result<bool> {
        if !self.has_changes() {
            return Ok(false);
        }
        // Listed only for subscribers: a push's confirmations change hundreds per batch.
        let changed: Vec<String> = if inner.watchers.active() {
            self.changed_ids()
        } else {
            Vec::new()
        };
        let mut batch = sled::Batch::default();
        let updates = self.finish(inner, &mut batch)?;
        let counters = **guard;
        inner.commit_with(guard, batch, counters, Flush::Deferred, || {
            if let Some(updates) = &updates {
                inner.registry_mut().apply(updates);
            }
        })?;
        inner
            .watchers
            .publish(Some(remote), changed.iter().map(String::as_str));
        Ok(true)
    }

    /// Whether this call changed any entry or pending interval.
    fn has_changes(&self) -> bool {
        self.slots.values().any(|s| s.changed) || self.remotes.iter().any(|r| r.pending_changed)
    }
}

/// The live by-seq entries with seqs `first..=last`, in seq order.
fn live_entries(
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
fn successor(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

fn sorted_leaves(tree: &RevTree) -> Vec<Rev> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20 (found by reading the decoders for the fuzz target): a remotes record read
    /// from a damaged disk with the number u32::MAX made the next number overflow when the
    /// store opened, and one with an interval that ends before it starts made the
    /// interval arithmetic overflow. Both are corrupt records now.
    #[test]
    fn issue_20_damaged_remotes_record_is_corrupt_not_an_overflow() {
        let counts = |n: u32| {
            let mut c = n.to_be_bytes().to_vec();
            c.extend_from_slice(&[0; 16]);
            c
        };
        let decode =
            |remotes: &str, n: u32| Registry::decode(Some(remotes.as_bytes()), Some(&counts(n)));
        let max = format!(r#"[{{"n":{},"name":"r"}}]"#, u32::MAX);
        assert!(matches!(decode(&max, u32::MAX), Err(Error::Corrupt { .. })));
        let backwards = r#"[{"n":1,"name":"r","pending":[[5,3]]}]"#;
        assert!(matches!(decode(backwards, 1), Err(Error::Corrupt { .. })));
        let overlapping = r#"[{"n":1,"name":"r","pending":[[1,4],[3,9]]}]"#;
        assert!(matches!(decode(overlapping, 1), Err(Error::Corrupt { .. })));
        // The largest number that still leaves a next one.
        let last = format!(
            r#"[{{"n":{},"name":"r","pending":[[1,4],[6,9]]}}]"#,
            u32::MAX - 2
        );
        let reg = decode(&last, u32::MAX - 2).unwrap();
        assert_eq!(next_number(&reg).unwrap(), u32::MAX - 1);
        let full = format!(r#"[{{"n":{},"name":"r"}}]"#, u32::MAX - 1);
        let reg = decode(&full, u32::MAX - 1).unwrap();
        assert!(matches!(next_number(&reg), Err(Error::Corrupt { .. })));
    }
}
