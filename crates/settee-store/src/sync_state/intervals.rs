//! How a write call's [`SyncBatch`] changes a remote's pending intervals: a call's own seqs
//! join them ([`SyncBatch::extend_pending`]), and a remote's confirmations take spans out
//! ([`SyncBatch::settle_confirmed`]).

use std::collections::HashSet;

use super::batch::SyncBatch;
use super::live_entries;
use crate::database::Inner;
use crate::Result;

/// At most this many pending intervals per remote: past it, the smallest is written out as
/// entries. Pushes confirmed out of order (several batches in flight) split the intervals
/// for a while; a push by document ids can split them for good.
pub(super) const MAX_PENDING_INTERVALS: usize = 32;

/// How many by-seq entries a confirmation may walk between its documents, per document, to
/// find gaps it can take out of the pending intervals with them (see
/// [`SyncBatch::settle_confirmed`]).
pub(super) const GAP_WALK_PER_SEQ: u64 = 64;

impl SyncBatch {
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

    /// Takes the seqs `first..=last` out of remote `i`'s pending intervals. Each document
    /// there that the intervals spoke for is read first, so that [`SyncBatch::finish`]
    /// writes its state out (an explicit entry, or no key where a marker was).
    pub(super) fn settle(&mut self, inner: &Inner, i: usize, first: u64, last: u64) -> Result<()> {
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
    pub(super) fn settle_confirmed(&mut self, inner: &Inner, i: usize, seqs: &[u64]) -> Result<()> {
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
}
