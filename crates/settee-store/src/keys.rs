//! The key layout of the store's single sled tree, and the encoding of document records.
//! `docs/storage-format.md` describes the same bytes; change both together (and bump
//! [`FORMAT_VERSION`]).
//!
//! Everything lives in one sled tree so that one document write is one `sled::Batch`,
//! which sled applies atomically (all of it or none of it survives a crash, and readers
//! see all of it or none of it). Each record kind has a one-byte prefix:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `M` | `M` + name | meta values (format version, uuid, counters) |
//! | `D` | `D` + id | [`DocRecord`]: seq, deleted flag, winner, rev tree |
//! | `R` | `R` + id + `0x00` + rev | the revision's body (JSON) |
//! | `S` | `S` + seq (u64 big-endian) | the id of the document last written at seq |
//! | `A` | `A` + digest | attachment bytes |
//! | `L` | `L` + id without `_local/` | local doc (JSON, with `_rev`) |

use settee_revtree::{Rev, RevTree};

/// The storage format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The sled tree that holds every record.
pub(crate) const TREE_NAME: &[u8] = b"settee";

pub(crate) const META_FORMAT: &[u8] = b"Mformat";
pub(crate) const META_UUID: &[u8] = b"Muuid";
/// `update_seq`, `doc_count`, `doc_del_count`, `purge_seq`: 4 × u64 big-endian. One record,
/// so a write adds one meta update to its batch and readers see the four agree.
pub(crate) const META_COUNTERS: &[u8] = b"Mcounters";

pub(crate) const DOC: u8 = b'D';
pub(crate) const REV: u8 = b'R';
pub(crate) const SEQ: u8 = b'S';
pub(crate) const ATT: u8 = b'A';
pub(crate) const LOCAL: u8 = b'L';

pub(crate) fn doc_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(DOC);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `R` + id + `0x00` + rev. Unambiguous even if an id contains `0x00`: a rev never does
/// (revs are visible ASCII), so the last `0x00` separates them.
pub(crate) fn rev_key(id: &str, rev: &Rev) -> Vec<u8> {
    let rev = rev.to_string();
    let mut k = Vec::with_capacity(2 + id.len() + rev.len());
    k.push(REV);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(rev.as_bytes());
    k
}

pub(crate) fn seq_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SEQ;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn seq_from_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    (key.len() == 9 && key[0] == SEQ).then(|| u64::from_be_bytes(bytes))
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

pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> crate::Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        crate::Error::corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A document's record: where it is in the by-seq index, its winner, and its rev tree.
///
/// Encoded as: version byte `1`, flags byte (bit 0 = winner deleted), seq (u64 big-endian),
/// winner length (u16 big-endian) and winner text, then the rev tree as JSON (the flat
/// encoding of `settee_revtree`). The header comes first so `_all_docs` and `_changes` can
/// read the winner without decoding the tree.
#[derive(Debug, Clone)]
pub(crate) struct DocRecord {
    pub(crate) seq: u64,
    pub(crate) tree: RevTree,
}

/// The header of a [`DocRecord`].
#[derive(Debug, Clone)]
pub(crate) struct DocHeader {
    pub(crate) seq: u64,
    pub(crate) deleted: bool,
    pub(crate) winner: Rev,
}

const HEADER_LEN: usize = 1 + 1 + 8 + 2;

impl DocRecord {
    pub(crate) fn encode(&self) -> crate::Result<Vec<u8>> {
        let leaf = self.tree.winning_leaf();
        let winner = leaf.rev.to_string();
        let wlen = u16::try_from(winner.len())
            .map_err(|_| crate::Error::bad_request("revision id is too long"))?;
        let tree = serde_json::to_vec(&self.tree)
            .map_err(|e| crate::Error::corrupt(format!("encoding rev tree: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + winner.len() + tree.len());
        out.push(1);
        out.push(u8::from(leaf.deleted));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&wlen.to_be_bytes());
        out.extend_from_slice(winner.as_bytes());
        out.extend_from_slice(&tree);
        Ok(out)
    }

    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<DocRecord> {
        let (header, rest) = DocHeader::split(id, bytes)?;
        let tree: RevTree = serde_json::from_slice(rest)
            .map_err(|e| crate::Error::corrupt(format!("rev tree of {id:?}: {e}")))?;
        Ok(DocRecord {
            seq: header.seq,
            tree,
        })
    }
}

impl DocHeader {
    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<DocHeader> {
        Ok(DocHeader::split(id, bytes)?.0)
    }

    fn split<'a>(id: &str, bytes: &'a [u8]) -> crate::Result<(DocHeader, &'a [u8])> {
        let bad = |what: &str| crate::Error::corrupt(format!("record of {id:?}: {what}"));
        if bytes.len() < HEADER_LEN || bytes[0] != 1 || bytes[1] > 1 {
            return Err(bad("bad header"));
        }
        let seq = decode_u64(&bytes[2..10], "doc seq")?;
        let wlen = usize::from(u16::from_be_bytes([bytes[10], bytes[11]]));
        let wend = HEADER_LEN + wlen;
        let winner = bytes
            .get(HEADER_LEN..wend)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| bad("bad winner"))?;
        let winner: Rev = winner.parse().map_err(|_| bad("bad winner rev"))?;
        Ok((
            DocHeader {
                seq,
                deleted: bytes[1] == 1,
                winner,
            },
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
        let rec = DocRecord { seq: 42, tree };
        let bytes = rec.encode().unwrap();
        let h = DocHeader::decode("x", &bytes).unwrap();
        assert_eq!(h.seq, 42);
        assert!(!h.deleted);
        assert_eq!(h.winner.to_string(), "2-b");
        let back = DocRecord::decode("x", &bytes).unwrap();
        assert_eq!(back.tree, rec.tree);
        assert!(DocRecord::decode("x", &bytes[..5]).is_err());
    }

    #[test]
    fn seq_keys_sort_numerically() {
        assert!(seq_key(2) < seq_key(10));
        assert!(seq_key(255) < seq_key(256));
        assert_eq!(seq_from_key(&seq_key(77)), Some(77));
        assert_eq!(seq_from_key(b"Sx"), None);
    }
}
