//! Document writes: `put`, `delete` and `bulk_docs` with `new_edits` true (edits checked
//! against the rev tree, 409 on a stale rev) or false (replicated revisions merged as
//! given). One call builds one `sled::Batch` under the writer lock and applies it at once;
//! each document's records (record, body, by-seq entry and removal of the old one,
//! attachments, counters) are all in it, so a crash keeps or loses each write whole.

use std::collections::{HashMap, HashSet};

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use settee_revtree::{new_rev_hash, MergeKind, Rev, RevPath, RevStatus, RevTree};

use crate::attachments::{attachment_digest, metas, AttMeta};
use crate::database::{new_uuid, Counters, Flush, Inner};
use crate::index::IndexHook;
use crate::keys::{self, DocRecord, SeqEntry};
use crate::sync_state::{Edit, Position, RemoteUpdate, SyncBatch};
use crate::validate::{
    id_of_json, parse_doc, parse_doc_json, AttIn, Body, ParsedDoc, LOCAL_PREFIX,
};
use crate::{Database, DocResult, Error, Result};

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
    docs: HashMap<String, Option<DocRecord>>,
    written: HashSet<String>,
    /// `R` bodies written (`Some`) or removed (`None`) in this call, by key.
    bodies: HashMap<Vec<u8>, Option<Vec<u8>>>,
    atts: HashMap<String, u64>,
    /// The seq of this call's first write; its chunk holds the entries from there on.
    first_seq: u64,
    chunk: Vec<SeqEntry>,
    /// Documents this call removes entirely (purge).
    removed: HashSet<String>,
    /// The documents' sync state with the registered remotes, `None` when there are none.
    sync: Option<SyncBatch>,
    /// Documents whose sync state alone this call changes (their records stay as they are).
    sync_touched: HashSet<String>,
    pub(crate) dirty: bool,
    /// Keeps the Mango indexes in step with the documents this call writes.
    index_hook: IndexHook,
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
    fn body(&mut self, id: &str, rev: &Rev) -> Result<Option<Map<String, Value>>> {
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
    fn rbody(&self, id: &str, rev: &Rev) -> Result<Option<Vec<u8>>> {
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

    fn set_rbody(&mut self, id: &str, rev: &Rev, body: Option<Vec<u8>>) {
        let key = keys::rev_key(id, rev);
        match &body {
            Some(b) => self.batch.insert(key.clone(), b.as_slice()),
            None => self.batch.remove(key.clone()),
        }
        self.bodies.insert(key, body);
    }

    fn att_len(&self, digest: &str) -> Result<Option<u64>> {
        if let Some(&len) = self.atts.get(digest) {
            return Ok(Some(len));
        }
        let inner = self.inner;
        Ok(inner
            .tree
            .get(keys::att_key(digest))
            .map_err(|e| inner.storage(e))?
            .map(|v| v.len() as u64))
    }

    fn store_att(&mut self, digest: &str, data: &[u8]) -> Result<()> {
        if self.att_len(digest)?.is_none() {
            self.batch.insert(keys::att_key(digest), data);
            self.atts.insert(digest.to_owned(), data.len() as u64);
        }
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
        let winner_body = match new_body.take() {
            Some((rev, bytes)) if rev == winner => bytes,
            other => {
                new_body = other;
                match old {
                    Some(o) if old_winner.as_ref() == Some(&winner) => o.body.clone(),
                    _ => {
                        // Another stored leaf wins now: its body moves into the record.
                        let bytes = self.rbody(id, &winner)?.ok_or_else(|| {
                            Error::corrupt(format!("body of {id:?} at {winner} is missing"))
                        })?;
                        self.set_rbody(id, &winner, None);
                        bytes
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
    fn supersede(&mut self, old: &DocRecord, seq: u64) {
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
    fn held_by_origin(&mut self, id: &str, rec: &DocRecord, rev: &Rev) -> Result<()> {
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
    pub(crate) fn commit(self, guard: &mut std::sync::MutexGuard<'_, Counters>) -> Result<()> {
        let inner = self.inner;
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
        if !notify.is_empty() {
            inner
                .watchers
                .publish(None, notify.iter().map(String::as_str));
        }
        result
    }

    fn count(&mut self, before: DocState, after: DocState) {
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
    fn finish(mut self) -> Result<(sled::Batch, Counters, Option<Vec<RemoteUpdate>>)> {
        let solo = self.chunk.len() == 1;
        for id in &self.written {
            match self.docs.get_mut(id) {
                Some(Some(rec)) => {
                    rec.solo = solo;
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

impl Database {
    /// Writes one document (`PUT /{db}/{id}`, or `POST /{db}` when it has no `_id`: an id
    /// is generated). With `_rev` it edits that revision; `_deleted: true` deletes.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let first = db.put(json!({"_id": "a", "n": 1}))?;
    /// let rev = first.rev.unwrap();
    /// assert!(rev.to_string().starts_with("1-"));
    /// let second = db.put(json!({"_id": "a", "_rev": rev.to_string(), "n": 2}))?;
    /// assert!(second.rev.unwrap().to_string().starts_with("2-"));
    /// // The old rev is stale now.
    /// let err = db.put(json!({"_id": "a", "_rev": rev.to_string(), "n": 3})).unwrap_err();
    /// assert_eq!(err.name(), "conflict");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] for a stale or missing `_rev`; [`Error::IllegalDocId`],
    /// [`Error::DocValidation`], [`Error::BadRequest`] for a malformed document;
    /// [`Error::MissingStub`] for a stub of an attachment the parent revision lacks;
    /// [`Error::Storage`] for I/O errors. Nothing is written on error.
    pub fn put(&self, doc: Value) -> Result<DocResult> {
        let mut out = self.write_docs(vec![doc], true, false, None)?;
        let one = out
            .pop()
            .ok_or_else(|| Error::corrupt("write of one document returned no result"))?;
        one.result.map(|rev| DocResult::ok(one.id, rev))
    }

    /// Deletes a document: writes a tombstone revision (`{"_deleted": true}`) on top of
    /// `rev`, which must be a current leaf.
    ///
    /// # Errors
    /// [`Error::Conflict`] if `rev` is not a leaf; [`Error::NotFound`] if the document does
    /// not exist; as [`Database::put`] otherwise.
    pub fn delete(&self, id: &str, rev: &Rev) -> Result<DocResult> {
        if id.starts_with(LOCAL_PREFIX) {
            return Err(Error::bad_request(
                "delete _local/ documents with delete_local",
            ));
        }
        if self
            .inner
            .tree
            .get(keys::doc_key(id))
            .map_err(|e| self.inner.storage(e))?
            .is_none()
        {
            return Err(Error::not_found(id, "missing"));
        }
        self.put(serde_json::json!({"_id": id, "_rev": rev.to_string(), "_deleted": true}))
    }

    /// Writes many documents in one atomic batch (`POST /{db}/_bulk_docs`), one result per
    /// document in order. With `new_edits = true` each is an edit as in [`Database::put`].
    /// With `new_edits = false` (replication) each must carry `_rev` or `_revisions`; the
    /// path is merged into the tree as given, a revision the store has is a silent success,
    /// and an attachment stub must name a digest the store holds or, as CouchDB resolves
    /// stubs, an attachment of the same name and `revpos` on the nearest ancestor whose body
    /// the store holds (else `missing_stub`).
    ///
    /// Unlike CouchDB, which answers a `new_edits=false` request with its errors only, the
    /// result always has one entry per document (the SPEC's form).
    ///
    /// # Errors
    /// Per-document problems are results, not errors. The call fails only on
    /// [`Error::Storage`], and then nothing of it was applied (the batch is atomic) — except
    /// a failed flush in [`crate::Durability::Immediate`] mode, where the batch is applied
    /// but its durability is unknown.
    pub fn bulk_docs(&self, docs: Vec<Value>, new_edits: bool) -> Result<Vec<DocResult>> {
        self.bulk_docs_of(docs, new_edits, false)
    }

    /// [`Database::bulk_docs`] as CouchDB's `_bulk_docs` endpoint takes it: a malformed
    /// document (an illegal or non-string id, an unknown special member, a bad rev or
    /// attachment, or no `_rev`/`_revisions` with `new_edits = false`) fails the whole call
    /// with that document's error before anything is written. Conflicts and other
    /// per-document outcomes are still results.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let err = db.bulk_docs_checked(vec![json!({"_id": "ok"}), json!({"_zing": 1})], true).unwrap_err();
    /// assert_eq!(err.name(), "doc_validation");
    /// assert_eq!(db.info()?.doc_count, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The first malformed document's error; otherwise as [`Database::bulk_docs`].
    pub fn bulk_docs_checked(&self, docs: Vec<Value>, new_edits: bool) -> Result<Vec<DocResult>> {
        self.bulk_docs_of(docs, new_edits, true)
    }

    /// [`Database::bulk_docs`] for documents given as JSON text (what a replicator receives
    /// from `_bulk_get`). The body is stored as the text gives it, without being parsed
    /// into a `serde_json::Value` and serialized again; the result is the same as
    /// `bulk_docs` of the parsed documents.
    ///
    /// # Errors
    /// As [`Database::bulk_docs`].
    pub fn bulk_docs_json(
        &self,
        docs: &[Box<RawValue>],
        new_edits: bool,
    ) -> Result<Vec<DocResult>> {
        self.bulk_docs_of(docs.iter().map(|d| &**d).collect(), new_edits, false)
    }

    /// [`Database::bulk_docs_json`] with `new_edits = false` for revisions read from the
    /// registered remote `origin` (a replicator's pull): they are recorded as held by
    /// `origin` in the same batch as the data, so the documents stay synced with it.
    /// Revisions already stored are recorded as held too. For any other remote they are new
    /// leaves, unsynced. An `origin` that is not registered is no one in particular.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.register_remote("http://couch/db", Default::default())?;
    /// let doc = serde_json::value::to_raw_value(&serde_json::json!({"_id": "a", "_rev": "1-x"}))?;
    /// db.bulk_docs_json_from(&[doc], "http://couch/db")?;
    /// assert_eq!(db.sync_state("http://couch/db", "a")?, Some(settee_store::SyncState::Synced));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::bulk_docs`].
    pub fn bulk_docs_json_from(
        &self,
        docs: &[Box<RawValue>],
        origin: &str,
    ) -> Result<Vec<DocResult>> {
        self.bulk_docs_of_from(
            docs.iter().map(|d| &**d).collect(),
            false,
            false,
            Some(origin),
        )
    }

    fn bulk_docs_of<D: DocIn>(
        &self,
        docs: Vec<D>,
        new_edits: bool,
        strict: bool,
    ) -> Result<Vec<DocResult>> {
        self.bulk_docs_of_from(docs, new_edits, strict, None)
    }

    fn bulk_docs_of_from<D: DocIn>(
        &self,
        docs: Vec<D>,
        new_edits: bool,
        strict: bool,
        origin: Option<&str>,
    ) -> Result<Vec<DocResult>> {
        Ok(self
            .write_docs(docs, new_edits, strict, origin)?
            .into_iter()
            .map(|o| match o.result {
                Ok(rev) => DocResult::ok(o.id, rev),
                Err(e) => DocResult::err(o.id, o.rev, &e),
            })
            .collect())
    }

    /// Writes documents; with `strict`, a malformed one fails the call before anything is
    /// written (see [`Database::bulk_docs_checked`]).
    pub(crate) fn write_docs<D: DocIn>(
        &self,
        docs: Vec<D>,
        new_edits: bool,
        strict: bool,
        origin: Option<&str>,
    ) -> Result<Vec<WriteOutcome>> {
        // Parsing needs no lock.
        let mut docs: Vec<(Option<String>, Result<ParsedDoc>)> =
            docs.into_iter().map(DocIn::parse).collect();
        if strict {
            if let Some(i) = docs.iter().position(|(_, p)| p.is_err()) {
                if let (_, Err(e)) = docs.swap_remove(i) {
                    return Err(e);
                }
            }
            let unversioned = |p: &Result<ParsedDoc>| {
                p.as_ref()
                    .is_ok_and(|p| p.rev.is_none() && p.revisions.is_none())
            };
            if !new_edits && docs.iter().any(|(_, p)| unversioned(p)) {
                return Err(Error::bad_request(
                    "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
                ));
            }
        }
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut st = BatchState::new(inner, *guard, origin);
        if docs.len() > 1 {
            let ids: Vec<&str> = docs
                .iter()
                .filter_map(|(_, d)| d.as_ref().ok()?.id.as_deref())
                .filter(|id| !id.starts_with(LOCAL_PREFIX))
                .collect();
            st.prefetch(&ids)?;
        }
        let mut out = Vec::with_capacity(docs.len());
        for (given_id, parsed) in docs {
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    out.push(WriteOutcome {
                        id: given_id.unwrap_or_default(),
                        rev: None,
                        result: Err(e),
                    });
                    continue;
                }
            };
            let id = match &parsed.id {
                Some(id) => id.clone(),
                None if new_edits => new_uuid(),
                None => {
                    out.push(WriteOutcome {
                        id: String::new(),
                        rev: parsed.rev.clone(),
                        result: Err(Error::bad_request(
                            "When `new_edits: false`, the document needs an `_id`",
                        )),
                    });
                    continue;
                }
            };
            let rev = parsed.rev.clone();
            let result = if id.starts_with(LOCAL_PREFIX) {
                Err(Error::bad_request(
                    "write _local/ documents with put_local; they have no revision tree",
                ))
            } else if new_edits {
                write_edit(&mut st, &id, parsed)
            } else {
                write_replicated(&mut st, &id, parsed)
            };
            out.push(WriteOutcome { id, rev, result });
        }
        if st.dirty {
            st.commit(&mut guard)?;
        }
        Ok(out)
    }
}

/// A document as a write call receives it.
pub(crate) trait DocIn {
    /// The checked parts, and the `_id` given when the check fails (for the result).
    fn parse(self) -> (Option<String>, Result<ParsedDoc>);
}

impl DocIn for Value {
    fn parse(self) -> (Option<String>, Result<ParsedDoc>) {
        let given_id = self.get("_id").and_then(Value::as_str).map(str::to_owned);
        (given_id, parse_doc(self))
    }
}

impl DocIn for ParsedDoc {
    fn parse(self) -> (Option<String>, Result<ParsedDoc>) {
        (self.id.clone(), Ok(self))
    }
}

impl DocIn for &RawValue {
    fn parse(self) -> (Option<String>, Result<ParsedDoc>) {
        match parse_doc_json(self) {
            Ok(p) => (None, Ok(p)),
            Err(e) => (id_of_json(self.get()), Err(e)),
        }
    }
}

/// The document's tree with `path` added: a new tree for a new document, else a copy of the
/// current one with `path` merged. Also the revisions stemming dropped, and how the path
/// merged (`None` for a new tree).
fn with_path(
    current: Option<&DocRecord>,
    path: &RevPath,
    deleted: bool,
    limit: u64,
) -> (RevTree, Vec<Rev>, Option<MergeKind>) {
    match current {
        None => {
            let mut tree = RevTree::new(path, deleted);
            let stemmed = tree.stem(limit);
            (tree, stemmed, None)
        }
        Some(rec) => {
            let mut tree = rec.tree.clone();
            let outcome = tree.merge(path, deleted, limit);
            (tree, outcome.stemmed, Some(outcome.kind))
        }
    }
}

/// A normal edit (`new_edits=true`), CouchDB's rules (`couch_db_updater:merge_rev_tree/4`).
pub(crate) fn write_edit(st: &mut BatchState<'_>, id: &str, doc: ParsedDoc) -> Result<Rev> {
    let current = st.doc(id)?;
    let given = doc.rev.clone().or_else(|| {
        doc.revisions
            .as_ref()
            .and_then(|r| Rev::new(r.start, r.ids[0].clone()).ok())
    });
    let conflict = || Error::Conflict { id: id.to_owned() };
    let parent = match (&current, given) {
        (None, None) => None,
        // "old revs specified but none exist" (couch_db:prep_and_validate_updates).
        (None, Some(_)) => return Err(conflict()),
        // Recreating a deleted document: the new revision is a child of the winning
        // tombstone, not a new root (couch_db_updater, PouchDB updateDoc.js).
        (Some(rec), None) if rec.tree.is_deleted() => Some(rec.tree.winner()),
        (Some(_), None) => return Err(conflict()),
        (Some(rec), Some(rev)) if rec.tree.is_leaf(&rev) => Some(rev),
        (Some(_), Some(_)) => return Err(conflict()),
    };
    let pos = parent.as_ref().map_or(1, |p| p.pos() + 1);
    // Only a stub refers to the parent's attachments (CouchDB does not carry others over).
    let has_stub = doc
        .attachments
        .iter()
        .any(|(_, a)| matches!(a, AttIn::Stub { .. }));
    let parent_atts = match &parent {
        Some(p) if has_stub => st.body(id, p)?.map(|b| metas(&b)).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut att_meta = Map::new();
    let mut digests: Vec<(String, String)> = Vec::new();
    let mut new_atts: Vec<(String, &[u8])> = Vec::new();
    for (name, att) in &doc.attachments {
        let meta = match att {
            AttIn::Data {
                content_type, data, ..
            } => {
                let digest = attachment_digest(data);
                new_atts.push((digest.clone(), data));
                AttMeta {
                    content_type: content_type.clone(),
                    digest,
                    length: data.len() as u64,
                    revpos: pos,
                }
            }
            AttIn::Stub { .. } => parent_atts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| Error::MissingStub {
                    id: id.to_owned(),
                    name: name.clone(),
                })?,
        };
        digests.push((name.clone(), meta.digest.clone()));
        att_meta.insert(name.clone(), meta.to_value());
    }
    let pairs: Vec<(&str, &str)> = digests
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_str()))
        .collect();
    let mut body = doc.body.into_map()?;
    let hash = new_rev_hash(parent.as_ref(), doc.deleted, &body, &pairs);
    let path = RevPath::child_of(parent.as_ref(), &hash)?;
    let new_rev = path.leaf();
    let limit = st.inner.revs_limit();
    let (tree, stemmed, kind) = with_path(current.as_ref(), &path, doc.deleted, limit);
    if kind.is_some_and(|k| k != MergeKind::NewLeaf) {
        return Err(conflict());
    }
    // Every check passed: only now does anything go into the batch.
    for (digest, data) in new_atts {
        st.store_att(&digest, data)?;
    }
    if !att_meta.is_empty() {
        body.insert("_attachments".into(), Value::Object(att_meta));
    }
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        Some((new_rev.clone(), Body::Map(body))),
        &stemmed,
        Edit::Local,
    )?;
    Ok(new_rev)
}

/// A replicated revision (`new_edits=false`): merged as given, no conflict check
/// (`couch_db_updater:merge_rev_tree(..., true)`).
fn write_replicated(st: &mut BatchState<'_>, id: &str, doc: ParsedDoc) -> Result<Rev> {
    let path = match (&doc.revisions, &doc.rev) {
        (Some(revs), _) => revs.to_path()?,
        (None, Some(rev)) => RevPath::from_rev(rev),
        (None, None) => {
            return Err(Error::bad_request(
                "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
            ))
        }
    };
    let leaf = path.leaf();
    let current = st.doc(id)?;
    if let Some(rec) = current.as_ref().filter(|rec| rec.tree.contains(&leaf)) {
        // PouchDB updateDoc.js: `revExists && !newEdits` is a silent success.
        st.held_by_origin(id, rec, &leaf)?;
        return Ok(leaf);
    }
    let mut att_meta = Map::new();
    let mut new_atts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    // The attachments of the nearest stored ancestor, read when a stub first needs them.
    let mut ancestor_atts: Option<Vec<(String, AttMeta)>> = None;
    for (name, att) in &doc.attachments {
        let meta = match att {
            AttIn::Data {
                content_type,
                data,
                revpos,
            } => {
                let digest = attachment_digest(data);
                if seen.insert(digest.clone()) {
                    new_atts.push((digest.clone(), data.clone()));
                }
                AttMeta {
                    content_type: content_type.clone(),
                    digest,
                    length: data.len() as u64,
                    revpos: revpos.unwrap_or(leaf.pos()),
                }
            }
            AttIn::Stub {
                content_type,
                digest,
                revpos,
            } => {
                let length = match digest {
                    Some(d) => match new_atts.iter().find(|(nd, _)| nd == d) {
                        Some((_, data)) => Some(data.len() as u64),
                        None => st.att_len(d)?,
                    },
                    None => None,
                };
                match (digest, length) {
                    (Some(digest), Some(length)) => AttMeta {
                        content_type: content_type
                            .clone()
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        digest: digest.clone(),
                        length,
                        revpos: revpos.unwrap_or(leaf.pos()),
                    },
                    // A digest this store does not hold: Apache CouchDB gives a compressible
                    // attachment the digest of its gzipped bytes, which differs from ours
                    // for the same bytes. Resolve the stub as CouchDB does.
                    _ => {
                        let stored = match &mut ancestor_atts {
                            Some(atts) => atts,
                            None => ancestor_atts.insert(nearest_stored_atts(
                                st,
                                id,
                                current.as_ref(),
                                &path,
                            )?),
                        };
                        stored
                            .iter()
                            .find(|(n, m)| n == name && revpos.is_none_or(|p| p == m.revpos))
                            .map(|(_, m)| m.clone())
                            .ok_or_else(|| Error::MissingStub {
                                id: id.to_owned(),
                                name: name.clone(),
                            })?
                    }
                }
            }
        };
        att_meta.insert(name.clone(), meta.to_value());
    }
    // Every check passed: only now does anything go into the batch.
    for (digest, data) in &new_atts {
        st.store_att(digest, data)?;
    }
    let limit = st.inner.revs_limit();
    let (tree, stemmed, _) = with_path(current.as_ref(), &path, doc.deleted, limit);
    let mut body = doc.body;
    if !att_meta.is_empty() {
        body.push("_attachments", Value::Object(att_meta));
    }
    let keep_body = tree.contains(&leaf);
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        keep_body.then(|| (leaf.clone(), body)),
        &stemmed,
        Edit::Replicated { leaf: &leaf },
    )?;
    Ok(leaf)
}

/// The attachments of the newest ancestor of `path`'s leaf whose body this store holds,
/// none if it holds none. CouchDB resolves a replicated revision's stubs against that
/// revision, by name and `revpos` (`couch_db:prep_and_validate_replicated_updates`,
/// `couch_att:merge_stubs`).
fn nearest_stored_atts(
    st: &mut BatchState<'_>,
    id: &str,
    current: Option<&DocRecord>,
    path: &RevPath,
) -> Result<Vec<(String, AttMeta)>> {
    let Some(rec) = current else {
        return Ok(Vec::new());
    };
    let ancestors: Vec<Rev> = path.revs().collect();
    // Newest first, the leaf itself left out.
    for rev in ancestors.iter().rev().skip(1) {
        if !rec.tree.contains(rev) {
            continue;
        }
        if let Some(body) = st.body(id, rev)? {
            return Ok(metas(&body));
        }
    }
    Ok(Vec::new())
}
