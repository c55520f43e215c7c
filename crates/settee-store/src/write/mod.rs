//! Document writes: `put`, `delete` and `bulk_docs` with `new_edits` true (edits checked
//! against the rev tree, 409 on a stale rev) or false (replicated revisions merged as
//! given). One call builds one `sled::Batch` under the writer lock and applies it at once;
//! each document's records (record, body, by-seq entry and removal of the old one,
//! attachments, counters) are all in it, so a crash keeps or loses each write whole.
//!
//! This file holds the calls; `batch.rs` the batch a call builds ([`BatchState`]), and
//! `merge.rs` how one document's revision joins its tree (an edit, or a replicated
//! revision).

use serde_json::value::RawValue;
use serde_json::Value;
use settee_revtree::Rev;

mod batch;
mod merge;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use batch::parse_body;
pub(crate) use batch::{BatchState, WriteOutcome};
pub(crate) use merge::write_edit;

use crate::database::new_uuid;
use crate::keys;
use crate::validate::{id_of_json, parse_doc, parse_doc_json, ParsedDoc, LOCAL_PREFIX};
use crate::{Database, DocResult, Error, Result};
use merge::write_replicated;

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
        let docs = guard.doc_count.saturating_add(guard.doc_del_count);
        drop(guard);
        crate::bodies::train::train_if_due(inner, docs)?;
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
