//! Training a store's body dictionary and re-encoding its records at `compact`: the part of
//! compressed bodies that works on an open store (`Inner`). The frames, the dictionaries and
//! their registry are the parent module's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{register, Dict, DICT_SIZE, MIN_PACKED, MIN_SAMPLE_BYTES, SAMPLE_BYTES, SAMPLE_DOCS};
use crate::database::Inner;
use crate::keys::{self, DocHeader, DocRecord};
use crate::{Error, Result};

/// Trains the store's first dictionary if it has none yet and holds [`TRAIN_AT`]
/// documents (`docs`, live and deleted); called after a write call, without the writer
/// lock. A training that finds too little to learn from tries again at twice as many
/// documents. Writes made meanwhile are compressed without a dictionary; `compact`
/// re-encodes them.
///
/// # Errors
/// [`Error::Storage`] writing the dictionary; [`Error::Corrupt`] for a damaged record read
/// as a sample.
pub(crate) fn train_if_due(inner: &Inner, docs: u64) -> Result<()> {
    let bodies = &inner.bodies;
    if docs < bodies.train_at.load(Ordering::Relaxed)
        || bodies.training.swap(true, Ordering::Acquire)
    {
        return Ok(());
    }
    let result = (|| {
        let trained = train(inner, docs)?;
        let _guard = inner.lock_writer();
        if bodies.current().is_some() {
            return Ok(());
        }
        match trained {
            Some(bytes) => install(inner, &bytes).map(drop),
            None => {
                let again = docs.saturating_mul(2);
                bodies.train_at.store(again, Ordering::Relaxed);
                Ok(())
            }
        }
    })();
    bodies.training.store(false, Ordering::Release);
    result
}

/// A dictionary trained from a sample of the store's live bodies, or `None` when they are
/// too few or zstd could not train one. `docs` (the store's document count) spreads the
/// sample over the whole store.
fn train(inner: &Inner, docs: u64) -> Result<Option<Vec<u8>>> {
    let step = (docs / SAMPLE_DOCS).max(1);
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    for (n, item) in inner.tree.scan_prefix([keys::DOC]).enumerate() {
        if n as u64 % step != 0 {
            continue;
        }
        let (k, v) = item.map_err(|e| inner.storage(e))?;
        let id = std::str::from_utf8(&k[1..])
            .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
        let (header, body) = DocHeader::decode_with_body(id, &v)?;
        if header.deleted || body.len() < MIN_PACKED {
            continue;
        }
        data.extend_from_slice(&body);
        sizes.push(body.len());
        if data.len() >= SAMPLE_BYTES {
            break;
        }
    }
    if data.len() < MIN_SAMPLE_BYTES {
        return Ok(None);
    }
    match zstd::dict::from_continuous(&data, &sizes, DICT_SIZE) {
        Ok(dict) => Ok(Some(dict)),
        Err(e) => {
            tracing::debug!(path = %inner.path.display(), error = %e, "no body dictionary trained");
            Ok(None)
        }
    }
}

/// Stores `bytes` as a dictionary and makes it current; the caller holds the writer lock.
/// The `Z` record goes in before any record compressed with it (sled keeps a prefix of the
/// batches applied), so a crash never leaves a record naming a dictionary the store lacks.
fn install(inner: &Inner, bytes: &[u8]) -> Result<Arc<Dict>> {
    let dict = register(bytes)?;
    let mut batch = sled::Batch::default();
    batch.insert(&keys::body_dict_key(dict.id)[..], bytes);
    batch.insert(keys::META_BODY_DICT, &dict.id.to_be_bytes()[..]);
    inner
        .tree
        .apply_batch(batch)
        .map_err(|e| inner.storage(e))?;
    tracing::info!(path = %inner.path.display(), dict = %format!("{:x}", dict.id), size = bytes.len(), "trained a body dictionary");
    inner.bodies.set_current(dict.clone());
    Ok(dict)
}

/// Records re-encoded per applied batch during [`compact`].
const COMPACT_BATCH: usize = 1000;

/// `compact`'s part for bodies: trains a dictionary from the store as it is now, re-encodes
/// every record not packed with it (format-8 records, bodies written before the store had a
/// dictionary, bodies of an older dictionary), then removes the dictionaries no record
/// names any more. Holds the writer lock throughout, so that no write interleaves with the
/// rewrite of its record. Returns how many records it rewrote.
///
/// # Errors
/// [`Error::Storage`]; [`Error::Corrupt`] for a damaged record. A compaction stopped by an
/// error leaves every record readable (each batch is whole) and can be run again.
pub(crate) fn compact(inner: &Inner) -> Result<u64> {
    let counters = *inner.lock_writer();
    let docs = counters.doc_count.saturating_add(counters.doc_del_count);
    let trained = train(inner, docs)?;
    let guard = inner.lock_writer();
    let current = match trained {
        Some(bytes) => Some(install(inner, &bytes)?),
        None => inner.bodies.current(),
    };
    let current_id = current.as_ref().map_or(0, |d| d.id);
    let mut batch = sled::Batch::default();
    let (mut in_batch, mut rewritten) = (0, 0u64);
    for item in inner.tree.scan_prefix([keys::DOC]) {
        let (k, v) = item.map_err(|e| inner.storage(e))?;
        let id = std::str::from_utf8(&k[1..])
            .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
        let mut rec = DocRecord::decode(id, &v)?;
        let fresh = DocRecord::version(&v) == Some(DocRecord::VERSION)
            && match &rec.packed {
                Some(p) => p.dict == current_id,
                None => rec.body.len() < MIN_PACKED || current.is_none(),
            };
        if fresh {
            continue;
        }
        rec.packed = None;
        rec.pack(current.as_deref());
        batch.insert(k, rec.encode()?);
        in_batch += 1;
        rewritten += 1;
        if in_batch >= COMPACT_BATCH {
            inner
                .tree
                .apply_batch(std::mem::take(&mut batch))
                .map_err(|e| inner.storage(e))?;
            in_batch = 0;
        }
    }
    for item in inner.tree.scan_prefix([keys::BODY_DICT]) {
        let (k, _) = item.map_err(|e| inner.storage(e))?;
        if k[..] != keys::body_dict_key(current_id)[..] {
            batch.remove(k);
        }
    }
    inner
        .tree
        .apply_batch(batch)
        .map_err(|e| inner.storage(e))?;
    inner.tree.flush().map_err(|e| inner.storage(e))?;
    drop(guard);
    tracing::debug!(path = %inner.path.display(), rewritten, "body records re-encoded");
    Ok(rewritten)
}
