//! The key layout of the store's single sled tree, and the encoding of document records
//! and by-sequence chunks. `docs/storage-format.md` describes the same bytes; change both
//! together (and bump [`FORMAT_VERSION`]).
//!
//! Everything lives in one sled tree so that one write call is one `sled::Batch`, which
//! sled applies atomically (all of it or none of it survives a crash, and readers see all
//! of it or none of it). Each record kind has a one-byte prefix:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | `M` + name | meta values (format version, uuid, counters) |
//! | `D` | `D` + id | [`DocRecord`]: seq, flags, winner, rev tree, the winner's body |
//! | `R` | `R` + id + `0x00` + rev (or `x` + hex of a rev holding `0x00`) | the body (JSON) of a revision that is not the winner |
//! | `Q` | `Q` + first seq (u64 big-endian) | a by-seq chunk: the entries (seq, id, leaves) one write call made |
//! | `X` | `X` + seq (u64 big-endian) | marks the entry at seq stale; value: the seq that superseded it |
//! | `A` | `A` + digest | attachment bytes |
//! | `L` | `L` + id without `_local/` | local doc (JSON, with `_rev`) |
//! | `N` | `N` + index number (u32 big-endian) | a Mango index of the catalog: its definition and build state |
//! | `I` | `I` + index number + lower bound (an entry, or nothing) | a block of index entries (collation-encoded key + doc id), ascending |
//! | `U` | `U` + remote number (u32 big-endian) + id | [`Unsynced`]: the document's leaves that remote is not known to hold, and its rejection |
//!
//! Sled's cost is per key, so a document write touches as few keys as it can: a new
//! document is one `D` record (its body inline) plus its entry in the call's one `Q` chunk.
//! An entry goes stale when its document is written again: an entry of the same call's
//! chunk is dropped, a single-entry chunk is deleted, any other gets an `X` marker that
//! readers merge with the chunks (so `_changes` never reads the records), and
//! [`crate::Database::compact`] drops marked entries with their markers.
//!
//! Format 3 added the `N` and `I` kinds (Mango indexes, `index.rs`); format 2 stores upgrade
//! by registering their query design documents (`migrate.rs`).
//! `Mremotes` lists the remotes the store syncs with (each with its number) and `Msync`
//! counts their `U` entries; `sync_state.rs` owns both and the `U` entries.
//!
//! Format 1 (before this layout) kept every body under `R` and one `S` + seq key per
//! document; `migrate.rs` upgrades it in place. Format 2 is format 3 without its long forms
//! (a rev text or leaf count too long for the short length fields, a rev holding `0x00`),
//! which revisions written by other CouchDB replicas need; format 2 data reads unchanged.
//! Format 4 adds the sync-state records (`Mremotes`, `Msync`, `U`); a format-3 store has
//! none, which format 4 reads as "no remote registered", so that upgrade is the format key.
//! Format 6 adds a remote's pending intervals in `Mremotes` (and `U` markers); a format-5
//! store has none, so that upgrade is the format key too.

use std::borrow::Cow;

use settee_revtree::{Rev, RevTree};

/// The storage format this build reads and writes.
pub const FORMAT_VERSION: u32 = 6;

/// The sled tree that holds every record.
pub(crate) const TREE_NAME: &[u8] = b"settee";

pub(crate) const META_FORMAT: &[u8] = b"Mformat";
pub(crate) const META_UUID: &[u8] = b"Muuid";
/// `update_seq`, `doc_count`, `doc_del_count`, `purge_seq`: 4 × u64 big-endian. One record,
/// so a write adds one meta update to its batch and readers see the four agree.
pub(crate) const META_COUNTERS: &[u8] = b"Mcounters";
/// The number the next Mango index gets (u32 big-endian); numbers are never reused.
pub(crate) const META_NEXT_INDEX: &[u8] = b"Mnext_index";
/// The registered remotes: JSON `[{"n": number, "name": ..., "meta": {...}}]`. Written only
/// when a remote is registered or its meta changes.
pub(crate) const META_REMOTES: &[u8] = b"Mremotes";
/// Per registered remote: number (u32), unsynced entries (u64), rejected entries (u64), all
/// big-endian; 20 bytes each, by ascending number. Written by every batch that changes them.
pub(crate) const META_SYNC: &[u8] = b"Msync";
/// The `_revs_limit` set on the store (u64 big-endian); absent until one is set.
pub(crate) const META_REVS_LIMIT: &[u8] = b"Mrevs_limit";
/// The `_security` object (JSON); absent until one is set.
pub(crate) const META_SECURITY: &[u8] = b"Msecurity";

pub(crate) const DOC: u8 = b'D';
pub(crate) const REV: u8 = b'R';
/// Format 1's per-document by-seq keys (`S` + seq → id); only the migration reads them.
pub(crate) const LEGACY_SEQ: u8 = b'S';
pub(crate) const CHUNK: u8 = b'Q';
pub(crate) const STALE: u8 = b'X';
pub(crate) const ATT: u8 = b'A';
pub(crate) const LOCAL: u8 = b'L';
pub(crate) const INDEX_DEF: u8 = b'N';
pub(crate) const INDEX_ENTRY: u8 = b'I';

/// `N` + index number.
pub(crate) fn index_def_key(index: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = INDEX_DEF;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// `I` + index number: the prefix of all of one index's blocks. A block's key goes on with
/// its lower bound, an entry (the collation-encoded key, then the document id), or nothing
/// for a first block; its value is its entries, each a length (u32 big-endian) and the bytes,
/// ascending (`index_blocks.rs`).
pub(crate) fn index_prefix(index: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = INDEX_ENTRY;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}
pub(crate) const UNSYNCED: u8 = b'U';

pub(crate) fn doc_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(DOC);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `R` + id + `0x00` + rev text. A rev whose hash holds `0x00` (CouchDB stores any string)
/// is written as `x` + the hex of its text instead, so that the part after the last `0x00`
/// never holds one: it is the rev (it starts with a digit) or its hex form (it starts with
/// `x`), and the key names one (id, rev) pair even when the id holds `0x00`.
pub(crate) fn rev_key(id: &str, rev: &Rev) -> Vec<u8> {
    let text = rev.to_string();
    let rev = if text.contains('\0') {
        Cow::Owned(format!("x{}", hex::encode(&text)))
    } else {
        Cow::Borrowed(text.as_str())
    };
    let mut k = Vec::with_capacity(2 + id.len() + rev.len());
    k.push(REV);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(rev.as_bytes());
    k
}

/// `Q` + the chunk's first seq, big-endian so chunks sort by seq.
pub(crate) fn chunk_key(first_seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CHUNK;
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// Format 1's `S` + seq key → seq.
pub(crate) fn legacy_seq_from_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == LEGACY_SEQ).then(|| u64::from_be_bytes(bytes))
}

/// One entry of a by-seq chunk: the document written at `seq`, as that write left it (its
/// leaves, winner first, and whether the winner is deleted), so that `_changes` reads the
/// index alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeqEntry {
    pub(crate) seq: u64,
    pub(crate) id: String,
    pub(crate) deleted: bool,
    pub(crate) leaves: Vec<Rev>,
}

impl SeqEntry {
    pub(crate) fn of(seq: u64, id: &str, tree: &RevTree) -> SeqEntry {
        SeqEntry::of_leaves(seq, id, tree.leaves())
    }

    /// The entry of a document whose leaves (best first, as `RevTree::leaves` gives them)
    /// are `leaves`.
    pub(crate) fn of_leaves(seq: u64, id: &str, leaves: Vec<settee_revtree::Leaf>) -> SeqEntry {
        SeqEntry {
            seq,
            id: id.to_owned(),
            deleted: leaves.first().is_some_and(|l| l.deleted),
            leaves: leaves.into_iter().map(|l| l.rev).collect(),
        }
    }
}

/// Encodes a chunk's entries (ascending seq): each is seq (u64 big-endian), flags (bit 0 =
/// winner deleted), id length (u32 big-endian), id bytes, leaf count (u16 big-endian), and
/// per leaf its rev text's length (u8) and text. A count or length too large for its field
/// is written as 0 (never a real value: an entry has a leaf, a rev text is at least `N-`)
/// followed by the value as u32 big-endian.
pub(crate) fn encode_chunk(entries: &[SeqEntry]) -> crate::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.len() * 64);
    for e in entries {
        out.extend_from_slice(&e.seq.to_be_bytes());
        out.push(u8::from(e.deleted));
        out.extend_from_slice(&long_len(e.id.len(), || format!("the id {:?}", e.id))?);
        out.extend_from_slice(e.id.as_bytes());
        match u16::try_from(e.leaves.len()) {
            Ok(n) if n > 0 => out.extend_from_slice(&n.to_be_bytes()),
            _ => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&long_len(e.leaves.len(), || {
                    format!("the leaves of {:?}", e.id)
                })?);
            }
        }
        for rev in &e.leaves {
            let text = rev.to_string();
            match u8::try_from(text.len()) {
                Ok(len) if len > 0 => out.push(len),
                _ => {
                    out.push(0);
                    out.extend_from_slice(&long_len(text.len(), || {
                        format!("a revision id of {:?}", e.id)
                    })?);
                }
            }
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(out)
}

/// A length as u32 big-endian; beyond 4 GiB it is an error naming `what`.
fn long_len(len: usize, what: impl FnOnce() -> String) -> crate::Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| crate::Error::bad_request(format!("{} is longer than 4 GiB", what())))
}

/// Reads a u32 big-endian length.
fn read_u32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Decodes a chunk stored under `key`, checking that its entries ascend and start at the
/// key's seq.
pub(crate) fn decode_chunk(key: &[u8], bytes: &[u8]) -> crate::Result<Vec<SeqEntry>> {
    let bad = |what: &str| crate::Error::corrupt(format!("by-seq chunk {key:?}: {what}"));
    let first: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .filter(|_| key.len() == 9 && key[0] == CHUNK)
        .ok_or_else(|| bad("bad key"))?;
    let first = u64::from_be_bytes(first);
    let mut out: Vec<SeqEntry> = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> crate::Result<&[u8]> {
        let b = bytes
            .get(*at..at.saturating_add(n))
            .ok_or_else(|| bad("truncated entry"))?;
        *at += n;
        Ok(b)
    };
    while at < bytes.len() {
        let seq = decode_u64(take(&mut at, 8)?, "chunk seq")?;
        let flags = take(&mut at, 1)?[0];
        let len = read_u32(take(&mut at, 4)?);
        let id = std::str::from_utf8(take(&mut at, len)?).map_err(|_| bad("bad id"))?;
        let n = take(&mut at, 2)?;
        let n = match usize::from(u16::from_be_bytes([n[0], n[1]])) {
            0 => read_u32(take(&mut at, 4)?),
            n => n,
        };
        // Capacity from the data, never from a count alone: a damaged count must not
        // allocate more than the chunk could hold (each leaf takes at least 2 bytes).
        let mut leaves = Vec::with_capacity(n.min(bytes.len() / 2));
        for _ in 0..n {
            let len = match usize::from(take(&mut at, 1)?[0]) {
                0 => read_u32(take(&mut at, 4)?),
                len => len,
            };
            let text = std::str::from_utf8(take(&mut at, len)?).map_err(|_| bad("bad rev"))?;
            leaves.push(text.parse().map_err(|_| bad("bad rev"))?);
        }
        let ascending = out.last().map_or(seq == first, |prev| seq > prev.seq);
        if !ascending || flags > 1 || leaves.is_empty() {
            return Err(bad("bad entry"));
        }
        out.push(SeqEntry {
            seq,
            id: id.to_owned(),
            deleted: flags == 1,
            leaves,
        });
    }
    if out.is_empty() {
        return Err(bad("empty"));
    }
    Ok(out)
}

/// Replaces the chunk under `old_key` by `kept` (a subset of its entries) in `batch`: the
/// chunk moves to its new first seq, or goes if nothing is kept.
pub(crate) fn rewrite_chunk(
    batch: &mut sled::Batch,
    old_key: &[u8],
    kept: &[SeqEntry],
) -> crate::Result<()> {
    batch.remove(old_key);
    if let Some(first) = kept.first() {
        batch.insert(&chunk_key(first.seq)[..], encode_chunk(kept)?);
    }
    Ok(())
}

/// `X` + seq: the by-seq entry at seq is stale; the value is the seq (u64 big-endian) of the
/// write that superseded it.
pub(crate) fn stale_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = STALE;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn att_key(digest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + digest.len());
    k.push(ATT);
    k.extend_from_slice(digest.as_bytes());
    k
}

pub(crate) fn local_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(LOCAL);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `U` + remote number (u32 big-endian) + id.
pub(crate) fn unsynced_key(remote: u32, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + id.len());
    k.push(UNSYNCED);
    k.extend_from_slice(&remote.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of every `U` key of one remote.
pub(crate) fn unsynced_prefix(remote: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = UNSYNCED;
    k[1..].copy_from_slice(&remote.to_be_bytes());
    k
}

/// A `U` key → (remote number, id).
pub(crate) fn split_unsynced_key(key: &[u8]) -> crate::Result<(u32, &str)> {
    let bad = || crate::Error::corrupt(format!("bad unsynced key {key:?}"));
    if key.len() < 5 || key[0] != UNSYNCED {
        return Err(bad());
    }
    let remote = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
    let id = std::str::from_utf8(&key[5..]).map_err(|_| bad())?;
    Ok((remote, id))
}

/// What a remote refused, as its `_bulk_docs` result said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRejection {
    pub(crate) rev: Rev,
    pub(crate) error: String,
    pub(crate) reason: String,
}

/// A `U` entry: the document's leaves that the remote is not known to hold (sorted
/// ascending, each a leaf of the document), and the remote's last refusal of the document,
/// if it still stands. Without leaves (and then without a refusal) it is a *marker*: the
/// remote holds the document although its seq is in one of the remote's pending intervals
/// (see `sync_state.rs`).
///
/// Encoded as: version byte `1`, leaf count (u32 big-endian), each leaf's rev text as a
/// u32 big-endian length and the text; then a byte `0` (no rejection) or `1` followed by
/// the rejected rev, the error name and the reason, each a u32 length and the text, all
/// big-endian. Every length is a u32, so nothing `Rev` parses (a hash of 70,000 characters
/// that CouchDB stores, say) is too long for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsynced {
    pub(crate) leaves: Vec<Rev>,
    pub(crate) rejection: Option<StoredRejection>,
}

const UNSYNCED_VERSION: u8 = 1;

impl Unsynced {
    /// The entry of a document the remote holds although its seq is in one of the
    /// remote's pending intervals: no leaves, no rejection.
    pub(crate) fn marker() -> Unsynced {
        Unsynced {
            leaves: Vec::new(),
            rejection: None,
        }
    }

    pub(crate) fn is_marker(&self) -> bool {
        self.leaves.is_empty() && self.rejection.is_none()
    }

    pub(crate) fn encode(&self) -> crate::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(8 + 40 * self.leaves.len());
        out.push(UNSYNCED_VERSION);
        // A u32 holds every length below 4 GiB; a text that long never reaches a store
        // (request bodies are bounded far below that).
        let put32 = |out: &mut Vec<u8>, len: usize| -> crate::Result<()> {
            let len = u32::try_from(len)
                .map_err(|_| crate::Error::bad_request("a text of the sync state is over 4 GiB"))?;
            out.extend_from_slice(&len.to_be_bytes());
            Ok(())
        };
        put32(&mut out, self.leaves.len())?;
        let text = |out: &mut Vec<u8>, text: &str| -> crate::Result<()> {
            put32(out, text.len())?;
            out.extend_from_slice(text.as_bytes());
            Ok(())
        };
        for rev in &self.leaves {
            text(&mut out, &rev.to_string())?;
        }
        match &self.rejection {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                text(&mut out, &r.rev.to_string())?;
                text(&mut out, &r.error)?;
                text(&mut out, &r.reason)?;
            }
        }
        Ok(out)
    }

    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<Unsynced> {
        let bad = |what: &str| crate::Error::corrupt(format!("sync state of {id:?}: {what}"));
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> crate::Result<&[u8]> {
            let b = bytes.get(*at..*at + n).ok_or_else(|| bad("truncated"))?;
            *at += n;
            Ok(b)
        };
        let u32_at = |at: &mut usize| -> crate::Result<usize> {
            let b = take(at, 4)?;
            usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .map_err(|_| bad("bad length"))
        };
        let text = |at: &mut usize| -> crate::Result<&str> {
            let len = u32_at(at)?;
            std::str::from_utf8(take(at, len)?).map_err(|_| bad("bad text"))
        };
        if take(&mut at, 1)?[0] != UNSYNCED_VERSION {
            return Err(bad("unknown version"));
        }
        let n = u32_at(&mut at)?;
        // Each leaf takes at least 4 bytes: a count past that is corrupt, not a reason to
        // reserve memory.
        if n > bytes.len() / 4 {
            return Err(bad("bad leaf count"));
        }
        let mut leaves = Vec::with_capacity(n);
        for _ in 0..n {
            leaves.push(text(&mut at)?.parse().map_err(|_| bad("bad rev"))?);
        }
        let rejection = match take(&mut at, 1)?[0] {
            0 => None,
            1 => {
                let rev = text(&mut at)?.parse().map_err(|_| bad("bad rev"))?;
                let error = text(&mut at)?.to_owned();
                let reason = text(&mut at)?.to_owned();
                Some(StoredRejection { rev, error, reason })
            }
            _ => return Err(bad("bad rejection flag")),
        };
        let marker = leaves.is_empty() && rejection.is_none();
        if at != bytes.len()
            || (leaves.is_empty() && !marker)
            || leaves.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(bad("bad entry"));
        }
        Ok(Unsynced { leaves, rejection })
    }
}

pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> crate::Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        crate::Error::corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A document's record: where it is in the by-seq index, its winner, its rev tree and the
/// winner's body.
///
/// Encoded as: version byte `2`, flags byte (bit 0 = winner deleted, bit 1 = the document's
/// by-seq entry is alone in its chunk), seq (u64 big-endian), winner length (u16
/// big-endian; 0 then a u32 big-endian length for a text of 64 KiB or more) and winner text, rev tree length (u32 big-endian) and the rev tree as JSON
/// (the flat encoding of `settee_revtree`), then the winner's body (JSON) to the end. The
/// header comes first so `_all_docs` and `_changes` can read the winner without decoding
/// the rest.
#[derive(Debug, Clone)]
pub(crate) struct DocRecord {
    pub(crate) seq: u64,
    pub(crate) tree: RevTree,
    /// The winning revision's body, JSON.
    pub(crate) body: Vec<u8>,
    /// The by-seq entry at `seq` is the only entry of its chunk (so superseding it deletes
    /// the chunk's key).
    pub(crate) solo: bool,
}

/// The header of a [`DocRecord`].
#[derive(Debug, Clone)]
pub(crate) struct DocHeader {
    pub(crate) seq: u64,
    pub(crate) deleted: bool,
    pub(crate) winner: Rev,
}

const HEADER_LEN: usize = 1 + 1 + 8 + 2;
const RECORD_VERSION: u8 = 2;
const FLAG_DELETED: u8 = 1;
const FLAG_SOLO: u8 = 2;

/// A record's rev tree (after the header: a u32 length and the JSON tree) and its body.
fn split_tree<'a>(id: &str, rest: &'a [u8]) -> crate::Result<(RevTree, &'a [u8])> {
    let bad = || crate::Error::corrupt(format!("record of {id:?}: bad tree length"));
    let tlen = rest
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    let tree_bytes = rest.get(4..4 + tlen).ok_or_else(bad)?;
    let tree: RevTree = serde_json::from_slice(tree_bytes)
        .map_err(|e| crate::Error::corrupt(format!("rev tree of {id:?}: {e}")))?;
    Ok((tree, &rest[4 + tlen..]))
}

impl DocRecord {
    pub(crate) fn encode(&self) -> crate::Result<Vec<u8>> {
        let leaf = self.tree.winning_leaf();
        let winner = leaf.rev.to_string();
        let mut tree = Vec::with_capacity(64 * self.tree.node_count());
        serde_json::to_writer(&mut tree, &self.tree)
            .map_err(|e| crate::Error::corrupt(format!("encoding rev tree: {e}")))?;
        let tlen = u32::try_from(tree.len())
            .map_err(|_| crate::Error::bad_request("revision tree is too large"))?;
        let mut out =
            Vec::with_capacity(HEADER_LEN + winner.len() + 4 + tree.len() + self.body.len());
        out.push(RECORD_VERSION);
        let mut flags = 0;
        if leaf.deleted {
            flags |= FLAG_DELETED;
        }
        if self.solo {
            flags |= FLAG_SOLO;
        }
        out.push(flags);
        out.extend_from_slice(&self.seq.to_be_bytes());
        match u16::try_from(winner.len()) {
            // A winner's text is at least `N-`, so a length of 0 marks the long form.
            Ok(wlen) if wlen > 0 => out.extend_from_slice(&wlen.to_be_bytes()),
            _ => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&long_len(winner.len(), || {
                    "the winning revision id".to_owned()
                })?);
            }
        }
        out.extend_from_slice(winner.as_bytes());
        out.extend_from_slice(&tlen.to_be_bytes());
        out.extend_from_slice(&tree);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<DocRecord> {
        let (header, solo, rest) = DocHeader::split(id, bytes, RECORD_VERSION)?;
        let (tree, body) = split_tree(id, rest)?;
        Ok(DocRecord {
            seq: header.seq,
            tree,
            body: body.to_vec(),
            solo,
        })
    }

    /// The seq and tree of a record, without copying its body.
    pub(crate) fn decode_tree(id: &str, bytes: &[u8]) -> crate::Result<(u64, RevTree)> {
        let (header, _, rest) = DocHeader::split(id, bytes, RECORD_VERSION)?;
        let (tree, _) = split_tree(id, rest)?;
        Ok((header.seq, tree))
    }

    /// Decodes a format-1 record (no tree length, no body: the winner's body is under `R`).
    pub(crate) fn decode_v1(id: &str, bytes: &[u8]) -> crate::Result<(u64, RevTree)> {
        let (header, _, rest) = DocHeader::split(id, bytes, 1)?;
        let tree: RevTree = serde_json::from_slice(rest)
            .map_err(|e| crate::Error::corrupt(format!("rev tree of {id:?}: {e}")))?;
        Ok((header.seq, tree))
    }

    /// The record's format version byte.
    pub(crate) fn version(bytes: &[u8]) -> Option<u8> {
        bytes.first().copied()
    }
}

impl DocHeader {
    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<DocHeader> {
        Ok(DocHeader::split(id, bytes, RECORD_VERSION)?.0)
    }

    /// The header and the winner's body of a record, without decoding the rev tree (what
    /// reading an index's documents needs).
    pub(crate) fn decode_with_body<'a>(
        id: &str,
        bytes: &'a [u8],
    ) -> crate::Result<(DocHeader, &'a [u8])> {
        let (header, _, rest) = DocHeader::split(id, bytes, RECORD_VERSION)?;
        let bad = || crate::Error::corrupt(format!("record of {id:?}: bad tree length"));
        let tlen = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(bad)?;
        let body = rest.get(4 + tlen..).ok_or_else(bad)?;
        Ok((header, body))
    }

    fn split<'a>(
        id: &str,
        bytes: &'a [u8],
        version: u8,
    ) -> crate::Result<(DocHeader, bool, &'a [u8])> {
        let bad = |what: &str| crate::Error::corrupt(format!("record of {id:?}: {what}"));
        if bytes.len() < HEADER_LEN || bytes[0] != version || bytes[1] > 3 {
            return Err(bad("bad header"));
        }
        let seq = decode_u64(&bytes[2..10], "doc seq")?;
        let (wstart, wlen) = match usize::from(u16::from_be_bytes([bytes[10], bytes[11]])) {
            0 => {
                let len = bytes
                    .get(HEADER_LEN..HEADER_LEN + 4)
                    .ok_or_else(|| bad("bad winner length"))?;
                (HEADER_LEN + 4, read_u32(len))
            }
            wlen => (HEADER_LEN, wlen),
        };
        let wend = wstart.saturating_add(wlen);
        let winner = bytes
            .get(wstart..wend)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| bad("bad winner"))?;
        let winner: Rev = winner.parse().map_err(|_| bad("bad winner rev"))?;
        Ok((
            DocHeader {
                seq,
                deleted: bytes[1] & FLAG_DELETED != 0,
                winner,
            },
            bytes[1] & FLAG_SOLO != 0,
            &bytes[wend..],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settee_revtree::RevPath;

    #[test]
    fn doc_record_round_trips_and_header_reads_winner() {
        let mut tree = RevTree::new(&RevPath::new(1, ["a", "b"]).unwrap(), false);
        tree.merge(&RevPath::new(1, ["a", "c"]).unwrap(), true, 1000);
        let rec = DocRecord {
            seq: 42,
            tree,
            body: br#"{"n":1}"#.to_vec(),
            solo: true,
        };
        let bytes = rec.encode().unwrap();
        let h = DocHeader::decode("x", &bytes).unwrap();
        assert_eq!(h.seq, 42);
        assert!(!h.deleted);
        assert_eq!(h.winner.to_string(), "2-b");
        let back = DocRecord::decode("x", &bytes).unwrap();
        assert_eq!(back.tree, rec.tree);
        assert_eq!(back.body, rec.body);
        assert!(back.solo);
        assert!(DocRecord::decode("x", &bytes[..5]).is_err());
        assert!(DocRecord::decode("x", &bytes[..20]).is_err());
    }

    #[test]
    fn long_revs_and_many_leaves_take_the_long_forms_and_round_trip() {
        // Issue 10: CouchDB stores revs of any length; a length field must not limit them.
        let long: Rev = format!("1-{}", "a".repeat(300)).parse().unwrap();
        let huge: Rev = format!("2-{}", "b".repeat(70_000)).parse().unwrap();
        let short: Rev = "0-".parse().unwrap();
        let many: Vec<Rev> = (0..70_000)
            .map(|i| format!("1-{i:x}").parse().unwrap())
            .collect();
        let entries = vec![
            SeqEntry {
                seq: 1,
                id: "a".into(),
                deleted: false,
                leaves: vec![huge.clone(), long.clone(), short.clone()],
            },
            SeqEntry {
                seq: 2,
                id: "b".into(),
                deleted: true,
                leaves: many,
            },
        ];
        let bytes = encode_chunk(&entries).unwrap();
        assert_eq!(decode_chunk(&chunk_key(1), &bytes).unwrap(), entries);
        assert!(decode_chunk(&chunk_key(1), &bytes[..bytes.len() - 1]).is_err());

        let mut tree = RevTree::new(&RevPath::new(1, ["a".repeat(70_000)]).unwrap(), false);
        tree.merge(&RevPath::new(0, ["", "x"]).unwrap(), true, 1000);
        let rec = DocRecord {
            seq: 9,
            tree,
            body: b"{}".to_vec(),
            solo: false,
        };
        let bytes = rec.encode().unwrap();
        let h = DocHeader::decode("d", &bytes).unwrap();
        assert_eq!(h.winner.hash().len(), 70_000);
        let back = DocRecord::decode("d", &bytes).unwrap();
        assert_eq!(back.tree, rec.tree);
        assert_eq!(back.body, rec.body);
        assert!(DocRecord::decode("d", &bytes[..HEADER_LEN + 2]).is_err());
        // A format-2 record (short winner length) still reads.
        let short_rec = DocRecord {
            tree: RevTree::new(&RevPath::new(1, ["a"]).unwrap(), false),
            ..rec
        };
        let bytes = short_rec.encode().unwrap();
        assert_eq!(&bytes[10..12], &[0, 3]);
        assert_eq!(
            DocHeader::decode("d", &bytes).unwrap().winner.to_string(),
            "1-a"
        );
    }

    #[test]
    fn rev_keys_name_one_id_and_rev_even_with_nul_in_both() {
        let rev = |s: &str| -> Rev { s.parse().unwrap() };
        // Revs without 0x00 keep format 2's key.
        assert_eq!(rev_key("a", &rev("1-x")), b"Ra\x001-x".to_vec());
        let pairs = [
            ("a", "1-x\u{0}1-c"),
            ("a\u{0}1-x", "1-c"),
            ("a\u{0}1-x\u{0}1-c", "1-d"),
            ("a", "1-x"),
            ("a\u{0}", "1-x"),
        ];
        let keys: std::collections::BTreeSet<Vec<u8>> =
            pairs.iter().map(|(id, r)| rev_key(id, &rev(r))).collect();
        assert_eq!(keys.len(), pairs.len());
        for k in &keys {
            let last = k.iter().rposition(|&b| b == 0).unwrap();
            assert!(k[last + 1].is_ascii_digit() || k[last + 1] == b'x');
        }
    }

    #[test]
    fn chunks_round_trip_and_reject_damage() {
        let entry = |seq: u64, id: &str, deleted: bool, leaves: &[&str]| SeqEntry {
            seq,
            id: id.to_owned(),
            deleted,
            leaves: leaves.iter().map(|r| r.parse().unwrap()).collect(),
        };
        let entries = vec![
            entry(7, "a", false, &["1-a"]),
            entry(9, "b\u{0}c", true, &["3-x", "2-y"]),
        ];
        let bytes = encode_chunk(&entries).unwrap();
        assert_eq!(decode_chunk(&chunk_key(7), &bytes).unwrap(), entries);
        // The key must be the first entry's seq.
        assert!(decode_chunk(&chunk_key(6), &bytes).is_err());
        assert!(decode_chunk(&chunk_key(7), &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_chunk(&chunk_key(7), &[]).is_err());
        let unordered = encode_chunk(&[
            entry(7, "a", false, &["1-a"]),
            entry(7, "b", false, &["1-b"]),
        ])
        .unwrap();
        assert!(decode_chunk(&chunk_key(7), &unordered).is_err());
        assert!(chunk_key(2) < chunk_key(10));
        assert!(chunk_key(255) < chunk_key(256));
    }

    #[test]
    fn unsynced_entries_round_trip_and_reject_damage() {
        let e = Unsynced {
            leaves: vec!["1-a".parse().unwrap(), "2-b".parse().unwrap()],
            rejection: Some(StoredRejection {
                rev: "2-b".parse().unwrap(),
                error: "forbidden".into(),
                reason: "no secrets here".into(),
            }),
        };
        let bytes = e.encode().unwrap();
        assert_eq!(Unsynced::decode("x", &bytes).unwrap(), e);
        assert!(Unsynced::decode("x", &bytes[..bytes.len() - 1]).is_err());
        let plain = Unsynced {
            rejection: None,
            ..e.clone()
        };
        assert_eq!(
            Unsynced::decode("x", &plain.encode().unwrap()).unwrap(),
            plain
        );
        // Revisions CouchDB stores can be longer than any u16 length (issue 10).
        let long = Unsynced {
            leaves: vec![format!("1-{}", "h".repeat(70_000)).parse().unwrap()],
            rejection: Some(StoredRejection {
                rev: format!("1-{}", "h".repeat(70_000)).parse().unwrap(),
                error: "e".repeat(70_000),
                reason: "r".repeat(70_000),
            }),
        };
        assert_eq!(
            Unsynced::decode("x", &long.encode().unwrap()).unwrap(),
            long
        );
        // Leaves must be sorted, unique, and present unless the entry is a marker.
        let unsorted = Unsynced {
            leaves: vec!["2-b".parse().unwrap(), "1-a".parse().unwrap()],
            rejection: None,
        };
        assert!(Unsynced::decode("x", &unsorted.encode().unwrap()).is_err());
        let marker = Unsynced::marker();
        assert!(Unsynced::decode("x", &marker.encode().unwrap())
            .unwrap()
            .is_marker());
        let rejected_without_leaves = Unsynced {
            leaves: vec![],
            rejection: long.rejection.clone(),
        };
        assert!(Unsynced::decode("x", &rejected_without_leaves.encode().unwrap()).is_err());
        assert_eq!(
            split_unsynced_key(&unsynced_key(7, "a\u{0}b")).unwrap(),
            (7, "a\u{0}b")
        );
    }
}
