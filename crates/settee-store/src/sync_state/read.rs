//! Reading the sync state: one document's ([`Database::sync_state`]), a remote's counts
//! ([`Database::sync_counts`]) and the listing of its unsynced documents
//! ([`Database::unsynced`]).

use super::registry::{decode_counts, stored_pending, Pending, SyncCounts};
use super::{live_entries, sorted_leaves, successor, SyncState};
use crate::keys::{self, DocRecord, Unsynced};
use crate::{Database, Error, Result};

/// Pending seqs up to which [`Database::unsynced`] reads the pending documents from the
/// by-seq index and sorts them; past it, it walks the records in id order.
pub(super) const PENDING_SCAN_LIMIT: u64 = 4_096;

/// How many times a listing page is read without the writer lock before it takes it (see
/// [`Database::unsynced`]): a page collides only with a confirmation applied while it is
/// read, so a second read nearly always succeeds.
pub(super) const OPTIMISTIC_READS: usize = 3;

impl Database {
    /// Document `id`'s sync state with remote `name`; `None` when there is no such document.
    /// Two or three reads (the document's entry, its record when the entry does not say,
    /// the entry again). A remote that is not registered holds nothing yet: every document
    /// is unpushed there.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn sync_state(&self, remote: &str, id: &str) -> Result<Option<SyncState>> {
        let inner = &*self.inner;
        let read_record = || self.load_doc(id);
        let reg_of = || {
            inner
                .registry()
                .by_name(remote)
                .map(|r| (r.num, r.pending.clone()))
        };
        let Some((num, mut pending)) = reg_of() else {
            return Ok(read_record()?.map(|rec| SyncState::Unpushed {
                revs: sorted_leaves(&rec.tree),
            }));
        };
        let key = keys::unsynced_key(num, id);
        let read_key =
            || -> Result<Option<sled::IVec>> { inner.tree.get(&key).map_err(|e| inner.storage(e)) };
        loop {
            let raw = read_key()?;
            if let Some(v) = &raw {
                let e = Unsynced::decode(id, v)?;
                if !e.is_marker() {
                    return Ok(Some(SyncState::of_entry(e)));
                }
            }
            let rec = read_record()?;
            // sled reads are not a snapshot: if the entry or the pending intervals changed
            // meanwhile, the record may not match them; read again.
            let now = reg_of().map(|(_, p)| p);
            if read_key()? != raw || now.as_ref().is_some_and(|p| *p != pending) {
                pending = now.unwrap_or(pending);
                continue;
            }
            return Ok(rec.map(|r| {
                if raw.is_none() && pending.contains(r.seq) {
                    SyncState::Unpushed {
                        revs: sorted_leaves(&r.tree),
                    }
                } else {
                    SyncState::of_held_tree(&r.tree)
                }
            }));
        }
    }

    /// The counts of documents not known to be on remote `name` (one read). For a remote
    /// that is not registered, every document.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn sync_counts(&self, remote: &str) -> Result<SyncCounts> {
        let inner = &*self.inner;
        let Some(num) = inner.registry().by_name(remote).map(|r| r.num) else {
            let info = self.info()?;
            return Ok(SyncCounts {
                unsynced: info.doc_count.saturating_add(info.doc_del_count),
                rejected: 0,
            });
        };
        // From the record, not memory: it is in the same batch as the entries it counts.
        let bytes = inner
            .tree
            .get(keys::META_SYNC)
            .map_err(|e| inner.storage(e))?
            .ok_or_else(|| Error::corrupt("the sync counters record is missing"))?;
        decode_counts(&bytes)?
            .into_iter()
            .find(|(n, _)| *n == num)
            .map(|(_, c)| c)
            .ok_or_else(|| Error::corrupt(format!("no sync counters for remote {remote:?}")))
    }

    /// Up to `limit` documents not known to be on remote `name`, in id order after `after`,
    /// each with its state (`Unpushed` or `Rejected`). Reads the entries, and the by-seq
    /// entries of the pending intervals when there are any: the cost is in the number of
    /// unsynced documents, not the store's size. (Past `PENDING_SCAN_LIMIT` pending seqs,
    /// while a first push to a remote has not got far, it walks the records in id order.)
    /// For a remote that is not registered, every document (a walk of the records).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let page = db.unsynced("http://couch/db", None, 100)?;
    /// assert_eq!(page[0].0, "a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`].
    pub fn unsynced(
        &self,
        remote: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let Some((num, pending)) = inner
            .registry()
            .by_name(remote)
            .map(|r| (r.num, r.pending.clone()))
        else {
            return self.walk_records(after, limit, |_, rec| {
                Ok(Some(SyncState::Unpushed {
                    revs: sorted_leaves(&rec.tree),
                }))
            });
        };
        if pending.is_empty() {
            return self.explicit_entries(num, after, limit);
        }
        let span: u64 = pending.intervals().iter().map(|&(a, b)| b - a + 1).sum();
        if span > PENDING_SCAN_LIMIT {
            // Many documents may be pending (a first push has not gone far): walk the
            // records in id order, each with its entry.
            return self.walk_records(after, limit, |id, rec| {
                let key = keys::unsynced_key(num, id);
                match inner.tree.get(&key).map_err(|e| inner.storage(e))? {
                    Some(v) => {
                        let e = Unsynced::decode(id, &v)?;
                        Ok((!e.is_marker()).then(|| SyncState::of_entry(e)))
                    }
                    None => Ok(pending.contains(rec.seq).then(|| SyncState::Unpushed {
                        revs: sorted_leaves(&rec.tree),
                    })),
                }
            });
        }
        // Few pending seqs: the pending documents (from the by-seq index) merged with the
        // entries, in id order. A confirmation applied between the two reads can move a
        // document out of the intervals into an entry the first read did not see (issue
        // 19): it changes the stored intervals in the same batch, so the page is read again
        // when they changed meanwhile, and under the writer lock after a few tries.
        for _ in 0..OPTIMISTIC_READS {
            let before = inner
                .tree
                .get(keys::META_REMOTES)
                .map_err(|e| inner.storage(e))?;
            let pending = stored_pending(before.as_deref(), remote)?;
            let rows = self.merged_page(num, &pending, after, limit)?;
            let now = inner
                .tree
                .get(keys::META_REMOTES)
                .map_err(|e| inner.storage(e))?;
            if now == before {
                return Ok(rows);
            }
        }
        let _writer = inner.lock_writer();
        let pending = inner
            .registry()
            .by_name(remote)
            .map(|r| r.pending.clone())
            .unwrap_or_default();
        self.merged_page(num, &pending, after, limit)
    }

    /// The entries of remote number `num` merged with the documents its `pending`
    /// intervals speak for: up to `limit` after `after`, in id order.
    pub(super) fn merged_page(
        &self,
        num: u32,
        pending: &Pending,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let mut rows = self.explicit_entries(num, after, limit)?;
        for &(a, b) in pending.intervals() {
            for entry in live_entries(inner, a, b) {
                let entry = entry?;
                if after.is_some_and(|x| entry.id.as_str() <= x) {
                    continue;
                }
                let key = keys::unsynced_key(num, &entry.id);
                if inner
                    .tree
                    .contains_key(&key)
                    .map_err(|e| inner.storage(e))?
                {
                    continue;
                }
                let mut revs = entry.leaves;
                revs.sort();
                rows.push((entry.id, SyncState::Unpushed { revs }));
            }
        }
        rows.sort_by(|x, y| x.0.cmp(&y.0));
        rows.truncate(limit);
        Ok(rows)
    }

    /// Up to `limit` non-marker `U` entries of remote number `num` after `after`, in id
    /// order.
    pub(super) fn explicit_entries(
        &self,
        num: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let prefix = keys::unsynced_prefix(num).to_vec();
        let start = match after {
            Some(a) => successor(keys::unsynced_key(num, a)),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in inner.tree.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let id = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let entry = Unsynced::decode(id, &v)?;
            if !entry.is_marker() {
                out.push((id.to_owned(), SyncState::of_entry(entry)));
            }
        }
        Ok(out)
    }

    /// Up to `limit` documents after `after`, in id order, with the state `state` gives
    /// them (`None`: left out).
    pub(super) fn walk_records(
        &self,
        after: Option<&str>,
        limit: usize,
        mut state: impl FnMut(&str, &DocRecord) -> Result<Option<SyncState>>,
    ) -> Result<Vec<(String, SyncState)>> {
        let inner = &*self.inner;
        let start = match after {
            Some(a) => successor(keys::doc_key(a)),
            None => vec![keys::DOC],
        };
        let mut out = Vec::new();
        for item in inner.tree.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            if k.first() != Some(&keys::DOC) {
                break;
            }
            let id = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let rec = DocRecord::decode(id, &v)?;
            if let Some(st) = state(id, &rec)? {
                out.push((id.to_owned(), st));
            }
        }
        Ok(out)
    }
}
