//! Document writes: `put`, `delete` and `bulk_docs` with `new_edits` true (edits checked
//! against the rev tree, 409 on a stale rev) or false (replicated revisions merged as
//! given). One call builds one `sled::Batch` under the writer lock and applies it at once;
//! each document's records (record, body, by-seq entry and removal of the old one,
//! attachments, counters) are all in it, so a crash keeps or loses each write whole.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use settee_revtree::{new_rev_hash, MergeKind, Rev, RevPath, RevTree};

use crate::attachments::{attachment_digest, metas, AttMeta};
use crate::database::{new_uuid, Counters, Inner};
use crate::keys::{self, DocRecord};
use crate::validate::{parse_doc, AttIn, ParsedDoc, LOCAL_PREFIX};
use crate::{Database, DocResult, Error, Result};

/// The outcome of one document of a write call.
pub(crate) struct WriteOutcome {
    pub(crate) id: String,
    pub(crate) rev: Option<Rev>,
    pub(crate) result: Result<Rev>,
}

/// A batch being built: the records as this call has left them so far, so that several
/// documents with one id in one call apply in order.
pub(crate) struct BatchState<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) batch: sled::Batch,
    pub(crate) counters: Counters,
    docs: HashMap<String, Option<DocRecord>>,
    bodies: HashMap<Vec<u8>, Map<String, Value>>,
    atts: HashMap<String, u64>,
    pub(crate) dirty: bool,
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
    pub(crate) fn new(inner: &'a Inner, counters: Counters) -> BatchState<'a> {
        BatchState {
            inner,
            batch: sled::Batch::default(),
            counters,
            docs: HashMap::new(),
            bodies: HashMap::new(),
            atts: HashMap::new(),
            dirty: false,
        }
    }

    pub(crate) fn doc(&mut self, id: &str) -> Result<Option<DocRecord>> {
        if let Some(rec) = self.docs.get(id) {
            return Ok(rec.clone());
        }
        let inner = self.inner;
        match inner
            .tree
            .get(keys::doc_key(id))
            .map_err(|e| inner.storage(e))?
        {
            Some(bytes) => Ok(Some(DocRecord::decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    fn body(&self, id: &str, rev: &Rev) -> Result<Option<Map<String, Value>>> {
        let key = keys::rev_key(id, rev);
        if let Some(b) = self.bodies.get(&key) {
            return Ok(Some(b.clone()));
        }
        self.inner.read_body_key(id, rev, &key)
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

    /// Records a new state of document `id` in the batch: new record under a new seq, the
    /// new body, the old by-seq entry removed, stemmed bodies removed, counters adjusted.
    pub(crate) fn put_doc(
        &mut self,
        id: &str,
        old: Option<&DocRecord>,
        tree: RevTree,
        body: Option<(Rev, Map<String, Value>)>,
        removed_bodies: &[Rev],
    ) -> Result<u64> {
        let seq = self.counters.update_seq + 1;
        let rec = DocRecord { seq, tree };
        self.batch.insert(keys::doc_key(id), rec.encode()?);
        if let Some(old) = old {
            self.batch.remove(&keys::seq_key(old.seq)[..]);
        }
        self.batch.insert(&keys::seq_key(seq)[..], id.as_bytes());
        for rev in removed_bodies {
            let key = keys::rev_key(id, rev);
            self.bodies.remove(&key);
            self.batch.remove(key);
        }
        if let Some((rev, body)) = body {
            let key = keys::rev_key(id, &rev);
            let bytes = serde_json::to_vec(&body)
                .map_err(|e| Error::bad_request(format!("body of {id}: {e}")))?;
            self.batch.insert(key.clone(), bytes);
            self.bodies.insert(key, body);
        }
        self.count(DocState::of(old), DocState::of(Some(&rec)));
        self.counters.update_seq = seq;
        self.docs.insert(id.to_owned(), Some(rec));
        self.dirty = true;
        Ok(seq)
    }

    /// Removes document `id` entirely (purge of its last leaves).
    pub(crate) fn remove_doc(&mut self, id: &str, old: &DocRecord) {
        self.batch.remove(keys::doc_key(id));
        self.batch.remove(&keys::seq_key(old.seq)[..]);
        for rev in old.tree.revs() {
            self.batch.remove(keys::rev_key(id, &rev));
            self.bodies.remove(&keys::rev_key(id, &rev));
        }
        self.count(DocState::of(Some(old)), DocState::Absent);
        self.docs.insert(id.to_owned(), None);
        self.dirty = true;
    }

    fn count(&mut self, before: DocState, after: DocState) {
        let c = &mut self.counters;
        match before {
            DocState::Live => c.doc_count = c.doc_count.saturating_sub(1),
            DocState::Deleted => c.doc_del_count = c.doc_del_count.saturating_sub(1),
            DocState::Absent => {}
        }
        match after {
            DocState::Live => c.doc_count += 1,
            DocState::Deleted => c.doc_del_count += 1,
            DocState::Absent => {}
        }
    }
}

impl Inner {
    /// Reads and decodes a stored revision body.
    pub(crate) fn read_body_key(
        &self,
        id: &str,
        rev: &Rev,
        key: &[u8],
    ) -> Result<Option<Map<String, Value>>> {
        match self.tree.get(key).map_err(|e| self.storage(e))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("body of {id:?} at {rev}: {e}"))),
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
        let mut out = self.write_docs(vec![doc], true)?;
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
    /// and attachment stubs must name a digest the store holds (else `missing_stub`).
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
        Ok(self
            .write_docs(docs, new_edits)?
            .into_iter()
            .map(|o| match o.result {
                Ok(rev) => DocResult::ok(o.id, rev),
                Err(e) => DocResult::err(o.id, o.rev, &e),
            })
            .collect())
    }

    pub(crate) fn write_docs(
        &self,
        docs: Vec<Value>,
        new_edits: bool,
    ) -> Result<Vec<WriteOutcome>> {
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let mut st = BatchState::new(inner, *guard);
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let given_id = doc.get("_id").and_then(Value::as_str).map(str::to_owned);
            let parsed = match parse_doc(doc) {
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
            let counters = st.counters;
            inner.commit(&mut guard, st.batch, counters)?;
        }
        Ok(out)
    }
}

/// A normal edit (`new_edits=true`), CouchDB's rules (`couch_db_updater:merge_rev_tree/4`).
fn write_edit(st: &mut BatchState<'_>, id: &str, doc: ParsedDoc) -> Result<Rev> {
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
    let parent_atts = match &parent {
        Some(p) => st.body(id, p)?.map(|b| metas(&b)).unwrap_or_default(),
        None => Vec::new(),
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
    let hash = new_rev_hash(parent.as_ref(), doc.deleted, &doc.body, &pairs);
    let path = RevPath::child_of(parent.as_ref(), &hash)?;
    let new_rev = path.leaf();
    let limit = st.inner.revs_limit;
    let (tree, stemmed) = match &current {
        None => {
            let mut tree = RevTree::new(&path, doc.deleted);
            let stemmed = tree.stem(limit);
            (tree, stemmed)
        }
        Some(rec) => {
            let mut tree = rec.tree.clone();
            let outcome = tree.merge(&path, doc.deleted, limit);
            if outcome.kind != MergeKind::NewLeaf {
                return Err(conflict());
            }
            (tree, outcome.stemmed)
        }
    };
    // Every check passed: only now does anything go into the batch.
    for (digest, data) in new_atts {
        st.store_att(&digest, data)?;
    }
    let mut body = doc.body;
    if !att_meta.is_empty() {
        body.insert("_attachments".into(), Value::Object(att_meta));
    }
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        Some((new_rev.clone(), body)),
        &stemmed,
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
    if current.as_ref().is_some_and(|rec| rec.tree.contains(&leaf)) {
        // PouchDB updateDoc.js: `revExists && !newEdits` is a silent success.
        return Ok(leaf);
    }
    let mut att_meta = Map::new();
    let mut new_atts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
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
                let missing = || Error::MissingStub {
                    id: id.to_owned(),
                    name: name.clone(),
                };
                let digest = digest.clone().ok_or_else(missing)?;
                let length = match new_atts.iter().find(|(d, _)| *d == digest) {
                    Some((_, data)) => data.len() as u64,
                    None => st.att_len(&digest)?.ok_or_else(missing)?,
                };
                AttMeta {
                    content_type: content_type
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    digest,
                    length,
                    revpos: revpos.unwrap_or(leaf.pos()),
                }
            }
        };
        att_meta.insert(name.clone(), meta.to_value());
    }
    // Every check passed: only now does anything go into the batch.
    for (digest, data) in &new_atts {
        st.store_att(digest, data)?;
    }
    let limit = st.inner.revs_limit;
    let (tree, stemmed) = match &current {
        None => {
            let mut tree = RevTree::new(&path, doc.deleted);
            let stemmed = tree.stem(limit);
            (tree, stemmed)
        }
        Some(rec) => {
            let mut tree = rec.tree.clone();
            let outcome = tree.merge(&path, doc.deleted, limit);
            (tree, outcome.stemmed)
        }
    };
    let mut body = doc.body;
    if !att_meta.is_empty() {
        body.insert("_attachments".into(), Value::Object(att_meta));
    }
    let keep_body = tree.contains(&leaf);
    st.put_doc(
        id,
        current.as_ref(),
        tree,
        keep_body.then(|| (leaf.clone(), body)),
        &stemmed,
    )?;
    Ok(leaf)
}
