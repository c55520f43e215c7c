//! The registered remotes: each one's number, name, meta, counts and pending intervals, in
//! memory ([`Registry`], which the core holds and changes only under the writer lock) and on
//! disk (the `Mremotes` and `Msync` records). Knows nothing of `Inner`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys;
use crate::{Error, Result};

/// How many documents are not known to be on a remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Documents with a leaf the remote is not known to hold (rejected ones included).
    pub unsynced: u64,
    /// Of those, documents the remote refused.
    pub rejected: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRemote {
    pub(super) n: u32,
    pub(super) name: String,
    #[serde(default)]
    pub(super) meta: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Pending::is_empty")]
    pub(super) pending: Pending,
}

/// The registered remotes, in memory. Changed only under the writer lock (registration, and
/// the counts after each batch that changes them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    pub(super) remotes: Vec<RemoteReg>,
    /// Other names of remotes, address → identity (`Maliases`, see `aliases.rs`).
    pub(super) aliases: super::aliases::Aliases,
}

#[derive(Debug, Clone)]
pub(super) struct RemoteReg {
    pub(super) num: u32,
    pub(super) name: String,
    pub(super) meta: Map<String, Value>,
    pub(super) counts: SyncCounts,
    /// The by-seq spans whose documents the remote is known to hold nothing of (unless
    /// their `U` key says otherwise).
    pub(super) pending: Pending,
}

impl Registry {
    /// Reads `Mremotes`, `Msync` and `Maliases`.
    pub(crate) fn load(
        tree: &sled::Tree,
        storage: &dyn Fn(sled::Error) -> Error,
    ) -> Result<Registry> {
        let remotes = tree.get(keys::META_REMOTES).map_err(storage)?;
        let counts = tree.get(keys::META_SYNC).map_err(storage)?;
        let aliases = tree.get(keys::META_ALIASES).map_err(storage)?;
        let mut reg = Registry::decode(remotes.as_deref(), counts.as_deref())?;
        reg.aliases = super::aliases::decode_aliases(aliases.as_deref())?;
        Ok(reg)
    }

    /// The registry that the `Mremotes` and `Msync` records (when present) hold.
    pub(crate) fn decode(remotes: Option<&[u8]>, counts: Option<&[u8]>) -> Result<Registry> {
        let stored: Vec<StoredRemote> = match remotes {
            Some(v) => serde_json::from_slice(v)
                .map_err(|e| Error::corrupt(format!("the remotes record: {e}")))?,
            None => Vec::new(),
        };
        let counts = match counts {
            Some(v) => decode_counts(v)?,
            None => Vec::new(),
        };
        let mut remotes = Vec::with_capacity(stored.len());
        for s in &stored {
            // Numbers count up from 1 and are never reused: the next one must exist, and
            // every stored interval must be sorted, disjoint and non-empty (`verify`
            // checks their end against the update seq).
            if s.n == u32::MAX || !s.pending.is_valid(u64::MAX) {
                return Err(Error::corrupt(format!(
                    "the remotes record: remote {:?} has a bad number or bad pending intervals",
                    s.name
                )));
            }
        }
        for s in stored {
            let c = counts
                .iter()
                .find(|(n, _)| *n == s.n)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            remotes.push(RemoteReg {
                num: s.n,
                name: s.name,
                meta: s.meta,
                counts: c,
                pending: s.pending,
            });
        }
        let mut nums: Vec<u32> = remotes.iter().map(|r| r.num).collect();
        nums.sort_unstable();
        nums.dedup();
        let mut names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if nums.len() != remotes.len() || names.len() != remotes.len() {
            return Err(Error::corrupt("the remotes record names a remote twice"));
        }
        if counts.len() != remotes.len() || counts.iter().any(|(n, _)| !nums.contains(n)) {
            return Err(Error::corrupt(
                "the sync counters do not match the registered remotes",
            ));
        }
        Ok(Registry {
            remotes,
            aliases: Default::default(),
        })
    }

    /// Asks every question a registry read from disk is asked (the fuzz targets' check
    /// that a decoded registry is usable).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn exercise(&self) {
        for r in &self.remotes {
            let _ = r.pending.smallest();
            let _ = r.pending.contains(r.counts.unsynced);
            let mut p = r.pending.clone();
            p.remove(r.counts.rejected, r.counts.unsynced);
        }
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&RemoteReg> {
        self.remotes.iter().find(|r| r.name == name)
    }

    pub(super) fn encode_remotes(&self) -> Result<Vec<u8>> {
        let stored: Vec<StoredRemote> = self
            .remotes
            .iter()
            .map(|r| StoredRemote {
                n: r.num,
                name: r.name.clone(),
                meta: r.meta.clone(),
                pending: r.pending.clone(),
            })
            .collect();
        serde_json::to_vec(&stored).map_err(|e| Error::corrupt(format!("encoding remotes: {e}")))
    }

    pub(super) fn encode_counts(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 * self.remotes.len());
        for r in &self.remotes {
            out.extend_from_slice(&r.num.to_be_bytes());
            out.extend_from_slice(&r.counts.unsynced.to_be_bytes());
            out.extend_from_slice(&r.counts.rejected.to_be_bytes());
        }
        out
    }

    /// Takes in what a call changed (after its batch is applied).
    pub(crate) fn apply(&mut self, updates: &[RemoteUpdate]) {
        for u in updates {
            if let Some(r) = self.remotes.iter_mut().find(|r| r.num == u.num) {
                r.counts = u.counts;
                if let Some(p) = &u.pending {
                    r.pending = p.clone();
                }
            }
        }
    }
}

/// What one call changed for a remote, for the registry once its batch is applied.
pub(crate) struct RemoteUpdate {
    pub(super) num: u32,
    pub(super) counts: SyncCounts,
    pub(super) pending: Option<Pending>,
}

/// `Msync` → (number, counts) per remote.
pub(super) fn decode_counts(bytes: &[u8]) -> Result<Vec<(u32, SyncCounts)>> {
    if bytes.len() % 20 != 0 {
        return Err(Error::corrupt(format!(
            "the sync counters record has {} bytes, not a multiple of 20",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(20)
        .map(|c| {
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[i..i + 8]);
                u64::from_be_bytes(b)
            };
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                SyncCounts {
                    unsynced: u64_at(4),
                    rejected: u64_at(12),
                },
            )
        })
        .collect())
}

/// The by-seq spans (inclusive, sorted, disjoint) whose documents a remote holds nothing
/// of, unless their `U` key says otherwise. Registering a remote makes everything up to
/// the store's update seq pending in one write; pushes take the spans they confirm out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Pending(pub(super) Vec<(u64, u64)>);

impl Pending {
    pub(crate) fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < seq);
        self.0.get(i).is_some_and(|&(a, _)| a <= seq)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes `first..=last` out.
    pub(super) fn remove(&mut self, first: u64, last: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < first || a > last {
                out.push((a, b));
                continue;
            }
            if a < first {
                out.push((a, first - 1));
            }
            if b > last {
                out.push((last + 1, b));
            }
        }
        self.0 = out;
    }

    /// The interval with the fewest seqs.
    pub(super) fn smallest(&self) -> Option<(u64, u64)> {
        self.0.iter().copied().min_by_key(|&(a, b)| b - a)
    }

    /// Whether the intervals are sorted, disjoint, non-empty and end by `max`.
    pub(super) fn is_valid(&self, max: u64) -> bool {
        self.0.iter().all(|&(a, b)| 1 <= a && a <= b && b <= max)
            && self.0.windows(2).all(|w| w[0].1 < w[1].0)
    }

    pub(super) fn intervals(&self) -> &[(u64, u64)] {
        &self.0
    }
}

/// Remote `name`'s pending intervals as the stored remotes record (`bytes`) has them.
pub(super) fn stored_pending(bytes: Option<&[u8]>, name: &str) -> Result<Pending> {
    let Some(bytes) = bytes else {
        return Ok(Pending::default());
    };
    let stored: Vec<StoredRemote> = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("the remotes record: {e}")))?;
    Ok(stored
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.pending)
        .unwrap_or_default())
}

/// Entries removed per batch by `clear_unregistered`.
pub(super) const REGISTER_BATCH: u64 = 1000;

/// The number the next registered remote gets (numbers are never reused).
pub(crate) fn next_number(reg: &Registry) -> Result<u32> {
    // The remotes record is read from disk: its largest number may be anything
    // `Registry::decode` accepts, so the addition is checked.
    let max = reg.remotes.iter().map(|r| r.num).max().unwrap_or(0);
    max.checked_add(1)
        .filter(|&n| n < u32::MAX)
        .ok_or_else(|| Error::corrupt("the remotes record: no remote number is left"))
}

/// Removes the entries of the number the next remote would get. Stores written before
/// format 6 registered a remote by writing an entry per document in several batches, the
/// registration itself in the last: one cut short by a crash left entries of a number no
/// remote has. One seek when there are none. Runs when a store opens and before a
/// registration.
pub(crate) fn clear_unregistered(
    tree: &sled::Tree,
    reg: &Registry,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<()> {
    let prefix = keys::unsynced_prefix(next_number(reg)?);
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for item in tree.scan_prefix(prefix).take(REGISTER_BATCH as usize) {
            let (k, _) = item.map_err(storage)?;
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tracing::info!(
            removed = n,
            "removing the entries of a registration cut short"
        );
        tree.apply_batch(batch).map_err(storage)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20 (found by reading the decoders for the fuzz target): a remotes record read
    /// from a damaged disk with the number u32::MAX made the next number overflow when the
    /// store opened, and one with an interval that ends before it starts made the
    /// interval arithmetic overflow. Both are corrupt records now.
    #[test]
    pub(super) fn issue_20_damaged_remotes_record_is_corrupt_not_an_overflow() {
        let counts = |n: u32| {
            let mut c = n.to_be_bytes().to_vec();
            c.extend_from_slice(&[0; 16]);
            c
        };
        let decode =
            |remotes: &str, n: u32| Registry::decode(Some(remotes.as_bytes()), Some(&counts(n)));
        let max = format!(r#"[{{"n":{},"name":"r"}}]"#, u32::MAX);
        assert!(matches!(decode(&max, u32::MAX), Err(Error::Corrupt { .. })));
        let backwards = r#"[{"n":1,"name":"r","pending":[[5,3]]}]"#;
        assert!(matches!(decode(backwards, 1), Err(Error::Corrupt { .. })));
        let overlapping = r#"[{"n":1,"name":"r","pending":[[1,4],[3,9]]}]"#;
        assert!(matches!(decode(overlapping, 1), Err(Error::Corrupt { .. })));
        // The largest number that still leaves a next one.
        let last = format!(
            r#"[{{"n":{},"name":"r","pending":[[1,4],[6,9]]}}]"#,
            u32::MAX - 2
        );
        let reg = decode(&last, u32::MAX - 2).unwrap();
        assert_eq!(next_number(&reg).unwrap(), u32::MAX - 1);
        let full = format!(r#"[{{"n":{},"name":"r"}}]"#, u32::MAX - 1);
        let reg = decode(&full, u32::MAX - 1).unwrap();
        assert!(matches!(next_number(&reg), Err(Error::Corrupt { .. })));
    }
}
