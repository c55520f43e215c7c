//! What `compact` removes of the attachments (unreferenced digests, and chunks nothing
//! names) and what `verify` checks of them. Which digests the documents refer to is
//! `maintenance.rs`'s to find; this file knows how they are stored.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::chunks::CHUNK_SIZE;
use crate::database::Inner;
use crate::keys::{self, AttHead};
use crate::{Error, Result};

/// Removals per batch: bounds the memory a sweep holds.
const SWEEP_BATCH: usize = 1000;

/// Removals committed [`SWEEP_BATCH`] at a time.
struct Removals<'a> {
    batch: sled::Batch,
    n: usize,
    commit: &'a mut dyn FnMut(sled::Batch) -> Result<()>,
}

impl Removals<'_> {
    fn remove(&mut self, key: &[u8]) -> Result<()> {
        self.batch.remove(key);
        self.n += 1;
        if self.n % SWEEP_BATCH == 0 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        (self.commit)(std::mem::take(&mut self.batch))
    }
}

/// Removes, in batches passed to `commit`: the format-6 `A` values and the `H` heads (with
/// their chunks) of digests not in `live`, then the chunks of every blob that has neither a
/// head nor a pending marker (a staged write that ended without removing them). Run under
/// the writer lock, so no head comes or goes meanwhile; a staging may run, but it writes its
/// pending marker before its first chunk and the markers are read after the chunks, so a
/// blob being staged is never taken for an orphan.
pub(crate) fn sweep(
    inner: &Inner,
    live: &HashSet<String>,
    commit: &mut dyn FnMut(sled::Batch) -> Result<()>,
) -> Result<()> {
    let storage = |e| inner.storage(e);
    let mut batch = Removals {
        batch: sled::Batch::default(),
        n: 0,
        commit,
    };
    for item in inner.tree.scan_prefix([keys::ATT]) {
        let (k, _) = item.map_err(storage)?;
        if !live.contains(String::from_utf8_lossy(&k[1..]).as_ref()) {
            batch.remove(&k)?;
        }
    }
    let mut kept: HashSet<u64> = HashSet::new();
    for item in inner.tree.scan_prefix([keys::ATT_HEAD]) {
        let (k, v) = item.map_err(storage)?;
        let digest = String::from_utf8_lossy(&k[1..]).into_owned();
        let head = AttHead::decode(&digest, &v)?;
        if live.contains(&digest) {
            kept.insert(head.blob);
            continue;
        }
        for i in 0..head.chunks {
            batch.remove(&keys::att_chunk_key(head.blob, i))?;
        }
        batch.remove(&k)?;
    }
    batch.flush()?;
    // Orphan blobs: one read per blob (skipping to the next blob's first key), then the
    // pending markers, read after the chunks (see above).
    let mut orphans = Vec::new();
    let mut from = keys::att_chunk_prefix(0).to_vec();
    while let Some(item) = inner.tree.range(from.as_slice()..).next() {
        let (k, _) = item.map_err(storage)?;
        if k.first() != Some(&keys::ATT_CHUNK) {
            break;
        }
        let blob = keys::blob_of_key(&k)?;
        if !kept.contains(&blob) {
            orphans.push(blob);
        }
        match blob.checked_add(1) {
            Some(next) => from = keys::att_chunk_prefix(next).to_vec(),
            None => break,
        }
    }
    let mut pending = HashSet::new();
    for k in inner.tree.scan_prefix([keys::ATT_PENDING]).keys() {
        pending.insert(keys::blob_of_key(&k.map_err(storage)?)?);
    }
    for blob in orphans.into_iter().filter(|b| !pending.contains(b)) {
        tracing::debug!(blob, "removing the chunks of an unreferenced blob");
        for k in inner.tree.scan_prefix(keys::att_chunk_prefix(blob)).keys() {
            batch.remove(&k.map_err(storage)?)?;
        }
    }
    batch.flush()
}

/// `verify`'s part: every digest in `needed` is stored (a head or a format-6 value); every
/// head decodes and its blob (named by no other head) has exactly chunks `0..chunks`, each
/// at most [`CHUNK_SIZE`], adding up to its length; every chunk belongs to a head's blob or
/// to a blob being staged (a pending marker). Returns the number of stored attachments and
/// of blobs being staged.
///
/// # Errors
/// [`Error::Corrupt`] naming the first violation.
pub(crate) fn verify(inner: &Inner, needed: &HashSet<String>) -> Result<(u64, u64)> {
    let storage = |e| inner.storage(e);
    for digest in needed {
        if !super::chunks::is_stored(inner, digest)? {
            return Err(Error::corrupt(format!(
                "attachment {digest} is referenced but not stored"
            )));
        }
    }
    let mut count = inner.tree.scan_prefix([keys::ATT]).count() as u64;
    let mut heads: HashMap<u64, (String, AttHead)> = HashMap::new();
    for item in inner.tree.scan_prefix([keys::ATT_HEAD]) {
        let (k, v) = item.map_err(storage)?;
        let digest = String::from_utf8_lossy(&k[1..]).into_owned();
        let head = AttHead::decode(&digest, &v)?;
        if let Some((other, _)) = heads.insert(head.blob, (digest.clone(), head)) {
            return Err(Error::corrupt(format!(
                "attachments {digest} and {other} name one blob {}",
                head.blob
            )));
        }
        count += 1;
    }
    let mut pending = HashSet::new();
    for k in inner.tree.scan_prefix([keys::ATT_PENDING]).keys() {
        pending.insert(keys::blob_of_key(&k.map_err(storage)?)?);
    }
    // Per blob: the chunks seen (in index order) and their bytes.
    let mut seen: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    for item in inner.tree.scan_prefix([keys::ATT_CHUNK]) {
        let (k, v) = item.map_err(storage)?;
        let blob = keys::blob_of_key(&k)?;
        let index = k
            .get(9..13)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .filter(|_| k.len() == 13)
            .ok_or_else(|| Error::corrupt(format!("bad attachment chunk key {k:?}")))?;
        if !heads.contains_key(&blob) && !pending.contains(&blob) {
            return Err(Error::corrupt(format!(
                "chunk {index} of blob {blob} belongs to no attachment"
            )));
        }
        if v.len() > CHUNK_SIZE {
            return Err(Error::corrupt(format!(
                "chunk {index} of blob {blob} is over the chunk size"
            )));
        }
        let (chunks, bytes) = seen.entry(blob).or_default();
        if index != *chunks {
            return Err(Error::corrupt(format!(
                "blob {blob} has chunk {index} where chunk {chunks} should be"
            )));
        }
        *chunks += 1;
        *bytes += v.len() as u64;
    }
    for (blob, (digest, head)) in &heads {
        let (chunks, bytes) = seen.get(blob).copied().unwrap_or_default();
        if (chunks, bytes) != (head.chunks, head.length) {
            return Err(Error::corrupt(format!(
                "attachment {digest}: its head says {} chunks, {} bytes; blob {blob} holds {chunks}, {bytes}",
                head.chunks, head.length
            )));
        }
    }
    Ok((count, pending.len() as u64))
}
