//! The by-seq index's chunks: [`SeqEntry`] (seq, id, deleted flag, leaves), and a chunk's
//! encoding, one per write call under `Q` + its first seq.

use settee_revtree::{Rev, RevTree};

use super::fields::{decode_u64, long_len, read_u32};
use super::layout::{chunk_key, CHUNK};

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
#[cfg(test)]
mod tests {
    use super::*;

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
}
