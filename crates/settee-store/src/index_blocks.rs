//! How one Mango index's entries are stored: sorted runs ("blocks") of entries, each block one
//! sled key. sled's cost is per key (every insert walks the tree, copies a node and logs a
//! record), and a bulk write would otherwise add one key per document per index; with
//! blocks, a write call rewrites the few blocks its entries fall in, and a build writes a
//! block per run of entries.
//!
//! An entry is the bytes after the index prefix: the collation-encoded key, then the
//! document id (see `keys/`). Block `I<number><lower>` holds entries `e` with
//! `lower <= e < next block's lower`, ascending, none twice; no block is empty. The first
//! block's `lower` may be empty (below every entry).

use std::ops::Bound;

use crate::keys;
use crate::{Error, Result};

/// A block is split in halves when it holds more than this many entries...
const MAX_ENTRIES: usize = 128;
/// ...or more than this many bytes.
const MAX_BYTES: usize = 8 * 1024;

/// The sled key of index `number`'s block whose lower bound is `lower`.
fn block_key(number: u32, lower: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + lower.len());
    k.extend_from_slice(&keys::index_prefix(number));
    k.extend_from_slice(lower);
    k
}

/// The smallest key above every key of index `number`.
fn index_end(number: u32) -> Vec<u8> {
    match number.checked_add(1) {
        Some(n) => keys::index_prefix(n).to_vec(),
        None => vec![keys::INDEX_ENTRY + 1],
    }
}

pub(crate) fn encode(entries: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 4).sum());
    for e in entries {
        // A u32: an indexed value or a document id can be longer than 64 KiB, and CouchDB
        // indexes them; nothing reaching a store is 4 GiB.
        let len = u32::try_from(e.len())
            .map_err(|_| Error::bad_request("an index key is longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || Error::corrupt(format!("index block {key:?} does not decode"));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = bytes.get(at..at + 4).ok_or_else(bad)?;
        let len = usize::try_from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| bad())?;
        let end = at.checked_add(4 + len).ok_or_else(bad)?;
        out.push(bytes.get(at + 4..end).ok_or_else(bad)?.to_vec());
        at = end;
    }
    Ok(out)
}

/// A block as read: its lower bound and its entries.
type Block = (Vec<u8>, Vec<Vec<u8>>);

/// The block of index `number` that holds (or would hold) `entry`; `None` when no block's
/// lower bound is at or below `entry`.
fn block_for(tree: &sled::Tree, number: u32, entry: &[u8]) -> Result<Option<Block>> {
    let prefix = keys::index_prefix(number);
    let at = block_key(number, entry);
    match tree.range(prefix.to_vec()..=at).next_back() {
        Some(item) => {
            let (k, v) =
                item.map_err(|e| Error::corrupt(format!("reading an index block: {e}")))?;
            Ok(Some((k[prefix.len()..].to_vec(), decode(&k, &v)?)))
        }
        None => Ok(None),
    }
}

/// The lower bound of the block after the one at `lower`, if any.
fn next_lower(tree: &sled::Tree, number: u32, lower: &[u8]) -> Result<Option<Vec<u8>>> {
    let prefix = keys::index_prefix(number);
    let from = Bound::Excluded(block_key(number, lower));
    match tree
        .range((from, Bound::Excluded(index_end(number))))
        .next()
    {
        Some(item) => {
            let (k, _) =
                item.map_err(|e| Error::corrupt(format!("reading an index block: {e}")))?;
            Ok(Some(k[prefix.len()..].to_vec()))
        }
        None => Ok(None),
    }
}

/// Adds `changes` (entry, true to insert / false to remove) to index `number` in `batch`,
/// rewriting each block they fall in once. `tree` is the state before the batch; the
/// changes may come in any order.
pub(crate) fn apply(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    number: u32,
    mut changes: Vec<(Vec<u8>, bool)>,
) -> Result<()> {
    changes.sort();
    let mut i = 0;
    while i < changes.len() {
        let (lower, mut entries, existed) = match block_for(tree, number, &changes[i].0)? {
            Some((lower, entries)) => (lower, entries, true),
            // Below every block (or no block yet): a new first block, below everything.
            None => (Vec::new(), Vec::new(), false),
        };
        let next = if existed {
            next_lower(tree, number, &lower)?
        } else {
            // The first existing block, if any, bounds the new one.
            tree.range(block_key(number, &[])..index_end(number))
                .next()
                .transpose()
                .map_err(|e| Error::corrupt(format!("reading an index block: {e}")))?
                .map(|(k, _)| k[5..].to_vec())
        };
        let start = i;
        while i < changes.len() && next.as_ref().is_none_or(|n| changes[i].0 < *n) {
            i += 1;
        }
        for (entry, insert) in &changes[start..i] {
            match (entries.binary_search(entry), insert) {
                (Err(at), true) => entries.insert(at, entry.clone()),
                (Ok(at), false) => {
                    entries.remove(at);
                }
                // Already there, or already gone: the batch's other writes decide.
                _ => {}
            }
        }
        write_block(batch, number, &lower, existed, entries)?;
    }
    Ok(())
}

/// Writes block `lower` with `entries`, split into several when too large (each further
/// part keyed by its first entry), or removes it when empty.
fn write_block(
    batch: &mut sled::Batch,
    number: u32,
    lower: &[u8],
    existed: bool,
    entries: Vec<Vec<u8>>,
) -> Result<()> {
    if entries.is_empty() {
        if existed {
            batch.remove(block_key(number, lower));
        }
        return Ok(());
    }
    let bytes: usize = entries.iter().map(|e| e.len() + 2).sum();
    if entries.len() <= MAX_ENTRIES && bytes <= MAX_BYTES {
        batch.insert(block_key(number, lower), encode(&entries)?);
        return Ok(());
    }
    // Parts half full, so that the blocks a split makes take inserts again before splitting.
    let parts = entries
        .len()
        .div_ceil(MAX_ENTRIES / 2)
        .max(bytes.div_ceil(MAX_BYTES / 2))
        .max(2);
    let per = entries.len().div_ceil(parts).max(1);
    for (n, part) in entries.chunks(per).enumerate() {
        let key = if n == 0 {
            block_key(number, lower)
        } else {
            block_key(number, &part[0])
        };
        batch.insert(key, encode(part)?);
    }
    Ok(())
}

/// Removes every block of index `number`.
pub(crate) fn drop_all(tree: &sled::Tree, batch: &mut sled::Batch, number: u32) -> Result<()> {
    for item in tree.range(block_key(number, &[])..index_end(number)) {
        let (k, _) = item.map_err(|e| Error::corrupt(format!("reading an index block: {e}")))?;
        batch.remove(k);
    }
    Ok(())
}

/// Every entry of index `number` in order, checking the blocks' invariants.
pub(crate) fn all_entries(tree: &sled::Tree, number: u32) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut previous_lower: Option<Vec<u8>> = None;
    for item in tree.range(block_key(number, &[])..index_end(number)) {
        let (k, v) = item.map_err(|e| Error::corrupt(format!("reading an index block: {e}")))?;
        let lower = &k[5..];
        let entries = decode(&k, &v)?;
        let bad = |what: &str| Error::corrupt(format!("index block {k:?}: {what}"));
        if entries.is_empty() {
            return Err(bad("empty"));
        }
        if entries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("entries out of order"));
        }
        if entries[0].as_slice() < lower {
            return Err(bad("an entry below the block's lower bound"));
        }
        if out.last().is_some_and(|last| last.as_slice() >= lower) {
            return Err(bad(
                "the previous block has entries at or above this block's bound",
            ));
        }
        if previous_lower.as_deref().is_some_and(|p| p >= lower) {
            return Err(bad("blocks out of order"));
        }
        previous_lower = Some(lower.to_vec());
        out.extend(entries);
    }
    Ok(out)
}

/// The entries of index `number` from `lo` (inclusive) to `hi` (exclusive; `None`: to the
/// end), ascending or descending, read block by block as the iteration goes.
pub(crate) struct Scan<'t> {
    tree: &'t sled::Tree,
    number: u32,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    descending: bool,
    /// The entries of the current block still to yield (reversed for ascending scans, so
    /// that `pop` gives the next one).
    pending: Vec<Vec<u8>>,
    /// The lower bound of the block read last (the next block to read is after or before it).
    cursor: Option<Vec<u8>>,
    started: bool,
    done: bool,
}

impl<'t> Scan<'t> {
    pub(crate) fn new(
        tree: &'t sled::Tree,
        number: u32,
        lo: Vec<u8>,
        hi: Option<Vec<u8>>,
        descending: bool,
    ) -> Scan<'t> {
        Scan {
            tree,
            number,
            lo,
            hi,
            descending,
            pending: Vec::new(),
            cursor: None,
            started: false,
            done: false,
        }
    }

    /// Loads the next block in the scan's direction into `pending`; false at the end.
    fn load(&mut self) -> Result<bool> {
        let storage = |e: sled::Error| Error::corrupt(format!("reading an index block: {e}"));
        let prefix_len = 5;
        let item = if !self.started {
            self.started = true;
            if self.descending {
                // The block holding the last entry below `hi`.
                let upper = match &self.hi {
                    Some(h) => Bound::Excluded(block_key(self.number, h)),
                    None => Bound::Excluded(index_end(self.number)),
                };
                self.tree
                    .range((Bound::Included(block_key(self.number, &[])), upper))
                    .next_back()
            } else {
                // The block holding `lo`, or the first one.
                let at = block_key(self.number, &self.lo);
                match self
                    .tree
                    .range(block_key(self.number, &[])..=at)
                    .next_back()
                {
                    Some(found) => Some(found),
                    None => self
                        .tree
                        .range(block_key(self.number, &[])..index_end(self.number))
                        .next(),
                }
            }
        } else {
            let Some(cursor) = &self.cursor else {
                return Ok(false);
            };
            let here = block_key(self.number, cursor);
            if self.descending {
                self.tree
                    .range((
                        Bound::Included(block_key(self.number, &[])),
                        Bound::Excluded(here),
                    ))
                    .next_back()
            } else {
                self.tree
                    .range((
                        Bound::Excluded(here),
                        Bound::Excluded(index_end(self.number)),
                    ))
                    .next()
            }
        };
        let Some(item) = item else {
            return Ok(false);
        };
        let (k, v) = item.map_err(storage)?;
        let lower = k[prefix_len..].to_vec();
        if !self.descending && self.hi.as_ref().is_some_and(|h| lower >= *h) {
            return Ok(false);
        }
        let mut entries = decode(&k, &v)?;
        entries.retain(|e| *e >= self.lo && self.hi.as_ref().is_none_or(|h| e < h));
        if !self.descending {
            entries.reverse();
        }
        let below_lo = lower <= self.lo;
        self.cursor = Some(lower);
        self.pending = entries;
        if self.descending && below_lo && self.pending.is_empty() {
            return Ok(false);
        }
        Ok(true)
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.pending.pop() {
                return Some(Ok(e));
            }
            // A descending scan past a block whose bound is at or below `lo` is finished.
            if self.descending
                && self.started
                && self.cursor.as_ref().is_some_and(|c| *c <= self.lo)
            {
                self.done = true;
                return None;
            }
            match self.load() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn entry(rng: &mut StdRng) -> Vec<u8> {
        let len = rng.gen_range(1..7);
        (0..len).map(|_| rng.gen_range(b'a'..b'h')).collect()
    }

    /// Blocks against a `BTreeSet` model: random batches of inserts and removals (bulk
    /// loads that split blocks many times, and deletions that empty them), then every entry
    /// and random scans both ways must agree with the model.
    #[test]
    fn blocks_agree_with_a_sorted_set() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut rng = StdRng::seed_from_u64(12);
        let mut model: BTreeSet<Vec<u8>> = BTreeSet::new();
        // Another index's blocks beside ours must not be read.
        let mut other = sled::Batch::default();
        apply(
            &tree,
            &mut other,
            8,
            vec![(b"zz".to_vec(), true), (Vec::new(), true)],
        )
        .unwrap();
        tree.apply_batch(other).unwrap();
        for round in 0..60 {
            let mut changes = Vec::new();
            let n = if round % 10 == 0 {
                1500
            } else {
                rng.gen_range(0..200)
            };
            for _ in 0..n {
                let e = entry(&mut rng);
                let insert = rng.gen_bool(if round < 30 { 0.8 } else { 0.3 });
                // One change per entry per batch, as a write call makes them.
                if changes.iter().any(|(x, _): &(Vec<u8>, bool)| *x == e) {
                    continue;
                }
                if insert {
                    model.insert(e.clone());
                } else {
                    model.remove(&e);
                }
                changes.push((e, insert));
            }
            let mut batch = sled::Batch::default();
            apply(&tree, &mut batch, 7, changes).unwrap();
            tree.apply_batch(batch).unwrap();
            let all = all_entries(&tree, 7).unwrap();
            assert_eq!(
                all,
                model.iter().cloned().collect::<Vec<_>>(),
                "round {round}"
            );
            for _ in 0..10 {
                let (a, b) = (entry(&mut rng), entry(&mut rng));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let hi = rng.gen_bool(0.8).then_some(hi);
                let want: Vec<Vec<u8>> = model
                    .iter()
                    .filter(|e| **e >= lo && hi.as_ref().is_none_or(|h| *e < h))
                    .cloned()
                    .collect();
                let asc: Vec<Vec<u8>> = Scan::new(&tree, 7, lo.clone(), hi.clone(), false)
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(asc, want, "round {round} asc {lo:?}..{hi:?}");
                let mut desc: Vec<Vec<u8>> = Scan::new(&tree, 7, lo.clone(), hi.clone(), true)
                    .map(Result::unwrap)
                    .collect();
                desc.reverse();
                assert_eq!(desc, want, "round {round} desc {lo:?}..{hi:?}");
            }
        }
        assert!(
            tree.scan_prefix(keys::index_prefix(7)).count() > 5,
            "no split happened"
        );
        let mut batch = sled::Batch::default();
        drop_all(&tree, &mut batch, 7).unwrap();
        tree.apply_batch(batch).unwrap();
        assert!(all_entries(&tree, 7).unwrap().is_empty());
        assert_eq!(
            all_entries(&tree, 8).unwrap(),
            vec![Vec::new(), b"zz".to_vec()]
        );
    }
}
