//! Upgrades a store written in an older format to the current one, in place, when it is
//! opened. Format 1 kept every body under `R` (the winner's too) and one `S` + seq key per
//! document; format 2 keeps the winner's body inside the document record and the by-seq
//! index in chunks (see `keys.rs`). Format 3 is format 2 plus long forms for revisions
//! other replicas write (long rev texts and leaf counts, revs holding `0x00`): format 2
//! data is valid format 3 data, so that upgrade only records the new version, which keeps
//! an older build (reading format 2 only) from misreading a long form. Format 4 adds the
//! sync-state records (`Mremotes`, `Msync`, `U` entries); a format-2 or -3 store has no
//! registered remote, which format 4 reads as "no remote is known to hold anything", the
//! truth for a store whose syncs confirmed nothing, so that upgrade too is the format key.
//!
//! The upgrade runs in batches, each atomic, and each step skips what is already done, so
//! a crash during it leaves a store that upgrades the rest on the next open. The format key
//! changes last, after everything else is applied (sled recovers a prefix of its log, so a
//! durable format key means durable data).

use crate::keys::{self, DocRecord, SeqEntry};
use crate::{Error, Result};

/// Records converted per batch.
const BATCH: usize = 1000;

/// Format 2 or 3 to 4: nothing to rewrite (see the module docs).
pub(crate) fn upgrade_v2(tree: &sled::Tree, storage: &dyn Fn(sled::Error) -> Error) -> Result<()> {
    tree.insert(
        keys::META_FORMAT,
        keys::FORMAT_VERSION.to_string().as_bytes(),
    )
    .map_err(storage)?;
    tree.flush().map_err(storage)?;
    Ok(())
}

/// Format 1 to the current format (2, 3 and 4 have the same layout).
pub(crate) fn upgrade_v1(tree: &sled::Tree, storage: &dyn Fn(sled::Error) -> Error) -> Result<()> {
    // 1. Each record takes its winner's body inline; the `R` copy goes.
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in tree.scan_prefix([keys::DOC]) {
        let (k, v) = item.map_err(storage)?;
        if DocRecord::version(&v) != Some(1) {
            continue;
        }
        let id = std::str::from_utf8(&k[1..])
            .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
        let (seq, rev_tree) = DocRecord::decode_v1(id, &v)?;
        let winner = rev_tree.winner();
        let rkey = keys::rev_key(id, &winner);
        let body = tree
            .get(&rkey)
            .map_err(storage)?
            .ok_or_else(|| Error::corrupt(format!("body of {id:?} at {winner} is missing")))?;
        let rec = DocRecord {
            seq,
            tree: rev_tree,
            body: body.to_vec(),
            // Step 2 gives every entry a chunk of its own.
            solo: true,
        };
        batch.insert(&k, rec.encode()?);
        batch.remove(rkey);
        n += 1;
        if n >= BATCH {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(storage)?;
            n = 0;
        }
    }
    tree.apply_batch(std::mem::take(&mut batch))
        .map_err(storage)?;
    // 2. Each `S` entry becomes a one-entry chunk under the same seq.
    n = 0;
    for item in tree.scan_prefix([keys::LEGACY_SEQ]) {
        let (k, v) = item.map_err(storage)?;
        let seq = keys::legacy_seq_from_key(&k).ok_or_else(|| Error::corrupt("bad by-seq key"))?;
        let id = std::str::from_utf8(&v)
            .map_err(|_| Error::corrupt(format!("by-seq entry {seq} holds a non-UTF-8 id")))?;
        // Format 1 had exactly one entry per document, its live one.
        let record = tree
            .get(keys::doc_key(id))
            .map_err(storage)?
            .ok_or_else(|| Error::corrupt(format!("by-seq entry {seq} names missing {id:?}")))?;
        let rec = DocRecord::decode(id, &record)?;
        batch.remove(k);
        batch.insert(
            &keys::chunk_key(seq)[..],
            keys::encode_chunk(&[SeqEntry::of(seq, id, &rec.tree)])?,
        );
        n += 1;
        if n >= BATCH {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(storage)?;
            n = 0;
        }
    }
    tree.apply_batch(batch).map_err(storage)?;
    tree.insert(
        keys::META_FORMAT,
        keys::FORMAT_VERSION.to_string().as_bytes(),
    )
    .map_err(storage)?;
    tree.flush().map_err(storage)?;
    Ok(())
}
