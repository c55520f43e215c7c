//! Upgrades a store written in an older format to the current one, in place, when it is
//! opened. Format 1 kept every body under `R` (the winner's too) and one `S` + seq key per
//! document; format 2 keeps the winner's body inside the document record and the by-seq
//! index in chunks (see `keys/`). Format 3 is format 2 plus long forms for revisions
//! other replicas write (long rev texts and leaf counts, revs holding `0x00`): format 2
//! data is valid format 3 data, so that upgrade only records the new version, which keeps
//! an older build (reading format 2 only) from misreading a long form. Format 4 adds the
//! sync-state records (`Mremotes`, `Msync`, `U` entries); a format-2 or -3 store has no
//! registered remote, which format 4 reads as "no remote is known to hold anything", the
//! truth for a store whose syncs confirmed nothing. Format 5 adds the Mango index catalog
//! (`N`, `I`): the upgrade from 2, 3 or 4 registers the indexes of the store's query design
//! documents (`upgrade_to_indexes`); format 1 goes to 2 first (`upgrade_v1`). Format 6
//! adds pending intervals, which older stores have none of; but b5d6e81 changed the `U`
//! entries and index blocks from u16 to u32 lengths inside format 5, so the upgrade from 4
//! converts every `U` entry and the one from 5 each entry and block still in the u16 form
//! (`lengths.rs`, issue 21). Format 7 adds chunked attachments and reads older stores'
//! whole ones as they are, so from 6 the upgrade is the format key (`upgrade_v6`); format 8
//! keeps new attachments in files and reads format 7's chunks as they are, so from 7 too.
//!
//! The upgrade from format 1 runs in batches, each atomic, and each step skips what is
//! already done, so a crash during it leaves a store that upgrades the rest on the next open;
//! the upgrades from 2 to 5 are one batch each, so a crash leaves the old format, upgraded
//! again on the next open. The format key
//! changes last, after everything else is applied (sled recovers a prefix of its log, so a
//! durable format key means durable data).

mod lengths;

use crate::index::catalog::{indexed_doc, new_entry};
use crate::keys::{self, DocRecord, SeqEntry};
use crate::{Error, Result};
use lengths::Lengths;

/// Records converted per batch.
const BATCH: usize = 1000;

/// Format 1 to format 2 (the layout of 2 to 5); [`upgrade_to_indexes`] then takes it on.
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
            packed: None,
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
    tree.insert(keys::META_FORMAT, &b"2"[..]).map_err(storage)?;
    tree.flush().map_err(storage)?;
    Ok(())
}

/// Format 2, 3 or 4 to the current one: registers the JSON indexes of the query design
/// documents in the new index catalog (not built: the first `find` that needs one builds it)
/// and gives format 4's `U` entries u32 lengths, in one batch with the format key. Format 3
/// only added what needs no rewrite (see the module docs), formats 2 and 3 have no `U`
/// entries, and none of them has `N` or `I` keys.
///
/// # Errors
/// [`Error::Corrupt`] naming a `U` entry that is not in the u16 form (nothing is written).
pub(crate) fn upgrade_to_indexes(
    tree: &sled::Tree,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut number: u32 = 0;
    for item in tree.scan_prefix(keys::doc_key("_design/")) {
        let (k, v) = item.map_err(storage)?;
        let id = std::str::from_utf8(&k[1..])
            .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
        let (header, body) = keys::DocHeader::decode_with_body(id, &v)?;
        let Some(doc) = indexed_doc(id, header.deleted, &header.winner.to_string(), &body)? else {
            continue;
        };
        for def in settee_query::IndexDef::from_design_doc(&doc) {
            batch.insert(&keys::index_def_key(number)[..], new_entry(number, def));
            number += 1;
        }
    }
    batch.insert(keys::META_NEXT_INDEX, &number.to_be_bytes()[..]);
    let widened = lengths::widen_unsynced(tree, &mut batch, Lengths::U16, storage)?;
    tracing::debug!(widened, "u16 sync-state entries converted");
    commit_with_format(tree, batch, storage)
}

/// Format 5 to the current one: each `U` entry and index block still in the u16 form gets
/// u32 lengths (an index with a block that reads both ways or neither is dropped and
/// registered again unbuilt), in one batch with the format key. Format 6's pending intervals
/// need nothing: a format-5 store has none, and every unsynced document has its `U` entry.
///
/// # Errors
/// [`Error::Corrupt`] naming a `U` entry that reads in both forms or neither (nothing is
/// written).
pub(crate) fn upgrade_v5(tree: &sled::Tree, storage: &dyn Fn(sled::Error) -> Error) -> Result<()> {
    let mut batch = sled::Batch::default();
    let widened = lengths::widen_unsynced(tree, &mut batch, Lengths::Either, storage)?;
    let rebuilt = lengths::widen_index_blocks(tree, &mut batch, storage)?;
    tracing::debug!(
        widened,
        ?rebuilt,
        "u16 sync-state entries and index blocks converted"
    );
    commit_with_format(tree, batch, storage)
}

/// Format 6, 7 or 8 to the current one: only the format key (format 9 reads format 8's
/// uncompressed records as they are; `compact` compresses them). Format 7 keeps new attachments
/// in chunks (`H`, `C`, `P` keys) and still reads format 6's whole `A` values as one chunk;
/// format 8 keeps new ones in files (`attachments/`, version-2 `H` heads) and still reads
/// both older kinds where they are. So nothing is rewritten: the upgrade costs one write
/// whatever the attachments weigh, and it has no window in which an attachment is half
/// converted. The version changes so that an older build, which knows neither files nor
/// version-2 heads, refuses a store whose attachments it would not find.
pub(crate) fn upgrade_v6(tree: &sled::Tree, storage: &dyn Fn(sled::Error) -> Error) -> Result<()> {
    commit_with_format(tree, sled::Batch::default(), storage)
}

/// Applies `batch` with `Mformat` ← the current version, then flushes: the upgrade is
/// durable, or (a crash before the flush) the store is still in its old format.
fn commit_with_format(
    tree: &sled::Tree,
    mut batch: sled::Batch,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<()> {
    batch.insert(
        keys::META_FORMAT,
        keys::FORMAT_VERSION.to_string().as_bytes(),
    );
    tree.apply_batch(batch).map_err(storage)?;
    tree.flush().map_err(storage)?;
    Ok(())
}
