//! [`BatchState`]: the batch one write call builds under the writer lock. It holds the
//! records as the call has left them (so that several documents with one id in one call
//! apply in order), and puts them, the call's by-seq chunk, the index entries and the sync
//! state into one `sled::Batch`, which it commits.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use settee_revtree::{Rev, RevStatus, RevTree};

use crate::attachments::{chunks, staging, CHUNK_SIZE};
use crate::database::{Counters, Flush, Inner};
use crate::index::IndexHook;
use crate::keys::{self, AttEncoding, AttHead, DocRecord, SeqEntry};
use crate::sync_state::{Edit, Position, RemoteUpdate, SyncBatch};
use crate::validate::Body;
use crate::{Error, Result};

/// The outcome of one document of a write call.
pub(crate) struct WriteOutcome {
    pub(crate) id: String,
    pub(crate) rev: Option<Rev>,
    pub(crate) result: Result<Rev>,
}

/// A batch being built: the records as this call has left them so far, so that several
/// documents with one id in one call apply in order. Document records, revision bodies and
/// the call's by-seq chunk are kept here and go into the sled batch in [`BatchState::finish`].
pub(crate) struct BatchState<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) batch: sled::Batch,
    pub(crate) counters: Counters,
    /// Every record read or written in this call; `written` names the ones to store.
    pub(super) docs: HashMap<String, Option<DocRecord>>,
    pub(super) written: HashSet<String>,
    /// `R` bodies written (`Some`) or removed (`None`) in this call, by key.
    pub(super) bodies: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Attachments this call stores: digest -> stored length and encoding as staged.
    pub(super) atts: HashMap<String, (u64, AttEncoding)>,
    /// The seq of this call's first write; its chunk holds the entries from there on.
    pub(super) first_seq: u64,
    pub(super) chunk: Vec<SeqEntry>,
    /// Documents this call removes entirely (purge).
    pub(super) removed: HashSet<String>,
    /// The documents' sync state with the registered remotes, `None` when there are none.
    pub(super) sync: Option<SyncBatch>,
    /// Documents whose sync state alone this call changes (their records stay as they are).
    pub(super) sync_touched: HashSet<String>,
    pub(crate) dirty: bool,
    /// Keeps the Mango indexes in step with the documents this call writes.
    pub(super) index_hook: IndexHook,
    /// The files this call wrote for inline attachments: removed unless its batch is applied.
    pub(super) files: staging::UncommittedFiles<'a>,
}

/// Whether a document counts as live, deleted, or not at all (for `doc_count`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocState {
    Absent,
    Live,
    Deleted,
}

impl DocState {
    pub(crate) fn of(rec: Option<&DocRecord>) -> DocState {
        match rec {
            None => DocState::Absent,
            Some(r) if r.tree.is_deleted() => DocState::Deleted,
            Some(_) => DocState::Live,
        }
    }
}

impl<'a> BatchState<'a> {
    /// A batch under the writer lock (`counters` are the locked ones). `origin` names the
    /// remote its replicated revisions come from, if they come from a registered remote.
    pub(crate) fn new(
        inner: &'a Inner,
        counters: Counters,
        origin: Option<&str>,
    ) -> BatchState<'a> {
        BatchState {
            inner,
            batch: sled::Batch::default(),
            counters,
            docs: HashMap::new(),
            written: HashSet::new(),
            bodies: HashMap::new(),
            atts: HashMap::new(),
            // The counters are read from disk: a damaged record must not overflow here
            // (`put_doc` refuses to go past the largest seq).
            first_seq: counters.update_seq.saturating_add(1),
            chunk: Vec::new(),
            removed: HashSet::new(),
            sync: SyncBatch::new(inner, origin),
            sync_touched: HashSet::new(),
            dirty: false,
            index_hook: IndexHook::new(inner),
            files: staging::UncommittedFiles::new(inner),
        }
    }

    pub(crate) fn doc(&mut self, id: &str) -> Result<Option<DocRecord>> {
        if let Some(rec) = self.docs.get(id) {
            return Ok(rec.clone());
        }
        let inner = self.inner;
        let rec = match inner
            .tree
            .get(keys::doc_key(id))
            .map_err(|e| inner.storage(e))?
        {
            Some(bytes) => Some(DocRecord::decode(id, &bytes)?),
            None => None,
        };
        self.docs.insert(id.to_owned(), rec.clone());
        Ok(rec)
    }

    /// Loads the records of the call's documents with one ordered scan instead of one
    /// lookup each, when their ids are close together in the store (a bulk load of new or
    /// sequential ids, an update of a range). The scan gives up once it has passed more
    /// other documents than the call has ids; the rest are then looked up one by one.
    pub(crate) fn prefetch(&mut self, ids: &[&str]) -> Result<()> {
        let mut sorted: Vec<&str> = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
            return Ok(());
        };
        let inner = self.inner;
        let mut budget = sorted.len();
        let mut next = 0;
        let mut complete = true;
        for item in inner.tree.range(keys::doc_key(first)..=keys::doc_key(last)) {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = &k[1..];
            // Ids before this key that it skipped over do not exist.
            while next < sorted.len() && sorted[next].as_bytes() < id {
                self.docs.entry(sorted[next].to_owned()).or_insert(None);
                next += 1;
            }
            if next < sorted.len() && sorted[next].as_bytes() == id {
                let rec = DocRecord::decode(sorted[next], &v)?;
                self.docs
                    .entry(sorted[next].to_owned())
                    .or_insert(Some(rec));
                next += 1;
            } else if budget == 0 {
                complete = false;
                break;
            } else {
                budget -= 1;
            }
        }
        if complete {
            for id in &sorted[next..] {
                self.docs.entry((*id).to_owned()).or_insert(None);
            }
        }
        Ok(())
    }

    /// The body of revision `rev` of document `id` as this call has left it.
    pub(super) fn body(&mut self, id: &str, rev: &Rev) -> Result<Option<Map<String, Value>>> {
        if let Some(rec) = self.doc(id)? {
            if rec.tree.winner() == *rev {
                return parse_body(id, rev, &rec.body).map(Some);
            }
        }
        match self.rbody(id, rev)? {
            Some(bytes) => parse_body(id, rev, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored bytes of a non-winning revision's body (`R`), as this call has left them.
    pub(super) fn rbody(&self, id: &str, rev: &Rev) -> Result<Option<Vec<u8>>> {
        let key = keys::rev_key(id, rev);
        if let Some(b) = self.bodies.get(&key) {
            return Ok(b.clone());
        }
        let inner = self.inner;
        Ok(inner
            .tree
            .get(&key)
            .map_err(|e| inner.storage(e))?
            .map(|v| v.to_vec()))
    }

    pub(super) fn set_rbody(&mut self, id: &str, rev: &Rev, body: Option<Vec<u8>>) {
        let key = keys::rev_key(id, rev);
        match &body {
            Some(b) => self.batch.insert(key.clone(), b.as_slice()),
            None => self.batch.remove(key.clone()),
        }
        self.bodies.insert(key, body);
    }

    /// The length of attachment `digest` if it is stored (or stored by this call).
    pub(super) fn att_len(&self, digest: &str) -> Result<Option<(u64, AttEncoding)>> {
        if let Some(&stored) = self.atts.get(digest) {
            return Ok(Some(stored));
        }
        Ok(chunks::lookup(self.inner, digest)?.map(|s| (s.length(), s.encoding())))
    }

    /// Stores an inline attachment's bytes (as `encoding`) unless its digest is stored
    /// already: one chunk's worth or less as chunks in this call's batch (atomic with the
    /// document, no fsync of its own), longer ones in a file, as staged attachments are
    /// (sled would keep those bytes in memory for as long as the store is open).
    pub(super) fn store_att(
        &mut self,
        digest: &str,
        data: &[u8],
        encoding: AttEncoding,
    ) -> Result<()> {
        if !self.atts.contains_key(digest) && !chunks::is_stored(self.inner, digest)? {
            if data.len() > CHUNK_SIZE {
                let head = staging::write_file(self.inner, data, encoding)?;
                self.files.blobs.push(head.blob);
                staging::commit_into(&mut self.batch, digest, &head, false);
            } else {
                chunks::write_whole(self.inner, &mut self.batch, digest, data, encoding)?;
            }
            self.atts
                .insert(digest.to_owned(), (data.len() as u64, encoding));
        }
        Ok(())
    }

    /// Commits a staged attachment's blob with this call (or drops its chunks when its
    /// digest is stored already: dedup by digest).
    pub(super) fn commit_staged(&mut self, digest: &str, head: &AttHead) -> Result<()> {
        let stored = self.atts.contains_key(digest) || chunks::is_stored(self.inner, digest)?;
        staging::commit_into(&mut self.batch, digest, head, stored);
        self.atts
            .entry(digest.to_owned())
            .or_insert((head.length, head.encoding));
        Ok(())
    }

    /// Records a new state of document `id`: a new record under a new seq with the
    /// winner's body inline, the bodies of other available revisions under `R` (the old
    /// winner's moves there when it stops winning; a leaf that starts winning moves into
    /// the record), `removed_bodies` dropped, the old by-seq entry superseded, counters
    /// adjusted, the sync state updated for what `edit` did. `body` is the body of the
    /// revision this write adds, if it keeps one.
    pub(crate) fn put_doc(
        &mut self,
        id: &str,
        old: Option<&DocRecord>,
        tree: RevTree,
        body: Option<(Rev, Body)>,
        removed_bodies: &[Rev],
        edit: Edit<'_>,
    ) -> Result<u64> {
        self.index_hook.before_write(id, old)?;
        let seq = self.counters.update_seq.checked_add(1).ok_or_else(|| {
            Error::corrupt("the update seq is at its largest: the counters record is damaged")
        })?;
        let winner = tree.winner();
        let old_winner = old.map(|o| o.tree.winner());
        for rev in removed_bodies {
            if Some(rev) != old_winner.as_ref() {
                self.set_rbody(id, rev, None);
            }
        }
        let mut new_body = match body {
            Some((rev, body)) => Some((rev, body.encode()?)),
            None => None,
        };
        // The winner's body, and its packed form when an unchanged winner keeps its body
        // (compressed once, when it was written).
        let (winner_body, packed) = match new_body.take() {
            Some((rev, bytes)) if rev == winner => (bytes, None),
            other => {
                new_body = other;
                match old {
                    Some(o) if old_winner.as_ref() == Some(&winner) => {
                        (o.body.clone(), o.packed.clone())
                    }
                    _ => {
                        // Another stored leaf wins now: its body moves into the record.
                        let bytes = self.rbody(id, &winner)?.ok_or_else(|| {
                            Error::corrupt(format!("body of {id:?} at {winner} is missing"))
                        })?;
                        self.set_rbody(id, &winner, None);
                        (bytes, None)
                    }
                }
            }
        };
        if let (Some(o), Some(ow)) = (old, &old_winner) {
            let kept =
                tree.status(ow) == Some(RevStatus::Available) && !removed_bodies.contains(ow);
            if *ow != winner && kept {
                self.set_rbody(id, ow, Some(o.body.clone()));
            }
        }
        if let Some((rev, bytes)) = new_body {
            self.set_rbody(id, &rev, Some(bytes));
        }
        if let Some(o) = old {
            self.supersede(o, seq);
        }
        let leaves = tree.leaves();
        if let Some(sync) = &mut self.sync {
            let pos = old.map(|o| Position {
                seq: o.seq,
                tree: &o.tree,
            });
            sync.track(self.inner, id, pos, seq, &leaves, edit)?;
        }
        self.chunk.push(SeqEntry::of_leaves(seq, id, leaves));
        let rec = DocRecord {
            seq,
            tree,
            body: winner_body,
            solo: false,
            packed,
        };
        self.count(DocState::of(old), DocState::of(Some(&rec)));
        self.counters.update_seq = seq;
        self.docs.insert(id.to_owned(), Some(rec));
        self.written.insert(id.to_owned());
        self.dirty = true;
        Ok(seq)
    }

    /// Supersedes the by-seq entry of a record that write `seq` replaces: an entry of this
    /// call's own chunk is dropped, a chunk of its own is deleted, any other entry is marked
    /// stale (readers skip it; compaction removes it).
    pub(super) fn supersede(&mut self, old: &DocRecord, seq: u64) {
        if old.seq >= self.first_seq {
            self.chunk.retain(|e| e.seq != old.seq);
        } else if old.solo {
            self.batch.remove(&keys::chunk_key(old.seq)[..]);
        } else {
            self.batch
                .insert(&keys::stale_key(old.seq)[..], &seq.to_be_bytes()[..]);
        }
    }

    /// Removes document `id` entirely (purge of its last leaves). Its by-seq entries, the
    /// live one and any stale ones, go in [`BatchState::finish`]: an entry naming a missing
    /// document would count it as pending.
    pub(crate) fn remove_doc(&mut self, id: &str, old: &DocRecord) -> Result<()> {
        self.index_hook.before_write(id, Some(old))?;
        if let Some(sync) = &mut self.sync {
            let pos = Position {
                seq: old.seq,
                tree: &old.tree,
            };
            sync.remove_doc(self.inner, id, pos)?;
        }
        let winner = old.tree.winner();
        for rev in old.tree.revs() {
            if rev != winner {
                self.set_rbody(id, &rev, None);
            }
        }
        self.chunk.retain(|e| e.id != id);
        self.count(DocState::of(Some(old)), DocState::Absent);
        self.docs.insert(id.to_owned(), None);
        self.written.insert(id.to_owned());
        self.removed.insert(id.to_owned());
        self.dirty = true;
        Ok(())
    }

    /// Records that the write's origin holds revision `rev` of `id`, which this call found
    /// already stored (a replicated write of a known revision writes nothing else).
    pub(super) fn held_by_origin(&mut self, id: &str, rec: &DocRecord, rev: &Rev) -> Result<()> {
        if let Some(sync) = &mut self.sync {
            let pos = Position {
                seq: rec.seq,
                tree: &rec.tree,
            };
            if sync.held_by_origin(self.inner, id, pos, rev)? {
                // Only its sync state changes: the record is not rewritten (nor re-indexed).
                self.dirty = true;
                self.sync_touched.insert(id.to_owned());
            }
        }
        Ok(())
    }

    /// Applies the batch (under the writer lock held by `guard`), then brings the in-memory
    /// sync counts up to date and tells sync-state subscribers which documents changed.
    pub(crate) fn commit(mut self, guard: &mut std::sync::MutexGuard<'_, Counters>) -> Result<()> {
        let inner = self.inner;
        // Dropped after the batch is applied (or not): see `UncommittedFiles`.
        let files = std::mem::replace(&mut self.files, staging::UncommittedFiles::new(inner));
        let notify: Vec<String> = if inner.watchers.active() {
            self.written.union(&self.sync_touched).cloned().collect()
        } else {
            Vec::new()
        };
        let (batch, counters, sync_updates) = self.finish()?;
        let result = inner.commit_with(guard, batch, counters, Flush::AsConfigured, || {
            if let Some(updates) = &sync_updates {
                inner.registry_mut().apply(updates);
            }
        });
        drop(files);
        if !notify.is_empty() {
            inner
                .watchers
                .publish(None, notify.iter().map(String::as_str));
        }
        result
    }

    pub(super) fn count(&mut self, before: DocState, after: DocState) {
        let c = &mut self.counters;
        match before {
            DocState::Live => c.doc_count = c.doc_count.saturating_sub(1),
            DocState::Deleted => c.doc_del_count = c.doc_del_count.saturating_sub(1),
            DocState::Absent => {}
        }
        match after {
            DocState::Live => c.doc_count = c.doc_count.saturating_add(1),
            DocState::Deleted => c.doc_del_count = c.doc_del_count.saturating_add(1),
            DocState::Absent => {}
        }
    }

    /// The finished sled batch: every written record, this call's chunk, rewritten chunks,
    /// the sync-state entries; and the new sync counts if they changed.
    #[allow(clippy::type_complexity)]
    pub(super) fn finish(mut self) -> Result<(sled::Batch, Counters, Option<Vec<RemoteUpdate>>)> {
        let solo = self.chunk.len() == 1;
        let dict = self.inner.bodies.current();
        for id in &self.written {
            match self.docs.get_mut(id) {
                Some(Some(rec)) => {
                    rec.solo = solo;
                    rec.pack(dict.as_deref());
                    self.batch.insert(keys::doc_key(id), rec.encode()?);
                }
                _ => self.batch.remove(keys::doc_key(id)),
            }
        }
        if let Some(first) = self.chunk.first() {
            self.batch.insert(
                &keys::chunk_key(first.seq)[..],
                keys::encode_chunk(&self.chunk)?,
            );
        }
        if !self.removed.is_empty() {
            // Purge is rare: one scan of the index finds every entry of the removed
            // documents (stale entries can be anywhere before the live one).
            let inner = self.inner;
            for item in inner
                .tree
                .range(keys::chunk_key(0)..=keys::chunk_key(u64::MAX))
            {
                let (k, v) = item.map_err(|e| inner.storage(e))?;
                let entries = keys::decode_chunk(&k, &v)?;
                let total = entries.len();
                let mut kept = Vec::with_capacity(total);
                for e in entries {
                    if self.removed.contains(&e.id) {
                        self.batch.remove(&keys::stale_key(e.seq)[..]);
                    } else {
                        kept.push(e);
                    }
                }
                if kept.len() < total {
                    keys::rewrite_chunk(&mut self.batch, &k, &kept)?;
                }
            }
        }
        std::mem::take(&mut self.index_hook).finish(
            self.inner,
            &mut self.batch,
            &self.docs,
            &self.written,
        )?;
        let sync_updates = match self.sync.take() {
            Some(mut sync) => {
                sync.extend_pending(self.first_seq, self.counters.update_seq);
                sync.finish(self.inner, &mut self.batch)?
            }
            None => None,
        };
        Ok((self.batch, self.counters, sync_updates))
    }
}

pub(crate) fn parse_body(id: &str, rev: &Rev, bytes: &[u8]) -> Result<Map<String, Value>> {
    crate::deep_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("body of {id:?} at {rev}: {e}")))
}

impl Inner {
    /// Reads and decodes a revision body stored under `R` (not the winner's).
    pub(crate) fn read_rbody(&self, id: &str, rev: &Rev) -> Result<Option<Map<String, Value>>> {
        match self
            .tree
            .get(keys::rev_key(id, rev))
            .map_err(|e| self.storage(e))?
        {
            Some(bytes) => parse_body(id, rev, &bytes).map(Some),
            None => Ok(None),
        }
    }
}
