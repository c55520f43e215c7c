//! Document reads: `get` with CouchDB's options, `open_revs`, `_bulk_get` and `_revs_diff`,
//! and the one function that turns a stored revision into CouchDB's document JSON.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use settee_revtree::{Rev, RevTree, RevsDiff};

use crate::attachments::{chunks, encoded, metas, not_stored};
use crate::keys::{self, DocRecord};
use crate::validate::LOCAL_PREFIX;
use crate::{
    BulkGetDoc, BulkGetError, BulkGetOptions, BulkGetRequest, BulkGetResult, Database, Error,
    GetOptions, OpenRevResult, OpenRevs, Result,
};

/// CouchDB's `atts_since` rule (`couch_db:find_ancestor_rev_pos`): the position of the
/// newest of `since` that lies on `rev`'s own path (`rev` itself or an ancestor), `None` if
/// none does. Attachments with a `revpos` up to it are sent as stubs. A revision of `since` on
/// another branch says nothing about this branch's attachments: the reader holding `2-s`
/// may lack an attachment that `2-a` added, though both are at position 2, and a stub of it
/// would be refused (`missing_stub`).
fn atts_since_pos(tree: &RevTree, rev: &Rev, since: &[Rev]) -> Option<u64> {
    if since.is_empty() {
        return None;
    }
    tree.ancestry(rev).and_then(|path| {
        path.revs()
            .filter(|r| since.contains(r))
            .map(|r| r.pos())
            .max()
    })
}

impl Database {
    pub(crate) fn load_doc(&self, id: &str) -> Result<Option<DocRecord>> {
        let inner = &self.inner;
        match inner
            .tree
            .get(keys::doc_key(id))
            .map_err(|e| inner.storage(e))?
        {
            Some(bytes) => Ok(Some(DocRecord::decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The body of revision `rev` of the document whose record is `rec`: inline for the
    /// winner, under `R` for any other revision that still has one.
    pub(crate) fn load_body(
        &self,
        id: &str,
        rec: &DocRecord,
        rev: &Rev,
    ) -> Result<Option<Map<String, Value>>> {
        if *rev == rec.tree.winner() {
            return crate::deep_json::from_slice(&rec.body)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("body of {id:?} at {rev}: {e}")));
        }
        self.inner.read_rbody(id, rev)
    }

    /// Reads a document (`GET /{db}/{id}`): the winner, or `opts.rev`, as CouchDB's JSON
    /// with `_id`, `_rev`, the body, `_attachments` (stubs unless asked), `_deleted` for a
    /// tombstone, and the meta fields the options ask for.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::{Database, GetOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = Database::open(dir.path().join("db"))?;
    /// let r1 = db.put(json!({"_id": "a", "v": 1}))?.rev.unwrap();
    /// db.put(json!({"_id": "a", "_rev": r1.to_string(), "v": 2}))?;
    /// let doc = db.get("a", &GetOptions { revs: true, ..Default::default() })?;
    /// assert_eq!(doc["v"], 2);
    /// assert_eq!(doc["_revisions"]["start"], 2);
    /// let old = db.get("a", &GetOptions { rev: Some(r1), ..Default::default() })?;
    /// assert_eq!(old["v"], 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] with reason `missing` (no such document or revision, or its body
    /// was compacted away) or `deleted` (the winner is a tombstone and no `rev` was given);
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn get(&self, id: &str, opts: &GetOptions) -> Result<Value> {
        if id.starts_with(LOCAL_PREFIX) {
            return self.get_local(id);
        }
        let rec = self
            .load_doc(id)?
            .ok_or_else(|| Error::not_found(id, "missing"))?;
        let rev = match &opts.rev {
            None => {
                let leaf = rec.tree.winning_leaf();
                if leaf.deleted {
                    return Err(Error::not_found(id, "deleted"));
                }
                leaf.rev
            }
            Some(r) if opts.latest => rec
                .tree
                .latest(r)
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(id, "missing"))?,
            Some(r) => r.clone(),
        };
        self.render_rev(id, &rec, &rev, opts)?
            .ok_or_else(|| Error::not_found(id, "missing"))
    }

    /// Renders revision `rev` of a document, or `None` if its body is not stored.
    pub(crate) fn render_rev(
        &self,
        id: &str,
        rec: &DocRecord,
        rev: &Rev,
        opts: &GetOptions,
    ) -> Result<Option<Value>> {
        if !rec.tree.contains(rev) {
            return Ok(None);
        }
        let Some(body) = self.load_body(id, rec, rev)? else {
            return Ok(None);
        };
        let mut out = Map::with_capacity(body.len() + 4);
        out.insert("_id".into(), Value::String(id.to_owned()));
        out.insert("_rev".into(), Value::String(rev.to_string()));
        let atts = metas(&body);
        for (k, v) in body {
            if k != "_attachments" {
                out.insert(k, v);
            }
        }
        if !atts.is_empty() {
            let since = atts_since_pos(&rec.tree, rev, &opts.atts_since);
            let want_data = opts.attachments || !opts.atts_since.is_empty();
            let mut map = Map::new();
            for (name, meta) in atts {
                // Without a known ancestor every attachment comes with its data, revpos 0
                // included (CouchDB gives that revpos to attachments written with
                // new_edits=false and no revpos).
                // Inline data is decoded, as CouchDB sends it (`couch_att:to_json`).
                let v = if want_data && since.is_none_or(|s| meta.revpos > s) {
                    let data = chunks::read_all(&self.inner, &meta.digest)?
                        .ok_or_else(|| not_stored(id, &name, &meta.digest))?;
                    let data = encoded::decode_all(
                        &meta.digest,
                        meta.stored_encoding(),
                        meta.length,
                        data,
                    )?;
                    meta.inline(&data, opts.att_encoding_info)
                } else {
                    meta.stub(opts.att_encoding_info)
                };
                map.insert(name, v);
            }
            out.insert("_attachments".into(), Value::Object(map));
        }
        if rec.tree.is_deleted_rev(rev) == Some(true) {
            out.insert("_deleted".into(), Value::Bool(true));
        }
        if opts.conflicts || opts.meta {
            let c = rec.tree.conflicts();
            if !c.is_empty() {
                out.insert("_conflicts".into(), json!(c));
            }
        }
        if opts.deleted_conflicts || opts.meta {
            let c = rec.tree.deleted_conflicts();
            if !c.is_empty() {
                out.insert("_deleted_conflicts".into(), json!(c));
            }
        }
        if opts.revs {
            if let Some(revs) = rec.tree.revisions(rev) {
                out.insert("_revisions".into(), json!(revs));
            }
        }
        if opts.revs_info || opts.meta {
            if let Some(info) = rec.tree.revs_info(rev) {
                let list: Vec<Value> = info
                    .into_iter()
                    .map(|(r, s)| json!({"rev": r, "status": s.as_str()}))
                    .collect();
                out.insert("_revs_info".into(), Value::Array(list));
            }
        }
        if opts.local_seq {
            out.insert("_local_seq".into(), json!(rec.seq));
        }
        Ok(Some(Value::Object(out)))
    }

    /// Reads several revisions of a document (`GET /{db}/{id}?open_revs=...`): every leaf
    /// (`OpenRevs::All`, deleted leaves included, best first) or the listed revisions, each
    /// as `{ok: doc}` or `{missing: rev}`. With `opts.latest`, a listed revision that is
    /// not a leaf is replaced by the leaves that descend from it. `opts.rev` is ignored.
    ///
    /// A document that does not exist gives no results for `All` and `missing` for each
    /// listed revision.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn open_revs(
        &self,
        id: &str,
        revs: OpenRevs,
        opts: &GetOptions,
    ) -> Result<Vec<OpenRevResult>> {
        let rec = self.load_doc(id)?;
        let opts = GetOptions {
            rev: None,
            ..opts.clone()
        };
        let mut out = Vec::new();
        let Some(rec) = rec else {
            if let OpenRevs::Revs(list) = revs {
                out.extend(list.into_iter().map(OpenRevResult::Missing));
            }
            return Ok(out);
        };
        let wanted: Vec<(Rev, Rev)> = match revs {
            OpenRevs::All => rec
                .tree
                .leaves()
                .into_iter()
                .map(|l| (l.rev.clone(), l.rev))
                .collect(),
            OpenRevs::Revs(list) => {
                let mut v = Vec::new();
                for r in list {
                    if opts.latest {
                        let leaves = rec.tree.latest(&r);
                        if leaves.is_empty() {
                            v.push((r.clone(), r.clone()));
                        }
                        for l in leaves {
                            if !v.iter().any(|(_, x)| *x == l) {
                                v.push((r.clone(), l));
                            }
                        }
                    } else {
                        v.push((r.clone(), r));
                    }
                }
                v
            }
        };
        for (asked, rev) in wanted {
            match self.render_rev(id, &rec, &rev, &opts)? {
                Some(doc) => out.push(OpenRevResult::Ok(doc)),
                None => out.push(OpenRevResult::Missing(asked)),
            }
        }
        Ok(out)
    }

    /// `POST /{db}/_bulk_get`: for each request item, the asked revision (or, without one,
    /// every leaf) as `{ok: doc}` or `{error: {id, rev, error, reason}}`. Each item's
    /// `atts_since` applies to that item; `opts.attachments` inlines attachment bodies.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures; a missing document or
    /// revision is an `error` entry, not an `Err`.
    pub fn bulk_get(
        &self,
        reqs: &[BulkGetRequest],
        opts: &BulkGetOptions,
    ) -> Result<Vec<BulkGetResult>> {
        let get = GetOptions {
            revs: opts.revs,
            latest: opts.latest,
            attachments: opts.attachments,
            ..Default::default()
        };
        self.bulk_get_with(reqs, &get)
    }

    /// [`Database::bulk_get`] with any of a document read's options (`att_encoding_info`,
    /// which the replicator's fetch from a store always asks, so that encoded attachments
    /// keep their encoding on the way); each request's `atts_since` replaces
    /// `opts.atts_since`, and `opts.rev` is ignored.
    ///
    /// # Errors
    /// As [`Database::bulk_get`].
    pub fn bulk_get_with(
        &self,
        reqs: &[BulkGetRequest],
        opts: &GetOptions,
    ) -> Result<Vec<BulkGetResult>> {
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let get = GetOptions {
                atts_since: req.atts_since.clone(),
                ..opts.clone()
            };
            let revs = match &req.rev {
                Some(r) => OpenRevs::Revs(vec![r.clone()]),
                None => OpenRevs::All,
            };
            let missing = |rev: String| {
                BulkGetDoc::Error(BulkGetError {
                    id: req.id.clone(),
                    rev: Some(rev),
                    error: "not_found".into(),
                    reason: "missing".into(),
                })
            };
            let mut docs: Vec<BulkGetDoc> = self
                .open_revs(&req.id, revs, &get)?
                .into_iter()
                .map(|r| match r {
                    OpenRevResult::Ok(doc) => BulkGetDoc::Ok(doc),
                    OpenRevResult::Missing(rev) => missing(rev.to_string()),
                })
                .collect();
            if docs.is_empty() {
                docs.push(missing("undefined".into()));
            }
            out.push(BulkGetResult {
                id: req.id.clone(),
                docs,
            });
        }
        Ok(out)
    }

    /// `POST /{db}/_revs_diff`: for each id, the given revisions this store lacks and the
    /// leaves that may be their ancestors. Ids with nothing missing are left out.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let rev = db.put(serde_json::json!({"_id": "a"}))?.rev.unwrap();
    /// let asked = BTreeMap::from([("a".to_string(), vec![rev, "2-x".parse()?])]);
    /// let diff = db.revs_diff(asked)?;
    /// assert_eq!(diff["a"].missing[0].to_string(), "2-x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        let mut out = BTreeMap::new();
        for (id, asked) in revs {
            let diff = match self.load_doc(&id)? {
                Some(rec) => rec.tree.revs_diff(asked.iter()),
                None => {
                    let mut missing: Vec<Rev> = Vec::new();
                    for r in asked {
                        if !missing.contains(&r) {
                            missing.push(r);
                        }
                    }
                    RevsDiff {
                        missing,
                        possible_ancestors: Vec::new(),
                    }
                }
            };
            if !diff.missing.is_empty() {
                out.insert(id, diff);
            }
        }
        Ok(out)
    }
}
