//! What a remote says it holds or refused ([`Database::record_remote_revs`]), after a
//! push's write results or a `_revs_diff` that found revisions not missing.

use std::collections::BTreeMap;

use settee_revtree::{Rev, RevTree};

use super::batch::{Position, SyncBatch};
use super::Rejection;
use crate::keys::{self, DocRecord};
use crate::{Database, Result};

impl Database {
    /// Records what remote `name` is known to hold, after the fact: `held` revisions (a
    /// push's write results, or a `_revs_diff` that found them not missing) leave the
    /// documents' unsynced leaves, and `rejected` revisions (its per-document refusals) are
    /// recorded against their documents until a later revision is accepted. One batch,
    /// which does not wait for the disk even with `Durability::Immediate`: losing it in a
    /// crash only makes documents look unsynced (never synced), and any later write that is
    /// flushed, such as the replication's next checkpoint, takes it to disk first (sled
    /// recovers a prefix of its batches), so a checkpoint never outlives the confirmations
    /// before it. Does nothing for a remote that is not registered.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] / [`crate::Error::Corrupt`]; nothing is recorded on error.
    pub fn record_remote_revs(
        &self,
        remote: &str,
        held: &BTreeMap<String, Vec<Rev>>,
        rejected: &[Rejection],
    ) -> Result<()> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let Some((mut sync, i)) = SyncBatch::for_remote(inner, remote) else {
            return Ok(());
        };
        // Where each document stands, needed only while the remote has pending intervals.
        let pending = !sync.remotes[i].pending.is_empty();
        // A refusal needs the document's leaves whatever the intervals (see `reject`).
        let read = |id: &str, always: bool| -> Result<Option<(u64, RevTree)>> {
            if !pending && !always {
                return Ok(None);
            }
            match inner
                .tree
                .get(keys::doc_key(id))
                .map_err(|e| inner.storage(e))?
            {
                Some(v) => Ok(Some(DocRecord::decode_tree(id, &v)?)),
                None => Ok(None),
            }
        };
        let mut settled = Vec::new();
        for (id, revs) in held {
            let rec = read(id, false)?;
            let pos = rec.as_ref().map(|(seq, tree)| Position { seq: *seq, tree });
            // Only a document whose state this changes is settled: one confirmed with a
            // revision that is no longer a leaf (edited while its batch was in flight) keeps
            // its place, and its new seq says nothing about the batch.
            if sync.mark_held(inner, i, id, pos.as_ref(), revs)? {
                settled.extend(pos.map(|p| p.seq));
            }
        }
        for r in rejected {
            let rec = read(&r.id, true)?;
            let pos = rec.as_ref().map(|(seq, tree)| Position { seq: *seq, tree });
            sync.reject(inner, i, pos.as_ref(), r)?;
            settled.extend(pos.map(|p| p.seq));
        }
        settled.retain(|&s| sync.remotes[i].pending.contains(s));
        sync.settle_confirmed(inner, i, &settled)?;
        sync.commit_alone(inner, &mut guard, remote)?;
        Ok(())
    }
}
