//! [`Unsynced`]: a `U` entry, a document's leaves a remote is not known to hold and its
//! standing rejection (or a marker: held, inside a pending interval).

use settee_revtree::Rev;

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
/// (see `sync_state/`).
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{split_unsynced_key, unsynced_key};

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
