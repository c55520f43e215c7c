//! The key layout: the sled tree's name, the meta record names, each record kind's prefix,
//! and the functions that build and split keys (see the table in `keys/mod.rs`).

use std::borrow::Cow;

use settee_revtree::Rev;

/// The storage format this build reads and writes.
pub const FORMAT_VERSION: u32 = 9;

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
/// Other names of registered remotes: JSON `{"address": "identity", ...}` (see
/// `sync_state/aliases.rs`). Absent until the first alias; written only when one is learned.
pub(crate) const META_ALIASES: &[u8] = b"Maliases";
/// The `_revs_limit` set on the store (u64 big-endian); absent until one is set.
pub(crate) const META_REVS_LIMIT: &[u8] = b"Mrevs_limit";
/// The `_security` object (JSON); absent until one is set.
pub(crate) const META_SECURITY: &[u8] = b"Msecurity";
/// The id (u64 big-endian) of the body dictionary writes compress with (`bodies/`);
/// absent until the store trains one.
pub(crate) const META_BODY_DICT: &[u8] = b"Mbody_dict";

pub(crate) const DOC: u8 = b'D';
pub(crate) const REV: u8 = b'R';
/// Format 1's per-document by-seq keys (`S` + seq → id); only the migration reads them.
pub(crate) const LEGACY_SEQ: u8 = b'S';
pub(crate) const CHUNK: u8 = b'Q';
pub(crate) const STALE: u8 = b'X';
/// Formats 1-6's whole attachment values (`A` + digest → bytes). Format 7 still reads them
/// (as one chunk) and never writes them.
pub(crate) const ATT: u8 = b'A';
/// An attachment's head: `H` + digest → [`crate::keys::AttHead`].
pub(crate) const ATT_HEAD: u8 = b'H';
/// An attachment chunk: `C` + blob number (u64 big-endian) + chunk index (u32 big-endian).
pub(crate) const ATT_CHUNK: u8 = b'C';
/// A staged attachment's blob not yet committed: `P` + blob number (u64 big-endian).
pub(crate) const ATT_PENDING: u8 = b'P';
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
/// A body dictionary: `Z` + its id (u64 big-endian) → the zstd dictionary (`bodies/`).
pub(crate) const BODY_DICT: u8 = b'Z';

/// `Z` + dictionary id.
pub(crate) fn body_dict_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = BODY_DICT;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

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

/// `H` + digest: the head of a chunked attachment.
pub(crate) fn att_head_key(digest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + digest.len());
    k.push(ATT_HEAD);
    k.extend_from_slice(digest.as_bytes());
    k
}

/// `C` + blob + chunk index, both big-endian, so a blob's chunks sort in order after
/// [`att_chunk_prefix`].
pub(crate) fn att_chunk_key(blob: u64, index: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = ATT_CHUNK;
    k[1..9].copy_from_slice(&blob.to_be_bytes());
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

/// `C` + blob: the prefix of all of one blob's chunks.
pub(crate) fn att_chunk_prefix(blob: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ATT_CHUNK;
    k[1..].copy_from_slice(&blob.to_be_bytes());
    k
}

/// `P` + blob: the blob is being staged and no document refers to it yet.
pub(crate) fn att_pending_key(blob: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ATT_PENDING;
    k[1..].copy_from_slice(&blob.to_be_bytes());
    k
}

/// The blob number of a `C` or `P` key.
pub(crate) fn blob_of_key(key: &[u8]) -> crate::Result<u64> {
    key.get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .filter(|_| matches!(key.first(), Some(&ATT_CHUNK) | Some(&ATT_PENDING)))
        .map(u64::from_be_bytes)
        .ok_or_else(|| crate::Error::corrupt(format!("bad attachment chunk key {key:?}")))
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
#[cfg(test)]
mod tests {
    use super::*;

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
}
