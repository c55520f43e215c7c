//! [`DocRecord`]: a document's `D` record (seq, flags, winner, rev tree, the winner's body),
//! and [`DocHeader`], the part of it that reads without decoding the tree. How a body is
//! compressed is `bodies/`'s; where its frame sits is this file's.

use std::borrow::Cow;

use settee_revtree::{Rev, RevTree};

use super::fields::{decode_u64, long_len, read_u32};
use crate::bodies::{self, Dict, Packed};

/// A document's record: where it is in the by-seq index, its winner, its rev tree and the
/// winner's body.
///
/// Encoded as: version byte `3`, flags byte (bit 0 = winner deleted, bit 1 = the document's
/// by-seq entry is alone in its chunk, bit 2 = the body is a zstd frame), seq (u64
/// big-endian), winner length (u16 big-endian; 0 then a u32 big-endian length for a text of
/// 64 KiB or more) and winner text, rev tree length (u32 big-endian) and the rev tree as
/// JSON (the flat encoding of `settee_revtree`), then the winner's body to the end: its
/// JSON, or with bit 2 the id of the dictionary it was compressed with (u64 big-endian, 0
/// for none) and the zstd frame. The header comes first so `_all_docs` and `_changes` can
/// read the winner without decoding the rest. Version `2` (format 8) is the same without
/// bit 2, and reads as it is.
#[derive(Debug, Clone)]
pub(crate) struct DocRecord {
    pub(crate) seq: u64,
    pub(crate) tree: RevTree,
    /// The winning revision's body, JSON.
    pub(crate) body: Vec<u8>,
    /// The by-seq entry at `seq` is the only entry of its chunk (so superseding it deletes
    /// the chunk's key).
    pub(crate) solo: bool,
    /// `body` as the record stores it compressed, when it does: encoding writes it as it
    /// is, so a record rewritten with the same body is not compressed again. Whoever sets
    /// `body` sets this (to `None`, or to the packed form of the same body).
    pub(crate) packed: Option<Packed>,
}

/// The header of a [`DocRecord`].
#[derive(Debug, Clone)]
pub(crate) struct DocHeader {
    pub(crate) seq: u64,
    pub(crate) deleted: bool,
    pub(crate) winner: Rev,
}

const HEADER_LEN: usize = 1 + 1 + 8 + 2;

const RECORD_VERSION: u8 = 3;

/// Format 8's records: no compressed bodies.
const RECORD_VERSION_2: u8 = 2;

const FLAG_DELETED: u8 = 1;

const FLAG_SOLO: u8 = 2;

const FLAG_PACKED: u8 = 4;

/// A record's packed body part (after the tree): the dictionary id and the frame; `None`
/// for a raw body.
fn split_body<'a>(
    id: &str,
    packed: bool,
    rest: &'a [u8],
) -> crate::Result<Option<(u64, &'a [u8])>> {
    if !packed {
        return Ok(None);
    }
    let bad = || crate::Error::corrupt(format!("record of {id:?}: bad body dictionary"));
    let dict = decode_u64(rest.get(..8).ok_or_else(bad)?, "body dictionary")?;
    Ok(Some((dict, &rest[8..])))
}

/// The record versions this build reads: format 9's, and format 8's as they are.
const CURRENT: &[u8] = &[RECORD_VERSION, RECORD_VERSION_2];

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
        if self.packed.is_some() {
            flags |= FLAG_PACKED;
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
        match &self.packed {
            Some(p) => {
                out.extend_from_slice(&p.dict.to_be_bytes());
                out.extend_from_slice(&p.frame);
            }
            None => out.extend_from_slice(&self.body),
        }
        Ok(out)
    }

    /// The record version [`DocRecord::encode`] writes.
    pub(crate) const VERSION: u8 = RECORD_VERSION;

    /// Compresses the body for storing (with `dict`, the store's current dictionary), unless
    /// it is stored compressed already or is not worth it.
    pub(crate) fn pack(&mut self, dict: Option<&Dict>) {
        if self.packed.is_none() {
            self.packed = bodies::pack(&self.body, dict);
        }
    }

    /// A record of format 8 or 9, its body decompressed.
    pub(crate) fn decode(id: &str, bytes: &[u8]) -> crate::Result<DocRecord> {
        let (header, flags, rest) = DocHeader::split(id, bytes, CURRENT)?;
        let (tree, rest) = split_tree(id, rest)?;
        let (body, packed) = match split_body(id, flags & FLAG_PACKED != 0, rest)? {
            Some((dict, frame)) => (
                bodies::unpack(id, dict, frame)?,
                Some(Packed {
                    dict,
                    frame: frame.to_vec(),
                }),
            ),
            None => (rest.to_vec(), None),
        };
        Ok(DocRecord {
            seq: header.seq,
            tree,
            body,
            solo: flags & FLAG_SOLO != 0,
            packed,
        })
    }

    /// The seq and tree of a record, without copying its body.
    pub(crate) fn decode_tree(id: &str, bytes: &[u8]) -> crate::Result<(u64, RevTree)> {
        let (header, _, rest) = DocHeader::split(id, bytes, CURRENT)?;
        let (tree, _) = split_tree(id, rest)?;
        Ok((header.seq, tree))
    }

    /// Decodes a format-1 record (no tree length, no body: the winner's body is under `R`).
    pub(crate) fn decode_v1(id: &str, bytes: &[u8]) -> crate::Result<(u64, RevTree)> {
        let (header, _, rest) = DocHeader::split(id, bytes, &[1])?;
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
        Ok(DocHeader::split(id, bytes, CURRENT)?.0)
    }

    /// The header and the winner's body of a record, without decoding the rev tree (what
    /// reading an index's documents needs). A raw body is borrowed from `bytes`.
    pub(crate) fn decode_with_body<'a>(
        id: &str,
        bytes: &'a [u8],
    ) -> crate::Result<(DocHeader, Cow<'a, [u8]>)> {
        let (header, flags, rest) = DocHeader::split(id, bytes, CURRENT)?;
        let bad = || crate::Error::corrupt(format!("record of {id:?}: bad tree length"));
        let tlen = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(bad)?;
        let body = rest.get(4 + tlen..).ok_or_else(bad)?;
        match split_body(id, flags & FLAG_PACKED != 0, body)? {
            Some((dict, frame)) => Ok((header, Cow::Owned(bodies::unpack(id, dict, frame)?))),
            None => Ok((header, Cow::Borrowed(body))),
        }
    }

    /// The header, the flags byte and the rest of a record of one of `versions`.
    fn split<'a>(
        id: &str,
        bytes: &'a [u8],
        versions: &[u8],
    ) -> crate::Result<(DocHeader, u8, &'a [u8])> {
        let bad = |what: &str| crate::Error::corrupt(format!("record of {id:?}: {what}"));
        if bytes.len() < HEADER_LEN || !versions.contains(&bytes[0]) {
            return Err(bad("bad header"));
        }
        let known = match bytes[0] {
            RECORD_VERSION => FLAG_DELETED | FLAG_SOLO | FLAG_PACKED,
            _ => FLAG_DELETED | FLAG_SOLO,
        };
        if bytes[1] & !known != 0 {
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
            bytes[1],
            &bytes[wend..],
        ))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{chunk_key, decode_chunk, encode_chunk, SeqEntry};
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
            packed: None,
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
            packed: None,
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
}
