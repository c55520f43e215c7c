//! The u16-to-u32 length conversion of the upgrade from formats 4 and 5 (issue 21): the
//! sync state's `U` entries and the index blocks (`I`) as b5d6e81 changed them. Which keys to
//! convert and when the format key changes is `migrate.rs`'s decision.
//!
//! Format 4 wrote every `U` entry with u16 lengths. Format 5 did too until b5d6e81 switched
//! the entries and the index blocks to u32 lengths without a version bump, so a format-5
//! store can hold either form, entry by entry (a store written in the u16 window and then by
//! a later format-5 build has both). The u16 form of a `U` entry (keys/unsynced.rs has the
//! u32 one):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version `1` |
//! | 2 | leaf count n (u16 big-endian), at least 1 |
//! | n × (2 + len) | each leaf's rev text, u16 length then text, ascending |
//! | 1 | `0` no rejection, `1` a rejection follows |
//! | 2 + len, 2 + len, 4 + len | the refused rev and the error name (u16 lengths), the reason (u32 length) |
//!
//! **Why a `U` entry never reads both ways** (so deciding by which form parses is exact):
//! suppose bytes `b` parse in both. The u16 reading has n ≥ 1 leaves, so `b[5]` is the first
//! byte of a rev text, an ASCII digit (`Rev` parses only `<digits>-<hash>`), at least `0x30`.
//! The u32 reading's leaf count is `b[1..5]`, at least `n << 16` ≥ 65,536, so `b[5..9]` is its
//! first leaf's length, at least `0x3000_0000`, and that many bytes follow: `b` is longer
//! than 768 MiB. No store holds such an entry (its longest field is a server's refusal
//! reason); should one exist, the open fails and names it ([`Lengths::Either`]).
//!
//! Index blocks hold bytes a document chooses (ids, indexed values), so no such argument
//! covers them: a u16 block reads as u32 only if it is 65,540 bytes or more, and a u32 block
//! as u16 only if its first entry is 64 KiB or more, but past those sizes both readings can
//! hold. A block that reads exactly one way (whole, non-empty entries, ascending, none below
//! the block's bound) is converted; if any block of an index reads both ways or neither, that
//! index is dropped and registered again unbuilt, and the first `find` that needs it builds
//! it from the documents: an index is derived data, so a rebuild is exact where a guess is not.

use crate::index::catalog::{new_entry, CatalogEntry};
use crate::index_blocks;
use crate::keys::{self, StoredRejection, Unsynced};
use crate::{Error, Result};

/// Which length forms the `U` entries of the store being upgraded may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lengths {
    /// Format 4 (and 2, 3, which have no entries): every entry is in the u16 form.
    U16,
    /// Format 5: each entry is in the form it alone parses in.
    Either,
}

/// Adds to `batch` the u32 form of every `U` entry in the u16 form.
///
/// # Errors
/// [`Error::Corrupt`] naming the key of an entry that parses in neither form (or, with
/// [`Lengths::Either`], in both); the batch is then not applied by the caller, so the store
/// keeps its old format.
pub(crate) fn widen_unsynced(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    lengths: Lengths,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<usize> {
    let mut converted = 0;
    for item in tree.scan_prefix([keys::UNSYNCED]) {
        let (k, v) = item.map_err(storage)?;
        let name = || match keys::split_unsynced_key(&k) {
            Ok((remote, id)) => format!("sync state entry of {id:?} with remote {remote}"),
            Err(_) => format!("sync state entry {:?}", &k[..]),
        };
        let short = decode_u16(&v);
        let long = match lengths {
            Lengths::U16 => None,
            Lengths::Either => Unsynced::decode("", &v).ok(),
        };
        match (short, long) {
            (Some(entry), None) => {
                batch.insert(&k, entry.encode()?);
                converted += 1;
            }
            (None, Some(_)) => {}
            (Some(_), Some(_)) => {
                return Err(Error::corrupt(format!(
                    "{} reads both with u16 and with u32 lengths; the upgrade cannot tell which",
                    name()
                )))
            }
            (None, None) => {
                let forms = match lengths {
                    Lengths::U16 => "with u16 lengths",
                    Lengths::Either => "with u16 or u32 lengths",
                };
                return Err(Error::corrupt(format!(
                    "{} does not read {forms}; the upgrade stopped before changing anything",
                    name()
                )));
            }
        }
    }
    Ok(converted)
}

/// Adds to `batch` the u32 form of every index block in the u16 form; an index with a block
/// that reads both ways or neither is dropped and registered again unbuilt instead (see the
/// module docs). Returns the numbers of the indexes dropped so.
///
/// # Errors
/// [`Error::Corrupt`] for an `N` record that does not decode, as opening the store would.
pub(crate) fn widen_index_blocks(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<Vec<u32>> {
    let mut rebuilt = Vec::new();
    for item in tree.scan_prefix([keys::INDEX_DEF]) {
        let (k, v) = item.map_err(storage)?;
        let entry = CatalogEntry::decode(&k, &v)?;
        let prefix = keys::index_prefix(entry.number);
        let mut blocks = Vec::new();
        for item in tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(storage)?;
            blocks.push((k, v));
        }
        match read_index(&blocks, prefix.len()) {
            Ok(widened) => {
                for (key, entries) in widened {
                    batch.insert(key, index_blocks::encode(&entries)?);
                }
            }
            Err(bad) => {
                tracing::warn!(
                    index = %format!("{}/{}", entry.def.ddoc, entry.def.name),
                    block = ?bad,
                    "an index block reads with both or neither of u16 and u32 lengths: \
                     the index is dropped and built again by the first find that needs it"
                );
                for (key, _) in &blocks {
                    batch.remove(key);
                }
                batch.insert(k, new_entry(entry.number, entry.def));
                rebuilt.push(entry.number);
            }
        }
    }
    Ok(rebuilt)
}

/// One index's blocks (sled key, value; in key order) read block by block: the blocks in the
/// u16 form with their entries (to write again in the u32 form), or an error when a block reads
/// both ways or neither, or the blocks together break the order (each block's entries below
/// the next block's bound): then the key of the block where reading stopped.
fn read_index(
    blocks: &[(sled::IVec, sled::IVec)],
    prefix_len: usize,
) -> std::result::Result<Vec<Block>, sled::IVec> {
    let mut widened = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for (key, value) in blocks {
        let lower = key.get(prefix_len..).ok_or_else(|| key.clone())?;
        let short = read_block(lower, value, 2);
        let long = read_block(lower, value, 4);
        let (entries, is_short) = match (short, long) {
            (Some(e), None) => (e, true),
            (None, Some(e)) => (e, false),
            _ => return Err(key.clone()),
        };
        if last.as_deref().is_some_and(|l| l >= lower) {
            return Err(key.clone());
        }
        last = entries.last().cloned();
        if is_short {
            widened.push((key.to_vec(), entries));
        }
    }
    Ok(widened)
}

/// A block's sled key and its entries.
type Block = (Vec<u8>, Vec<Vec<u8>>);

/// A block's entries read with lengths of `width` bytes, if they are exactly a block: every
/// byte used, at least one entry, none empty (an entry holds a collation-encoded key, at
/// least a type byte), strictly ascending, the first not below the block's bound `lower`.
fn read_block(lower: &[u8], bytes: &[u8], width: usize) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader { bytes, at: 0 };
    let mut entries: Vec<Vec<u8>> = Vec::new();
    while r.at < bytes.len() {
        let e = r.bytes(width)?;
        if e.is_empty() || entries.last().is_some_and(|l| l.as_slice() >= e) {
            return None;
        }
        entries.push(e.to_vec());
    }
    (entries.first()?.as_slice() >= lower).then_some(entries)
}

/// A `U` entry in the u16 form; `None` unless `bytes` are exactly one, consistent entry
/// (every byte used, at least one leaf, leaves ascending).
fn decode_u16(bytes: &[u8]) -> Option<Unsynced> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(1)? != [1] {
        return None;
    }
    let n = r.len(2)?;
    let mut leaves = Vec::new();
    for _ in 0..n {
        leaves.push(r.text(2)?.parse().ok()?);
    }
    let rejection = match r.take(1)? {
        [0] => None,
        [1] => Some(StoredRejection {
            rev: r.text(2)?.parse().ok()?,
            error: r.text(2)?.to_owned(),
            reason: r.text(4)?.to_owned(),
        }),
        _ => return None,
    };
    let consistent = !leaves.is_empty() && leaves.windows(2).all(|w| w[0] < w[1]);
    (consistent && r.at == bytes.len()).then_some(Unsynced { leaves, rejection })
}

/// A cursor over length-prefixed values.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let b = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    /// A big-endian length of `width` bytes (2 or 4).
    fn len(&mut self, width: usize) -> Option<usize> {
        match *self.take(width)? {
            [a, b] => Some(usize::from(u16::from_be_bytes([a, b]))),
            [a, b, c, d] => usize::try_from(u32::from_be_bytes([a, b, c, d])).ok(),
            _ => None,
        }
    }

    /// A length of `width` bytes, then that many bytes.
    fn bytes(&mut self, width: usize) -> Option<&'b [u8]> {
        let len = self.len(width)?;
        self.take(len)
    }

    fn text(&mut self, width: usize) -> Option<&'b str> {
        std::str::from_utf8(self.bytes(width)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The u16 form as formats 4 and 5 (before b5d6e81) wrote it.
    fn encode_u16(e: &Unsynced) -> Vec<u8> {
        let mut out = vec![1];
        let put = |out: &mut Vec<u8>, t: &str| {
            out.extend_from_slice(&u16::try_from(t.len()).unwrap().to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        };
        out.extend_from_slice(&u16::try_from(e.leaves.len()).unwrap().to_be_bytes());
        for rev in &e.leaves {
            put(&mut out, &rev.to_string());
        }
        match &e.rejection {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                put(&mut out, &r.rev.to_string());
                put(&mut out, &r.error);
                out.extend_from_slice(&u32::try_from(r.reason.len()).unwrap().to_be_bytes());
                out.extend_from_slice(r.reason.as_bytes());
            }
        }
        out
    }

    fn random_entry(rng: &mut StdRng) -> Unsynced {
        let text = |rng: &mut StdRng, max: usize| -> String {
            let len = rng.gen_range(0..max);
            (0..len)
                .map(|_| char::from(rng.gen_range(0u8..128)))
                .collect()
        };
        let mut leaves: Vec<settee_revtree::Rev> = (0..rng.gen_range(1..5))
            .map(|_| format!("{}-{}", rng.gen_range(0..300), text(rng, 40) + "h"))
            .map(|t| t.parse().unwrap())
            .collect();
        leaves.sort();
        leaves.dedup();
        let rejection = rng.gen_bool(0.5).then(|| StoredRejection {
            rev: leaves[0].clone(),
            error: text(rng, 20),
            reason: text(rng, 300),
        });
        Unsynced { leaves, rejection }
    }

    /// Each form reads back as itself and never as the other (the module docs prove it for
    /// every entry under 768 MiB; this samples it, long texts included).
    #[test]
    fn a_sync_state_entry_reads_in_exactly_its_own_form() {
        let mut rng = StdRng::seed_from_u64(21);
        for _ in 0..2000 {
            let e = random_entry(&mut rng);
            let short = encode_u16(&e);
            let long = e.encode().unwrap();
            assert_eq!(decode_u16(&short).as_ref(), Some(&e));
            assert!(Unsynced::decode("x", &short).is_err(), "{e:?}");
            assert_eq!(decode_u16(&long), None, "{e:?}");
        }
        // A long rev (format 3's long forms) and an empty error name.
        let e = Unsynced {
            leaves: vec![format!("2-{}", "l".repeat(300)).parse().unwrap()],
            rejection: Some(StoredRejection {
                rev: "1-a".parse().unwrap(),
                error: String::new(),
                reason: "r".repeat(70_000),
            }),
        };
        assert_eq!(decode_u16(&encode_u16(&e)).as_ref(), Some(&e));
        assert_eq!(decode_u16(&e.encode().unwrap()), None);
        // Damage: truncated, extended, no leaves, leaves out of order.
        let short = encode_u16(&e);
        assert_eq!(decode_u16(&short[..short.len() - 1]), None);
        assert_eq!(decode_u16(&[short.clone(), vec![0]].concat()), None);
        assert_eq!(decode_u16(&[1, 0, 0, 0]), None);
        let unsorted = Unsynced {
            leaves: vec!["2-b".parse().unwrap(), "1-a".parse().unwrap()],
            rejection: None,
        };
        assert_eq!(decode_u16(&encode_u16(&unsorted)), None);
    }

    /// Blocks below 64 KiB read in exactly their own form: a u32 block's first length starts
    /// with two zero bytes (an empty entry in the u16 reading, which no index holds), and a
    /// u16 block's first length read as a u32 is 64 KiB or more.
    #[test]
    fn a_small_index_block_reads_in_exactly_its_own_form() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..2000 {
            let mut entries: Vec<Vec<u8>> = (0..rng.gen_range(1..20))
                .map(|_| (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect())
                .collect();
            entries.sort();
            entries.dedup();
            let lower = if rng.gen_bool(0.5) {
                Vec::new()
            } else {
                entries[0].clone()
            };
            let long = index_blocks::encode(&entries).unwrap();
            let short: Vec<u8> = entries
                .iter()
                .flat_map(|e| {
                    let len = u16::try_from(e.len()).unwrap().to_be_bytes();
                    len.into_iter().chain(e.iter().copied())
                })
                .collect();
            assert_eq!(read_block(&lower, &long, 4).as_ref(), Some(&entries));
            assert_eq!(read_block(&lower, &long, 2), None, "{entries:?}");
            assert_eq!(read_block(&lower, &short, 2).as_ref(), Some(&entries));
            assert_eq!(read_block(&lower, &short, 4), None, "{entries:?}");
        }
    }
}
