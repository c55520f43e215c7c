//! Checking the sync-state invariants (part of `Database::verify`).

use std::collections::HashMap;

use super::live_entries;
use super::registry::{Pending, Registry, SyncCounts};
use crate::keys::{self, DocRecord, Unsynced};
use crate::{Database, Error, Result};

impl Database {
    /// Checks the sync-state invariants (part of [`Database::verify`], under the writer
    /// lock): the registry and counters decode and agree; every entry names a registered
    /// remote and an existing document, and its leaves are leaves of that document; the
    /// counters equal the entries and the documents the pending intervals speak for; a
    /// marker's document is in a pending interval; the intervals are sorted, disjoint and
    /// end by `update_seq`. Returns the number of unsynced documents over all remotes.
    pub(crate) fn verify_sync(&self, update_seq: u64) -> Result<u64> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let on_disk = Registry::load(&inner.tree, &storage)?;
        let mem = inner.registry();
        let summary = |r: &Registry| -> Vec<(u32, String, SyncCounts, Pending)> {
            r.remotes
                .iter()
                .map(|x| (x.num, x.name.clone(), x.counts, x.pending.clone()))
                .collect()
        };
        if summary(&on_disk) != summary(&mem) {
            return Err(Error::corrupt(
                "the registered remotes on disk differ from the open store's",
            ));
        }
        let mut counted: HashMap<u32, SyncCounts> = HashMap::new();
        let mut total = 0u64;
        for item in inner.tree.scan_prefix([keys::UNSYNCED]) {
            let (k, v) = item.map_err(storage)?;
            let (num, id) = keys::split_unsynced_key(&k)?;
            let Some(remote) = on_disk.remotes.iter().find(|r| r.num == num) else {
                return Err(Error::corrupt(format!(
                    "sync state of {id:?} for remote {num}, which is not registered"
                )));
            };
            let entry = Unsynced::decode(id, &v)?;
            let rec = inner
                .tree
                .get(keys::doc_key(id))
                .map_err(storage)?
                .ok_or_else(|| {
                    Error::corrupt(format!("sync state of {id:?}, which has no record"))
                })?;
            let rec = DocRecord::decode(id, &rec)?;
            if entry.is_marker() {
                if !remote.pending.contains(rec.seq) {
                    return Err(Error::corrupt(format!(
                        "sync state of {id:?} marks it held outside the pending intervals"
                    )));
                }
                continue;
            }
            for rev in &entry.leaves {
                if !rec.tree.is_leaf(rev) {
                    return Err(Error::corrupt(format!(
                        "sync state of {id:?} lists {rev}, which is not a leaf"
                    )));
                }
            }
            let c = counted.entry(num).or_default();
            c.unsynced += 1;
            c.rejected += u64::from(entry.rejection.is_some());
            total += 1;
        }
        // The documents the pending intervals speak for: those without a key.
        for r in &on_disk.remotes {
            if !r.pending.is_valid(update_seq) {
                return Err(Error::corrupt(format!(
                    "the pending intervals of {:?} are not sorted and disjoint up to the update seq",
                    r.name
                )));
            }
            for &(a, b) in r.pending.intervals() {
                for entry in live_entries(inner, a, b) {
                    let key = keys::unsynced_key(r.num, &entry?.id);
                    if !inner.tree.contains_key(&key).map_err(storage)? {
                        counted.entry(r.num).or_default().unsynced += 1;
                        total += 1;
                    }
                }
            }
        }
        for r in &on_disk.remotes {
            let found = counted.get(&r.num).copied().unwrap_or_default();
            if found != r.counts {
                return Err(Error::corrupt(format!(
                    "sync counters of {:?} say {:?}, its entries {found:?}",
                    r.name, r.counts
                )));
            }
        }
        Ok(total)
    }
}
