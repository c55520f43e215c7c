//! What a remote says it lacks: the sync state is a cache of what the remote holds, and
//! whenever the remote says otherwise, the remote wins. A `_revs_diff` answer that names a
//! revision as missing puts it back among its document's unsynced leaves
//! ([`Database::record_remote_lacks`]), and a remote found empty (dropped and recreated,
//! reset, a new server under the old URL) holds nothing at all
//! ([`Database::reset_remote`]). Refusals of documents the state called synced are
//! [`SyncBatch::reject`]'s, in `record_remote_revs`.

use std::collections::BTreeMap;

use settee_revtree::Rev;

use super::registry::SyncCounts;
use super::{all_unsynced, sorted_leaves, Position, SyncBatch};
use crate::database::{Flush, Inner};
use crate::keys::{self, DocRecord, Unsynced};
use crate::{Database, Result};

impl SyncBatch {
    /// Records that remote `i` lacks the `lacking` revisions of document `id` (at `pos`):
    /// those that are leaves of the document join its unsynced leaves, whatever the state
    /// said before (a rejection of another leaf stays). Returns whether that changed it.
    pub(super) fn mark_lacking(
        &mut self,
        inner: &Inner,
        i: usize,
        id: &str,
        pos: &Position<'_>,
        lacking: &[Rev],
    ) -> Result<bool> {
        let entry = self.get(inner, i, id, Some(pos))?;
        let leaves = sorted_leaves(pos.tree);
        let mut unsynced = entry.as_ref().map(|e| e.leaves.clone()).unwrap_or_default();
        let before = unsynced.len();
        for rev in lacking {
            if leaves.binary_search(rev).is_ok() && !unsynced.contains(rev) {
                unsynced.push(rev.clone());
            }
        }
        if unsynced.len() == before {
            return Ok(false);
        }
        unsynced.sort();
        let rejection = entry.and_then(|e| e.rejection);
        self.set(
            i,
            id,
            Some(Unsynced {
                leaves: unsynced,
                rejection,
            }),
        );
        Ok(true)
    }
}

impl Database {
    /// Records that remote `name` lacks revisions (a `_revs_diff` answer: what it says is
    /// missing there): each one that is a leaf here is unsynced with that remote from now
    /// on, even if the state recorded it as held (the remote was reset or restored from an
    /// older copy). Revisions that are no longer leaves here are left alone (the newer leaf
    /// is unsynced already). One batch, not waited for on disk: losing it in a crash leaves
    /// the state as it was, and the next `_revs_diff` says it again. Does nothing for a
    /// remote that is not registered.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let rev = db.put(json!({"_id": "a"}))?.rev.unwrap();
    /// db.register_remote("http://couch/db", Default::default())?;
    /// let revs: std::collections::BTreeMap<_, _> = [("a".to_string(), vec![rev])].into();
    /// db.record_remote_revs("http://couch/db", &revs, &[])?;
    /// assert!(db.sync_state("http://couch/db", "a")?.unwrap().is_synced());
    /// // The remote was reset: its _revs_diff says it lacks the revision.
    /// db.record_remote_lacks("http://couch/db", &revs)?;
    /// assert_eq!(db.sync_state("http://couch/db", "a")?.unwrap().name(), "unpushed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Storage`] / [`crate::Error::Corrupt`]; nothing is recorded on error.
    pub fn record_remote_lacks(
        &self,
        name: &str,
        lacking: &BTreeMap<String, Vec<Rev>>,
    ) -> Result<()> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let Some((mut sync, i)) = SyncBatch::for_remote(inner, name) else {
            return Ok(());
        };
        for (id, revs) in lacking {
            let Some(bytes) = inner
                .tree
                .get(keys::doc_key(id))
                .map_err(|e| inner.storage(e))?
            else {
                continue;
            };
            let (seq, tree) = DocRecord::decode_tree(id, &bytes)?;
            let pos = Position { seq, tree: &tree };
            sync.mark_lacking(inner, i, id, &pos, revs)?;
        }
        if sync.commit_alone(inner, &mut guard, name)? {
            tracing::info!(
                remote = name,
                "the remote lacks revisions recorded as held; they are unsynced again"
            );
        }
        Ok(())
    }

    /// Records that remote `name` holds nothing (it was found empty: dropped and
    /// recreated, reset, or a new server under its old URL): every document is unsynced with
    /// all its leaves again, and its refusals are forgotten (the new database has its own
    /// rules; the next push learns them). One write: the remote's entries go and a pending
    /// interval up to the update seq speaks for every document, as when it was first
    /// registered. Returns whether anything changed (a remote that was already in that
    /// state, such as a new one, costs one seek). Does nothing for a remote that is not
    /// registered.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] / [`crate::Error::Corrupt`]; nothing changes on error.
    pub fn reset_remote(&self, name: &str) -> Result<bool> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut reg = inner.registry().clone();
        let Some(remote) = reg.remotes.iter_mut().find(|r| r.name == name) else {
            return Ok(false);
        };
        let counters = *guard;
        let (docs, pending) = all_unsynced(counters);
        let prefix = keys::unsynced_prefix(remote.num);
        let mut batch = sled::Batch::default();
        let mut entries = 0u64;
        for item in inner.tree.scan_prefix(prefix) {
            let (k, _) = item.map_err(|e| inner.storage(e))?;
            batch.remove(k);
            entries += 1;
        }
        let counts = SyncCounts {
            unsynced: docs,
            rejected: 0,
        };
        if entries == 0 && remote.pending == pending && remote.counts == counts {
            return Ok(false);
        }
        remote.pending = pending;
        remote.counts = counts;
        batch.insert(keys::META_SYNC, reg.encode_counts());
        batch.insert(keys::META_REMOTES, reg.encode_remotes()?);
        // Every document may have changed state: the subscribers read each one again.
        let ids: Vec<String> = if inner.watchers.active() {
            let mut ids = Vec::new();
            for item in inner.tree.scan_prefix([keys::DOC]) {
                let (k, _) = item.map_err(|e| inner.storage(e))?;
                ids.push(String::from_utf8_lossy(&k[1..]).into_owned());
            }
            ids
        } else {
            Vec::new()
        };
        inner.commit_with(&mut guard, batch, counters, Flush::AsConfigured, || {
            *inner.registry_mut() = reg;
        })?;
        tracing::info!(
            remote = name,
            entries,
            "the remote holds nothing (found empty); every document is unsynced with it again"
        );
        let aliases = inner.registry().aliases.clone();
        inner
            .watchers
            .publish_to(Some(name), &aliases, ids.iter().map(String::as_str));
        Ok(true)
    }
}
