//! What `compact` removes of the attachments (unreferenced digests, and files and chunks
//! nothing names) and what `verify` checks of them. Which digests the documents refer to is
//! `maintenance.rs`'s to find; this file knows how they are stored.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::chunks::CHUNK_SIZE;
use super::{files, staging};
use crate::database::Inner;
use crate::keys::{self, AttHead, AttStorage};
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
        if self.n >= SWEEP_BATCH {
            self.n = 0;
            self.flush()?;
        }
        Ok(())
    }

    /// Removes a file attachment's head `key` and marks its blob pending, in one batch: the
    /// file then has a marker until it is removed (and a crash before that has the next open
    /// remove it), never neither.
    fn unhead_file(&mut self, key: &[u8], blob: u64) -> Result<()> {
        self.batch.remove(key);
        self.batch.insert(&keys::att_pending_key(blob)[..], &[][..]);
        self.n += 2;
        if self.n >= SWEEP_BATCH {
            self.n = 0;
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        (self.commit)(std::mem::take(&mut self.batch))
    }
}

/// Removes, in batches passed to `commit`: the format-6 `A` values and the `H` heads (with
/// their chunks or files) of digests not in `live`, then the chunks and files of every blob
/// that has neither a head nor a pending marker (none should: this reclaims what an older
/// build or a damaged store left). Run under the writer lock, so no head comes or goes
/// meanwhile; a staging may run, but it writes (and, for a file, flushes) its pending
/// marker before its first chunk or its file, and the markers are read after the chunks
/// and files, so a blob being staged is never taken for an orphan.
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
    let mut unheaded = Vec::new();
    for item in inner.tree.scan_prefix([keys::ATT_HEAD]) {
        let (k, v) = item.map_err(storage)?;
        let digest = String::from_utf8_lossy(&k[1..]).into_owned();
        let head = AttHead::decode(&digest, &v)?;
        if live.contains(&digest) {
            kept.insert(head.blob);
            continue;
        }
        match head.storage {
            AttStorage::Chunks(n) => {
                for i in 0..n {
                    batch.remove(&keys::att_chunk_key(head.blob, i))?;
                }
                batch.remove(&k)?;
            }
            AttStorage::File => {
                batch.unhead_file(&k, head.blob)?;
                unheaded.push(head.blob);
            }
        }
    }
    batch.flush()?;
    if !unheaded.is_empty() {
        // The markers are durable before any file goes: a crash then leaves marked files
        // (removed at the next open), never a head without its file.
        inner.tree.flush().map_err(storage)?;
        for blob in unheaded {
            staging::remove_blob(inner, blob)?;
        }
    }
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
    let with_files = files::list(&inner.path)?;
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
    batch.flush()?;
    for blob in with_files {
        if !kept.contains(&blob) && !pending.contains(&blob) {
            tracing::warn!(
                blob,
                "removing an attachment file that no head or marker names"
            );
            files::remove(&inner.path, blob)?;
        }
    }
    Ok(())
}

/// `verify`'s part: every digest in `needed` is stored (a head or a format-6 value); every
/// head decodes and its blob is named by no other head; a file head's file exists with the
/// head's length; a chunked head's blob has exactly chunks `0..chunks`, each at most
/// [`CHUNK_SIZE`], adding up to its length; every chunk and every file belongs to a head's
/// blob or to a blob being staged (a pending marker). Returns the number of stored
/// attachments and of blobs being staged.
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
    // Files before markers: a staging marks its blob before it creates the file.
    let with_files = files::list(&inner.path)?;
    let mut pending = HashSet::new();
    for k in inner.tree.scan_prefix([keys::ATT_PENDING]).keys() {
        pending.insert(keys::blob_of_key(&k.map_err(storage)?)?);
    }
    for blob in with_files {
        let headed = heads
            .get(&blob)
            .is_some_and(|(_, h)| h.storage == AttStorage::File);
        if !headed && !pending.contains(&blob) {
            return Err(Error::corrupt(format!(
                "attachment file attachments/{blob:016x} belongs to no attachment"
            )));
        }
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
        let headed = heads
            .get(&blob)
            .is_some_and(|(_, h)| matches!(h.storage, AttStorage::Chunks(_)));
        if !headed && !pending.contains(&blob) {
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
        match head.storage {
            AttStorage::File => {
                let found = files::length(&inner.path, *blob)?
                    .ok_or_else(|| files::missing(digest, *blob))?;
                files::check_length(digest, *blob, head.length, found)?;
            }
            AttStorage::Chunks(n) => {
                let (chunks, bytes) = seen.get(blob).copied().unwrap_or_default();
                if (chunks, bytes) != (n, head.length) {
                    return Err(Error::corrupt(format!(
                        "attachment {digest}: its head says {n} chunks, {} bytes; blob {blob} holds {chunks}, {bytes}",
                        head.length
                    )));
                }
            }
        }
    }
    Ok((count, pending.len() as u64))
}
