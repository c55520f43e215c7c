//! Mango queries on the store: `find` and `explain` (CouchDB's `_find` and `_explain`), and
//! the index calls (`create_index`, `get_indexes`, `delete_index`, CouchDB's `_index`).
//! The planning is `settee_query`'s; this module reads what the plan says, matches every
//! document it reads against the whole selector, and pages with bookmarks.
//!
//! Reads do not take the writer lock, and sled's iterators are not snapshots: a `find`
//! racing with writes sees each document as it is when read (never a deleted one, never one
//! that does not match), as CouchDB's `_find` sees a view being updated.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use settee_query::{DesignChange, FindRequest, IndexDef};

use crate::index::{BuildState, IndexProgress};
use crate::index_blocks;
use crate::keys::{self, DocHeader, DocRecord};
use crate::{Database, Error, GetOptions, Result};

/// The answer of [`Database::find`], CouchDB's `_find` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindResponse {
    /// The matching documents (or their requested fields), in index order.
    pub docs: Vec<Value>,
    /// Pass it back as `bookmark` for the next page. CouchDB sends one with every answer;
    /// PouchDB never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
    /// Why the query may be slow (no index used, `use_index` ignored, many documents read
    /// per result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// What the query read, when asked for with `execution_stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stats: Option<ExecutionStats>,
}

/// CouchDB's `execution_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStats {
    /// Index entries (or `_all_docs` rows) read.
    pub total_keys_examined: u64,
    /// Documents read and matched against the selector.
    pub total_docs_examined: u64,
    /// Always 0 here (a cluster's quorum reads).
    pub total_quorum_docs_examined: u64,
    /// Documents returned.
    pub results_returned: u64,
    /// Wall time of the query.
    pub execution_time_ms: f64,
}

/// The answer of [`Database::create_index`], CouchDB's `POST /{db}/_index` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateIndexResponse {
    /// `created`, or `exists` when the design document already held the same index.
    pub result: String,
    /// The design document id.
    pub id: String,
    /// The index name.
    pub name: String,
}

/// The answer of [`Database::get_indexes`], CouchDB's `GET /{db}/_index` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexList {
    /// How many indexes, `_all_docs` included.
    pub total_rows: u64,
    /// `_all_docs`, then each JSON index by design document and name: `{"ddoc", "name",
    /// "type", "partitioned", "def": {"fields": [...], "partial_filter_selector"?}}`.
    pub indexes: Vec<Value>,
}

/// Results above this many documents examined per result get CouchDB's warning
/// (`mango.index_scan_warning_threshold`'s default).
const SCAN_WARNING_RATIO: u64 = 10;

/// The smallest key above every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Counts and the page being built by one `find`.
struct Page<'r> {
    req: &'r FindRequest,
    docs: Vec<Value>,
    skip: usize,
    last: Option<Vec<u8>>,
    keys: u64,
    examined: u64,
}

impl Page<'_> {
    /// Whether the page is full (then the scan stops).
    fn full(&self) -> bool {
        self.docs.len() >= self.req.limit
    }

    /// Takes a matched document read at `entry`.
    fn push(&mut self, entry: &[u8], doc: Value) {
        self.last = Some(entry.to_vec());
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            self.docs.push(self.req.project(doc));
        }
    }
}

impl Database {
    /// The documents matching a Mango query (`POST /{db}/_find`): CouchDB's planner picks an
    /// index (see `settee_query::plan`), the part of it the selector allows is read, in the
    /// sort's direction, and each document read is matched against the whole selector.
    /// Deleted and design documents are never returned. An index that is not built yet
    /// (registered by a replicated design document) is built first.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_query::FindRequest;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.create_index(&json!({"index": {"fields": ["notebook", "updated_at"]}}))?;
    /// for (i, nb) in ["work", "home", "work"].iter().enumerate() {
    ///     db.put(json!({"_id": format!("n{i}"), "notebook": nb, "updated_at": i}))?;
    /// }
    /// let req = FindRequest::parse(&json!({
    ///     "selector": {"notebook": "work"},
    ///     "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
    ///     "fields": ["_id"], "limit": 20
    /// }))?;
    /// let found = db.find(&req)?;
    /// assert_eq!(found.docs, vec![json!({"_id": "n2"}), json!({"_id": "n0"})]);
    /// assert!(found.warning.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Query`]: `no_usable_index` for a sort no index serves, `invalid_index` for
    /// an unusable `use_index` without fallback, `invalid_bookmark`; [`Error::Storage`] /
    /// [`Error::Corrupt`] on storage failures.
    pub fn find(&self, req: &FindRequest) -> Result<FindResponse> {
        let started = Instant::now();
        let catalog = self.inner.indexes.current();
        let defs: Vec<IndexDef> = catalog.entries.iter().map(|e| e.def.clone()).collect();
        let plan = settee_query::plan(req, &defs)?;
        let resume = plan.resume_after(req.bookmark.as_deref())?;
        let mut page = Page {
            req,
            docs: Vec::with_capacity(req.limit.min(1000)),
            skip: req.skip,
            last: None,
            keys: 0,
            examined: 0,
        };
        if !plan.is_empty() && req.limit > 0 {
            match plan.index_position() {
                Some(pos) => {
                    let entry = &catalog.entries[pos];
                    if entry.state != BuildState::Ready {
                        self.build_index(entry.number, &mut |_| {})?;
                    }
                    let range = plan
                        .key_range()
                        .ok_or_else(|| Error::corrupt("a JSON index plan without a key range"))?;
                    self.scan_index(
                        entry.number,
                        entry.def.fields.len(),
                        &range,
                        resume.as_deref(),
                        plan.is_descending(),
                        &mut page,
                    )?;
                }
                None => {
                    let (start, end) = plan.id_range().unwrap_or((None, None));
                    self.scan_all_docs(
                        start.as_deref(),
                        end.as_deref(),
                        resume.as_deref(),
                        plan.is_descending(),
                        &mut page,
                    )?;
                }
            }
        }
        let returned = page.docs.len() as u64;
        let mut warning = plan.warning();
        let ratio = page.examined.checked_div(returned).unwrap_or(page.examined);
        if ratio > SCAN_WARNING_RATIO {
            let w = "The number of documents examined is high in proportion to the number of results returned. Consider adding a more specific index to improve this.";
            warning = Some(match warning {
                Some(before) => format!("{before}\n{w}"),
                None => w.to_owned(),
            });
        }
        let bookmark = match &page.last {
            Some(entry) => plan.bookmark(entry),
            None => req.bookmark.clone().unwrap_or_else(|| "nil".into()),
        };
        let execution_stats = req.execution_stats.then(|| ExecutionStats {
            total_keys_examined: page.keys,
            total_docs_examined: page.examined,
            total_quorum_docs_examined: 0,
            results_returned: returned,
            execution_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        Ok(FindResponse {
            docs: page.docs,
            bookmark: Some(bookmark),
            warning,
            execution_stats,
        })
    }

    /// Reads document `id` for a query: the winner as CouchDB renders it, if it is live.
    fn find_doc(&self, id: &str, page: &mut Page<'_>) -> Result<Option<Value>> {
        let inner = &self.inner;
        let Some(bytes) = inner
            .tree
            .get(keys::doc_key(id))
            .map_err(|e| inner.storage(e))?
        else {
            return Ok(None);
        };
        if DocHeader::decode(id, &bytes)?.deleted {
            return Ok(None);
        }
        let rec = DocRecord::decode(id, &bytes)?;
        page.examined += 1;
        let opts = GetOptions {
            conflicts: page.req.conflicts,
            ..Default::default()
        };
        let doc = self.render_rev(id, &rec, &rec.tree.winner(), &opts)?;
        Ok(doc.filter(|d| page.req.selector.matches(d)))
    }

    fn scan_index(
        &self,
        number: u32,
        columns: usize,
        range: &settee_query::KeyRange,
        resume: Option<&[u8]>,
        descending: bool,
        page: &mut Page<'_>,
    ) -> Result<()> {
        let mut lo = range.start.clone();
        // Every entry starting with `range.end` is in range (the document id follows the key).
        let mut hi = prefix_end(&range.end);
        if let Some(b) = resume {
            if descending {
                hi = Some(match hi {
                    Some(h) => h.min(b.to_vec()),
                    None => b.to_vec(),
                });
            } else {
                let mut after = b.to_vec();
                after.push(0);
                lo = lo.max(after);
            }
        }
        if hi.as_ref().is_some_and(|h| lo >= *h) {
            return Ok(());
        }
        for entry in index_blocks::Scan::new(&self.inner.tree, number, lo, hi, descending) {
            let entry = entry?;
            page.keys += 1;
            let mut at = 0;
            for _ in 0..columns {
                at += settee_query::skip_key(&entry[at..]).ok_or_else(|| {
                    Error::corrupt(format!("index entry {entry:?} does not decode"))
                })?;
            }
            let id = std::str::from_utf8(&entry[at..])
                .map_err(|_| Error::corrupt(format!("index entry {entry:?} has a bad id")))?;
            if let Some(doc) = self.find_doc(id, page)? {
                page.push(&entry, doc);
                if page.full() {
                    break;
                }
            }
        }
        Ok(())
    }

    fn scan_all_docs(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        resume: Option<&[u8]>,
        descending: bool,
        page: &mut Page<'_>,
    ) -> Result<()> {
        let inner = &self.inner;
        let mut lo = start.map_or_else(|| vec![keys::DOC], keys::doc_key);
        let mut hi = match end {
            Some(e) => {
                let mut k = keys::doc_key(e);
                k.push(0);
                k
            }
            None => vec![keys::DOC + 1],
        };
        if let Some(b) = resume {
            let at = [&[keys::DOC][..], b].concat();
            if descending {
                hi = hi.min(at);
            } else {
                let mut after = at;
                after.push(0);
                lo = lo.max(after);
            }
        }
        if lo >= hi {
            return Ok(());
        }
        let iter = inner.tree.range(lo..hi);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if descending {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        for item in iter {
            let (k, v) = item.map_err(|e| inner.storage(e))?;
            let id = std::str::from_utf8(&k[1..])
                .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
            page.keys += 1;
            if id.starts_with("_design/") || DocHeader::decode(id, &v)?.deleted {
                continue;
            }
            let rec = DocRecord::decode(id, &v)?;
            page.examined += 1;
            let opts = GetOptions {
                conflicts: page.req.conflicts,
                ..Default::default()
            };
            let Some(doc) = self.render_rev(id, &rec, &rec.tree.winner(), &opts)? else {
                continue;
            };
            if page.req.selector.matches(&doc) {
                page.push(id.as_bytes(), doc);
                if page.full() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// How [`Database::find`] would run a query (`POST /{db}/_explain`): the index, the
    /// key range and direction, the other indexes and why they were not chosen, in
    /// CouchDB's shape.
    ///
    /// A query no index can serve (a sort without an index) is explained with `"index":
    /// null`, as CouchDB does, where `find` fails with `no_usable_index`.
    ///
    /// # Errors
    /// As [`Database::find`]'s planning errors, but `no_usable_index`.
    pub fn explain(&self, req: &FindRequest) -> Result<Value> {
        let catalog = self.inner.indexes.current();
        let defs: Vec<IndexDef> = catalog.entries.iter().map(|e| e.def.clone()).collect();
        let name = self
            .inner
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match settee_query::plan(req, &defs) {
            Ok(plan) => Ok(plan.explain(&name, req)),
            // CouchDB explains a query it cannot run: "index": null.
            Err(settee_query::Error::NoUsableIndex { .. }) => {
                Ok(settee_query::explain_unplannable(&name, req, &defs))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a JSON index (`POST /{db}/_index`) from CouchDB's request body, `{"index":
    /// {"fields": [...], "partial_filter_selector": {...}}, "ddoc": ..., "name": ...}`, and
    /// builds it over the existing documents. The index is a view of a design document with
    /// `"language": "query"`, written like any document, so it replicates.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let body = json!({"index": {"fields": ["type"]}, "ddoc": "by-type", "name": "type"});
    /// assert_eq!(db.create_index(&body)?.result, "created");
    /// assert_eq!(db.create_index(&body)?.result, "exists");
    /// assert_eq!(db.get_indexes()?.total_rows, 2); // with _all_docs
    /// db.delete_index("by-type", "type")?;
    /// assert_eq!(db.get_indexes()?.total_rows, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Query`] for a bad definition (CouchDB's names: `missing_required_key`,
    /// `invalid_sort_field`, ...) or a design document of another language; [`Error::Conflict`]
    /// if the design document changed meanwhile; storage errors.
    pub fn create_index(&self, body: &Value) -> Result<CreateIndexResponse> {
        self.create_index_with_progress(body, &mut |_| {})
    }

    /// [`Database::create_index`], reporting the build's progress (after each batch of
    /// documents) to `progress`.
    ///
    /// # Errors
    /// As [`Database::create_index`].
    pub fn create_index_with_progress(
        &self,
        body: &Value,
        progress: &mut dyn FnMut(&IndexProgress),
    ) -> Result<CreateIndexResponse> {
        let def = IndexDef::from_create_request(body)?;
        let existing = match self.get(&def.ddoc, &GetOptions::default()) {
            Ok(doc) => Some(doc),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let result = match def.add_to_design_doc(existing.as_ref())? {
            DesignChange::Exists => "exists",
            DesignChange::Write(doc) => {
                self.put(doc)?;
                "created"
            }
        };
        let number = self
            .inner
            .indexes
            .current()
            .entries
            .iter()
            .find(|e| e.def == def)
            .map(|e| e.number);
        if let Some(n) = number {
            self.build_index(n, progress)?;
        }
        Ok(CreateIndexResponse {
            result: result.into(),
            id: def.ddoc,
            name: def.name,
        })
    }

    /// The indexes (`GET /{db}/_index`): `_all_docs`, then every JSON index by design
    /// document and name.
    ///
    /// # Errors
    /// None today; kept for storage errors of future layouts.
    pub fn get_indexes(&self) -> Result<IndexList> {
        let catalog = self.inner.indexes.current();
        let mut defs: Vec<&IndexDef> = catalog.entries.iter().map(|e| &e.def).collect();
        defs.sort_by(|a, b| (&a.ddoc, &a.name).cmp(&(&b.ddoc, &b.name)));
        let mut indexes = vec![settee_query::all_docs_index_json()];
        indexes.extend(defs.iter().map(|d| d.to_json()));
        Ok(IndexList {
            total_rows: indexes.len() as u64,
            indexes,
        })
    }

    /// Deletes index `name` of design document `ddoc` (`_design/` optional; `DELETE
    /// /{db}/_index/{ddoc}/json/{name}`): the view goes from the design document, and the
    /// design document goes when it was its last view, as CouchDB does. The entries go in the
    /// same write.
    ///
    /// # Errors
    /// [`Error::NotFound`] (reason `Index not found`) if there is no such index;
    /// [`Error::Conflict`] if the design document changed meanwhile; storage errors.
    pub fn delete_index(&self, ddoc: &str, name: &str) -> Result<()> {
        let id = if ddoc.starts_with("_design/") {
            ddoc.to_owned()
        } else {
            format!("_design/{ddoc}")
        };
        let not_found = || Error::NotFound {
            id: format!("{id}/{name}"),
            reason: "Index not found".into(),
        };
        let doc = match self.get(&id, &GetOptions::default()) {
            Ok(doc) => doc,
            Err(e) if e.is_not_found() => return Err(not_found()),
            Err(e) => return Err(e),
        };
        if !IndexDef::from_design_doc(&doc)
            .iter()
            .any(|d| d.name == name)
        {
            return Err(not_found());
        }
        match IndexDef::remove_from_design_doc(&doc, name)? {
            Some(body) => {
                self.put(body)?;
            }
            None => {
                let rev = doc["_rev"]
                    .as_str()
                    .ok_or_else(|| Error::corrupt(format!("{id} read without a _rev")))?
                    .parse()
                    .map_err(|_| Error::corrupt(format!("{id} read with a bad _rev")))?;
                self.delete(&id, &rev)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
