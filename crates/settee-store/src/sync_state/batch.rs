//! [`SyncBatch`]: the sync part of one write call's batch. It reads the documents' entries
//! it needs, tracks what the call does to each (an edit, a replicated revision, a purge, a
//! remote's confirmation or refusal), and writes the changed entries and counts into the
//! call's `sled::Batch`. How it changes the pending intervals is `intervals.rs`'s.

use std::collections::HashMap;
use std::sync::MutexGuard;

use settee_revtree::{Leaf, Rev, RevTree};

use super::registry::{Pending, RemoteUpdate, SyncCounts};
use super::{sorted_leaves, Rejection};
use crate::database::{Counters, Flush, Inner};
use crate::keys::{self, StoredRejection, Unsynced};
use crate::Result;

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
    pub(super) remotes: Vec<BatchRemote>,
    /// Index into `remotes` of the remote the call's replicated revisions come from.
    pub(super) origin: Option<usize>,
    /// Document states as this call has left them, by `U` key.
    pub(super) slots: HashMap<Vec<u8>, Slot>,
}

pub(super) struct BatchRemote {
    pub(super) num: u32,
    pub(super) name: String,
    /// The counts when the call began, and as it has left them.
    pub(super) before: SyncCounts,
    pub(super) after: SyncCounts,
    /// The pending intervals as this call has left them, and whether it changed them.
    pub(super) pending: Pending,
    pub(super) pending_changed: bool,
}

/// One document's state with one remote during a call.
pub(super) struct Slot {
    pub(super) remote: usize,
    /// The state as this call leaves it (`None`: the remote holds every leaf).
    pub(super) entry: Option<Unsynced>,
    /// What the `U` key holds on disk (`None`: no key; a marker has no leaves).
    pub(super) disk: Option<Unsynced>,
    /// The document's seq while this call has not moved it (`None` once written here or
    /// removed), and its leaves, sorted, when that seq was pending.
    pub(super) seq: Option<u64>,
    pub(super) implicit: Option<Vec<Rev>>,
    /// Whether this call changed `entry`.
    pub(super) changed: bool,
}

impl Slot {
    /// What the key should hold, given the remote's pending intervals after the call.
    pub(super) fn desired(&self, pending: &Pending) -> Option<Unsynced> {
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

    /// The sync part of a batch that records what remote `name` said, and the remote's
    /// index in it; `None` when `name` is not registered.
    pub(super) fn for_remote(inner: &Inner, name: &str) -> Option<(SyncBatch, usize)> {
        let sync = SyncBatch::new(inner, None)?;
        let i = sync.index_of(name)?;
        Some((sync, i))
    }

    pub(super) fn index_of(&self, name: &str) -> Option<usize> {
        self.remotes.iter().position(|r| r.name == name)
    }

    /// Document `id`'s state with remote `i`, as this call has left it. `pos` is where the
    /// document stands if this call has not written it yet (`None` for a new document).
    pub(super) fn get(
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
    pub(super) fn load(
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
    pub(super) fn set(&mut self, i: usize, id: &str, new: Option<Unsynced>) {
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
    pub(super) fn moved(&mut self, id: &str) {
        for r in &self.remotes {
            if let Some(slot) = self.slots.get_mut(&keys::unsynced_key(r.num, id)) {
                slot.seq = None;
                slot.implicit = None;
            }
        }
    }

    /// Document `id` was written again at `seq` with `leaves`: if this call's seqs become
    /// pending ([`SyncBatch::extend_pending`]), its entry may be implicit there.
    pub(super) fn placed(&mut self, id: &str, seq: u64, leaves: &[Leaf]) {
        let mut sorted: Vec<Rev> = leaves.iter().map(|l| l.rev.clone()).collect();
        sorted.sort();
        for r in &self.remotes {
            if let Some(slot) = self.slots.get_mut(&keys::unsynced_key(r.num, id)) {
                slot.seq = Some(seq);
                slot.implicit = Some(sorted.clone());
            }
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
    pub(super) fn mark_held(
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
    pub(super) fn reject(
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

impl SyncBatch {
    /// The ids of the entries this call changed.
    pub(super) fn changed_ids(&self) -> Vec<String> {
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
        guard: &mut MutexGuard<'_, Counters>,
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
        let aliases = inner.registry().aliases.clone();
        inner
            .watchers
            .publish_to(Some(remote), &aliases, changed.iter().map(String::as_str));
        Ok(true)
    }

    /// Whether this call changed any entry or pending interval.
    pub(super) fn has_changes(&self) -> bool {
        self.slots.values().any(|s| s.changed) || self.remotes.iter().any(|r| r.pending_changed)
    }
}
