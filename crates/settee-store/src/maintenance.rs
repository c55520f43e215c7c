//! Maintenance: `compact` (drop bodies of non-leaf revisions, stale by-seq entries and
//! unreferenced attachments, keep every tree), `verify` (check every invariant of the
//! storage format) and `purge` (remove leaf revisions entirely, CouchDB's `_purge`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use settee_revtree::{Rev, RevPath, RevStatus, RevTree};

use std::sync::MutexGuard;

use crate::attachments::{self, metas};
use crate::database::{Counters, Inner};
use crate::keys::{self, DocRecord, SeqEntry};
use crate::sync_state::Edit;
use crate::write::BatchState;
use crate::{Database, Error, PurgeResult, Result};

/// What [`Database::verify`] counted in a consistent store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Documents whose winner is live.
    pub doc_count: u64,
    /// Documents whose winner is deleted.
    pub doc_del_count: u64,
    /// Entries in the by-seq index, stale ones included.
    pub seq_entries: u64,
    /// By-seq entries whose document has been written again since (skipped by readers,
    /// removed by [`Database::compact`]).
    pub stale_seq_entries: u64,
    /// Stored revision bodies (each winner's, inline in its record, and the others).
    pub bodies: u64,
    /// Stored attachments.
    pub attachments: u64,
    /// Attachments being staged ([`crate::Database::stage_attachment`]) and not committed
    /// yet: 0 right after opening, which removes what a crash left staged.
    pub staged_attachments: u64,
    /// The highest sequence in the by-seq index.
    pub max_seq: u64,
    /// Entries in the Mango indexes.
    pub index_entries: u64,
    /// Sync-state entries (documents not known to be on a registered remote, per remote).
    pub unsynced_entries: u64,
}

/// Documents compacted per batch: bounds the memory a compaction holds.
const COMPACT_BATCH: usize = 1000;

/// Counts one more change in a compaction batch and commits the batch once it holds
/// [`COMPACT_BATCH`] of them.
fn commit_every(
    inner: &Inner,
    guard: &mut MutexGuard<'_, Counters>,
    batch: &mut sled::Batch,
    in_batch: &mut usize,
) -> Result<()> {
    *in_batch += 1;
    if *in_batch >= COMPACT_BATCH {
        let counters = **guard;
        inner.commit(guard, std::mem::take(batch), counters)?;
        *in_batch = 0;
    }
    Ok(())
}

impl Database {
    /// Compacts the store: removes the bodies of revisions that are not leaves (the tree
    /// keeps their ids, now `missing`, so `_revisions` and `_revs_diff` are unchanged),
    /// removes stale by-seq entries, then removes attachments no stored revision refers to
    /// (with their chunks) and chunks no attachment or staged write owns, and drops the view
    /// indexes no design document uses ([`Database::view_cleanup`]).
    /// Writes wait while it runs; sequences do not change.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::{Database, GetOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = Database::open(dir.path().join("db"))?;
    /// let r1 = db.put(json!({"_id": "a", "v": 1}))?.rev.unwrap();
    /// db.put(json!({"_id": "a", "_rev": r1.to_string(), "v": 2}))?;
    /// db.compact()?;
    /// let old = db.get("a", &GetOptions { rev: Some(r1), ..Default::default() });
    /// assert_eq!(old.unwrap_err().name(), "not_found");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; a compaction stopped by an error leaves the
    /// store consistent (each batch is atomic) and can be run again.
    pub fn compact(&self) -> Result<()> {
        crate::bodies::train::compact(&self.inner)?; // bodies/train.rs: retrain, re-encode, drop old dictionaries
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let prefix = [keys::DOC];
        for item in inner.tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            let mut rec = DocRecord::decode(id, &v)?;
            let old = rec.tree.compactable();
            if old.is_empty() {
                continue;
            }
            for rev in &old {
                rec.tree.set_missing(rev);
                batch.remove(keys::rev_key(id, rev));
            }
            batch.insert(k, rec.encode()?);
            commit_every(inner, &mut guard, &mut batch, &mut in_batch)?;
        }
        let counters = *guard;
        inner.commit(&mut guard, std::mem::take(&mut batch), counters)?;
        // Stale by-seq entries: drop the marked entries with their markers.
        in_batch = 0;
        for item in inner
            .tree
            .range(keys::chunk_key(0)..=keys::chunk_key(u64::MAX))
        {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let entries = keys::decode_chunk(&k, &v)?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let mut stale: HashSet<u64> = HashSet::new();
            for m in inner
                .tree
                .range(keys::stale_key(first.seq)..=keys::stale_key(last.seq))
            {
                let (mk, _) = m.map_err(|e| inner.storage(e))?;
                stale.insert(keys::decode_u64(&mk[1..], "stale marker")?);
                batch.remove(mk);
            }
            if stale.is_empty() {
                continue;
            }
            let kept: Vec<_> = entries
                .into_iter()
                .filter(|e| !stale.contains(&e.seq))
                .collect();
            // A chunk that loses its first entry moves to its new first seq. A record's
            // `solo` flag stays false for a chunk that shrinks to one entry (only chunks
            // written with one entry are solo), which is safe: its entry is just marked
            // stale when superseded.
            keys::rewrite_chunk(&mut batch, &k, &kept)?;
            commit_every(inner, &mut guard, &mut batch, &mut in_batch)?;
        }
        let counters = *guard;
        inner.commit(&mut guard, std::mem::take(&mut batch), counters)?;
        // Attachments: mark every digest a stored body refers to (winners' inline bodies and
        // the others), sweep the rest. The writer lock is held, so no write adds a reference
        // meanwhile.
        let mut live: HashSet<String> = HashSet::new();
        let parse = |k: &[u8], v: &[u8]| -> Result<serde_json::Map<String, serde_json::Value>> {
            serde_json::from_slice(v).map_err(|e| {
                Error::corrupt(format!(
                    "a body under {:?}: {e}",
                    String::from_utf8_lossy(k)
                ))
            })
        };
        for item in inner.tree.scan_prefix([keys::REV]) {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            for (_, m) in metas(&parse(&k, &v)?) {
                live.insert(m.digest);
            }
        }
        for item in inner.tree.scan_prefix([keys::DOC]) {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            let rec = DocRecord::decode(&id, &v)?;
            for (_, m) in metas(&parse(&k, &rec.body)?) {
                live.insert(m.digest);
            }
        }
        let mut commit = |batch: sled::Batch| {
            let counters = *guard;
            inner.commit(&mut guard, batch, counters)
        };
        attachments::sweep::sweep(inner, &live, &mut commit)?;
        self.view_cleanup()?;
        self.flush()
    }

    /// Checks every invariant of the storage format (a full scan; `fsck`):
    ///
    /// - each by-seq chunk decodes, its key is its first entry's seq, and no seq appears
    ///   twice; each entry names a document whose record has that seq (a live entry, with
    ///   the record's leaves) or a later one (a stale entry, which has a marker naming a
    ///   seq after it and not after the record's); each marker has its entry; each
    ///   document's seq has a live entry, alone in its chunk if the record says so;
    /// - each winner's body is inline in its record; each other available revision has its
    ///   body under `R`, every leaf is available, and every stored `R` body belongs to an
    ///   available revision that is not the winner;
    /// - every attachment a stored body refers to is stored; each chunked one's head
    ///   matches its chunks, and every chunk belongs to an attachment or a staged write;
    /// - `doc_count` / `doc_del_count` match the records, and `update_seq` is at least every
    ///   seq;
    /// - the Mango index catalog is what the query design documents define, and every index
    ///   holds exactly the entries of the documents it covers.
    /// - the sync state: every entry names a registered remote and an existing document,
    ///   lists only leaves of it, and the per-remote counters equal the entries.
    ///
    /// Takes the writer lock, so it sees one state of the store.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first violation; [`Error::Storage`] on I/O errors.
    pub fn verify(&self) -> Result<VerifyReport> {
        let inner = &*self.inner;
        let guard = inner.lock_writer();
        let storage = |e| inner.storage(e);
        let mut report = VerifyReport::default();
        let mut seqs: BTreeMap<u64, SeqEntry> = BTreeMap::new();
        let mut chunk_len: BTreeMap<u64, usize> = BTreeMap::new();
        for item in inner
            .tree
            .range(keys::chunk_key(0)..=keys::chunk_key(u64::MAX))
        {
            let (k, v) = item.map_err(storage)?;
            let entries = keys::decode_chunk(&k, &v)?;
            chunk_len.insert(entries[0].seq, entries.len());
            for e in entries {
                let seq = e.seq;
                if let Some(other) = seqs.insert(seq, e) {
                    return Err(Error::corrupt(format!(
                        "seq {seq} is in the by-seq index twice (once for {:?})",
                        other.id
                    )));
                }
            }
        }
        let mut markers: BTreeMap<u64, u64> = BTreeMap::new();
        for item in inner
            .tree
            .range(keys::stale_key(0)..=keys::stale_key(u64::MAX))
        {
            let (k, v) = item.map_err(storage)?;
            markers.insert(
                keys::decode_u64(&k[1..], "stale marker")?,
                keys::decode_u64(&v, "stale marker")?,
            );
        }
        report.seq_entries = seqs.len() as u64;
        report.max_seq = seqs.keys().next_back().copied().unwrap_or(0);
        let mut atts_needed: HashSet<String> = HashSet::new();
        let mut bodies_expected: HashSet<Vec<u8>> = HashSet::new();
        let mut doc_seqs: HashMap<String, u64> = HashMap::new();
        for item in inner.tree.scan_prefix([keys::DOC]) {
            let (k, v) = item.map_err(storage)?;
            let id = String::from_utf8(k[1..].to_vec())
                .map_err(|_| Error::corrupt("doc id is not UTF-8"))?;
            let rec = DocRecord::decode(&id, &v)?;
            let live = SeqEntry::of(rec.seq, &id, &rec.tree);
            if seqs.get(&rec.seq) != Some(&live) || markers.contains_key(&rec.seq) {
                return Err(Error::corrupt(format!(
                    "{id:?} has seq {} but the by-seq index has no live entry for it with its leaves",
                    rec.seq
                )));
            }
            if rec.solo && chunk_len.get(&rec.seq) != Some(&1) {
                return Err(Error::corrupt(format!(
                    "{id:?} says its entry {} is alone in its chunk, and it is not",
                    rec.seq
                )));
            }
            if rec.tree.is_deleted() {
                report.doc_del_count += 1;
            } else {
                report.doc_count += 1;
            }
            for leaf in rec.tree.leaves() {
                if leaf.status != RevStatus::Available {
                    return Err(Error::corrupt(format!(
                        "leaf {} of {id:?} is not available",
                        leaf.rev
                    )));
                }
            }
            let winner = rec.tree.winner();
            let body = self
                .load_body(&id, &rec, &winner)?
                .ok_or_else(|| Error::corrupt(format!("winner of {id:?} has no body")))?;
            for (_, m) in metas(&body) {
                atts_needed.insert(m.digest);
            }
            report.bodies += 1;
            for rev in rec.tree.revs() {
                if rev == winner || rec.tree.status(&rev) != Some(RevStatus::Available) {
                    continue;
                }
                let body = inner
                    .read_rbody(&id, &rev)?
                    .ok_or_else(|| Error::corrupt(format!("body of {id:?} at {rev} is missing")))?;
                for (_, m) in metas(&body) {
                    atts_needed.insert(m.digest);
                }
                bodies_expected.insert(keys::rev_key(&id, &rev));
            }
            doc_seqs.insert(id, rec.seq);
        }
        for (seq, entry) in &seqs {
            let id = &entry.id;
            match (doc_seqs.get(id), markers.get(seq)) {
                (None, _) => {
                    return Err(Error::corrupt(format!(
                        "by-seq entry {seq} names {id:?}, which has no record"
                    )))
                }
                (Some(current), _) if current < seq => {
                    return Err(Error::corrupt(format!(
                        "by-seq entry {seq} names {id:?}, whose record is at {current}"
                    )))
                }
                (Some(current), Some(by)) if current > seq && by > seq && by <= current => {
                    report.stale_seq_entries += 1
                }
                (Some(current), None) if current > seq => {
                    return Err(Error::corrupt(format!(
                        "by-seq entry {seq} of {id:?} is stale (the record is at {current}) \
                         and not marked"
                    )))
                }
                (Some(current), Some(by)) if current > seq => {
                    return Err(Error::corrupt(format!(
                        "by-seq entry {seq} of {id:?} is marked superseded by {by}, \
                         the record is at {current}"
                    )))
                }
                (Some(_), _) => {}
            }
        }
        for seq in markers.keys() {
            if !seqs.contains_key(seq) {
                return Err(Error::corrupt(format!(
                    "stale marker {seq} has no by-seq entry"
                )));
            }
        }
        for item in inner.tree.scan_prefix([keys::REV]) {
            let (k, _) = item.map_err(storage)?;
            if !bodies_expected.contains(k.as_ref()) {
                return Err(Error::corrupt(format!(
                    "stray body {:?}",
                    String::from_utf8_lossy(&k)
                )));
            }
            report.bodies += 1;
        }
        (report.attachments, report.staged_attachments) =
            attachments::sweep::verify(inner, &atts_needed)?;
        if (guard.doc_count, guard.doc_del_count) != (report.doc_count, report.doc_del_count) {
            return Err(Error::corrupt(format!(
                "counters say {}/{} live/deleted docs, records say {}/{}",
                guard.doc_count, guard.doc_del_count, report.doc_count, report.doc_del_count
            )));
        }
        if guard.update_seq < report.max_seq {
            return Err(Error::corrupt(format!(
                "update_seq {} is behind by-seq entry {}",
                guard.update_seq, report.max_seq
            )));
        }
        report.index_entries = self.verify_indexes()?;
        report.unsynced_entries = self.verify_sync(guard.update_seq)?;
        Ok(report)
    }

    /// Purges revisions (`POST /{db}/_purge`): each given leaf revision is removed with the
    /// branch only it uses, as if it had never been written. A document whose every leaf is
    /// purged disappears (from `_all_docs`, `_changes` and the counts). A document that keeps
    /// leaves gets a new sequence. Revisions that are not leaves are ignored, as CouchDB
    /// does. Unreferenced attachments stay until the next [`Database::compact`].
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; nothing is purged on error.
    pub fn purge(&self, revs: BTreeMap<String, Vec<Rev>>) -> Result<PurgeResult> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut st = BatchState::new(inner, *guard, None);
        let mut purged = BTreeMap::new();
        for (id, asked) in revs {
            let Some(old) = st.doc(&id)? else {
                purged.insert(id, Vec::new());
                continue;
            };
            let leaves = old.tree.leaves();
            let gone: BTreeSet<Rev> = leaves
                .iter()
                .filter(|l| asked.contains(&l.rev))
                .map(|l| l.rev.clone())
                .collect();
            if gone.is_empty() {
                purged.insert(id, Vec::new());
                continue;
            }
            if gone.len() == leaves.len() {
                st.remove_doc(&id, &old)?;
            } else {
                let deleted: BTreeMap<Rev, bool> =
                    leaves.iter().map(|l| (l.rev.clone(), l.deleted)).collect();
                let mut tree: Option<RevTree> = None;
                for (start, hashes) in old.tree.paths() {
                    let path = RevPath::new(start, hashes)?;
                    let leaf = path.leaf();
                    if gone.contains(&leaf) {
                        continue;
                    }
                    let del = deleted.get(&leaf).copied().unwrap_or(false);
                    match &mut tree {
                        None => tree = Some(RevTree::new(&path, del)),
                        Some(t) => {
                            t.merge(&path, del, inner.revs_limit());
                        }
                    }
                }
                let Some(tree) = tree else {
                    return Err(Error::corrupt(format!("purge of {id:?} left no leaf")));
                };
                // Rebuilding marks inner revisions missing; drop their bodies so that a
                // stored body always means an available node.
                let dropped: Vec<Rev> = old
                    .tree
                    .revs()
                    .into_iter()
                    .filter(|r| tree.status(r) != Some(RevStatus::Available))
                    .collect();
                st.put_doc(&id, Some(&old), tree, None, &dropped, Edit::Purge)?;
            }
            purged.insert(id, gone.into_iter().collect());
        }
        if st.dirty {
            st.counters.purge_seq = st.counters.purge_seq.saturating_add(1);
            st.commit(&mut guard)?;
        }
        Ok(PurgeResult {
            purge_seq: guard.purge_seq,
            purged,
        })
    }
}
