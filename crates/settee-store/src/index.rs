//! Mango indexes in the store: the catalog of JSON indexes the design documents with
//! `"language": "query"` define, their entries, and keeping both in step with the documents.
//!
//! - **Catalog.** Each index has a number and an `N<number>` record (its definition and build
//!   state). A write call that writes a query design document updates the catalog in the
//!   same batch: a new definition is registered (not built yet), a removed or changed one is
//!   dropped with all its entries. So an index replicated in as a design document is
//!   registered like one made with `create_index`.
//! - **Entries.** An entry, the encoded key then the doc id, for each live, non-design
//!   document the index covers (`settee_query::IndexDef::key_of`), stored in sorted blocks
//!   (`index_blocks.rs`) and maintained by [`IndexHook`] in the batch of the write that
//!   changes the document: an index is never out of step after a crash.
//! - **Building.** A registered index is built by [`Database::build_index`] in chunks of
//!   documents in id order, each chunk one batch that also records how far the build got, so
//!   a crash resumes it. Writes keep the entries of documents the build has passed; the build
//!   reads the current state of the rest. `find` builds an index it needs first; `create_index`
//!   builds its index with progress.
//!
//! Reading an index (`find`) is `find.rs`'s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Map, Value};
use settee_query::IndexDef;

use crate::database::Inner;
use crate::index_blocks;
use crate::keys::{self, DocHeader, DocRecord};
use crate::{Database, Error, Result};

/// Documents indexed per batch while building: bounds the batch's memory (about 100 bytes an
/// entry) and how long a build holds the writer lock at a time.
const BUILD_BATCH: usize = 10_000;

/// Where an index's build is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BuildState {
    /// Every document is in it.
    Ready,
    /// The documents with ids up to `after` are in it (none yet when `None`).
    Building { after: Option<String> },
}

/// One index of the catalog.
#[derive(Debug, Clone)]
pub(crate) struct CatalogEntry {
    pub(crate) number: u32,
    pub(crate) def: IndexDef,
    pub(crate) state: BuildState,
}

impl CatalogEntry {
    /// Whether writes keep this index's entry for document `id` (the build has passed it).
    fn maintains(&self, id: &str) -> bool {
        match &self.state {
            BuildState::Ready => true,
            BuildState::Building { after: Some(a) } => id <= a.as_str(),
            BuildState::Building { after: None } => false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let state = match &self.state {
            BuildState::Ready => json!("ready"),
            BuildState::Building { after } => json!({ "after": after }),
        };
        json!({
            "ddoc": self.def.ddoc,
            "name": self.def.name,
            "view": self.def.view_json(),
            "state": state,
        })
        .to_string()
        .into_bytes()
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<CatalogEntry> {
        let bad = |what: &str| Error::corrupt(format!("index record {key:?}: {what}"));
        let number = key
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .filter(|_| key.len() == 5)
            .ok_or_else(|| bad("bad key"))?;
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        let (Some(ddoc), Some(name)) = (v["ddoc"].as_str(), v["name"].as_str()) else {
            return Err(bad("no ddoc or name"));
        };
        let def =
            IndexDef::from_view(ddoc, name, &v["view"]).ok_or_else(|| bad("invalid definition"))?;
        let state = match &v["state"] {
            Value::String(s) if s == "ready" => BuildState::Ready,
            Value::Object(m) => BuildState::Building {
                after: m.get("after").and_then(Value::as_str).map(str::to_owned),
            },
            _ => return Err(bad("bad state")),
        };
        Ok(CatalogEntry { number, def, state })
    }

    /// The entry of document `id` whose winner is `doc` (`None` if not indexed): the
    /// encoded key, then the id.
    fn entry(&self, id: &str, doc: &Value) -> Option<Vec<u8>> {
        let values = self.def.key_of(doc)?;
        let mut entry = Vec::with_capacity(32 + id.len());
        for v in values {
            settee_query::encode_key(v, &mut entry);
        }
        entry.extend_from_slice(id.as_bytes());
        Some(entry)
    }
}

/// The indexes of a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub(crate) entries: Vec<CatalogEntry>,
    next_number: u32,
}

impl Catalog {
    /// Reads the catalog (`N` records and the next number).
    pub(crate) fn load(
        tree: &sled::Tree,
        storage: &dyn Fn(sled::Error) -> Error,
    ) -> Result<Catalog> {
        let mut entries = Vec::new();
        for item in tree.scan_prefix([keys::INDEX_DEF]) {
            let (k, v) = item.map_err(storage)?;
            entries.push(CatalogEntry::decode(&k, &v)?);
        }
        let next_number = match tree.get(keys::META_NEXT_INDEX).map_err(storage)? {
            Some(b) => u32::from_be_bytes(
                b.as_ref()
                    .try_into()
                    .map_err(|_| Error::corrupt("the next index number is not 4 bytes"))?,
            ),
            None => 0,
        };
        Ok(Catalog {
            entries,
            next_number,
        })
    }

    /// The top-level members the indexes maintaining `id` read, or `None` when one of them
    /// may read any (a partial filter).
    fn members_read(&self, id: &str) -> Option<Vec<&str>> {
        let mut names: Vec<&str> = Vec::new();
        for e in self.entries.iter().filter(|e| e.maintains(id)) {
            if e.def.partial_filter_selector.is_some() {
                return None;
            }
            for f in &e.def.fields {
                if let Some(first) = f.path.segments().first() {
                    if !names.contains(&first.as_str()) {
                        names.push(first);
                    }
                }
            }
        }
        Some(names)
    }

    /// The entries document `id` has, as `rec` leaves it, in the indexes that maintain it:
    /// `(index number, entry)`.
    fn keys_for(&self, id: &str, rec: &DocRecord) -> Result<Vec<(u32, Vec<u8>)>> {
        if !self.entries.iter().any(|e| e.maintains(id)) || rec.tree.is_deleted() {
            return Ok(Vec::new());
        }
        let rev = rec.tree.winner().to_string();
        // Parsing only the members the indexes read saves most of the parse of a body.
        let doc = match self.members_read(id) {
            Some(names) => partial_doc(id, &rev, &rec.body, &names)?,
            None => indexed_doc(id, false, &rev, &rec.body)?,
        };
        let Some(doc) = doc else {
            return Ok(Vec::new());
        };
        Ok(self
            .entries
            .iter()
            .filter(|e| e.maintains(id))
            .filter_map(|e| Some((e.number, e.entry(id, &doc)?)))
            .collect())
    }

    /// Registers the indexes of design document `id` as `defs` says, in `batch`: new
    /// definitions get a number (not built yet), vanished or changed ones are dropped with
    /// their entries. Whether anything changed.
    fn set_design_doc(
        &mut self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        id: &str,
        defs: Vec<IndexDef>,
    ) -> Result<bool> {
        let mut changed = false;
        let mut kept = Vec::with_capacity(self.entries.len());
        for e in std::mem::take(&mut self.entries) {
            if e.def.ddoc == id && !defs.contains(&e.def) {
                index_blocks::drop_all(tree, batch, e.number)?;
                batch.remove(&keys::index_def_key(e.number)[..]);
                changed = true;
            } else {
                kept.push(e);
            }
        }
        self.entries = kept;
        for def in defs {
            if self.entries.iter().any(|e| e.def == def) {
                continue;
            }
            let entry = CatalogEntry {
                number: self.next_number,
                def,
                state: BuildState::Building { after: None },
            };
            self.next_number = self
                .next_number
                .checked_add(1)
                .ok_or_else(|| Error::bad_request("the store has used up its index numbers"))?;
            batch.insert(&keys::index_def_key(entry.number)[..], entry.encode());
            self.entries.push(entry);
            changed = true;
        }
        if changed {
            batch.insert(keys::META_NEXT_INDEX, &self.next_number.to_be_bytes()[..]);
        }
        Ok(changed)
    }

    pub(crate) fn position(&self, number: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.number == number)
    }
}

/// An `N` record for a newly registered, unbuilt index (the format upgrade's).
pub(crate) fn new_entry(number: u32, def: IndexDef) -> Vec<u8> {
    CatalogEntry {
        number,
        def,
        state: BuildState::Building { after: None },
    }
    .encode()
}

/// A document's winner as indexes see it: `_id`, `_rev` and the stored body (attachment
/// metadata included); `None` for a deleted winner, which no index holds.
pub(crate) fn indexed_doc(
    id: &str,
    deleted: bool,
    rev: &str,
    body: &[u8],
) -> Result<Option<Value>> {
    if deleted {
        return Ok(None);
    }
    let body: Map<String, Value> = crate::deep_json::from_slice(body)
        .map_err(|e| Error::corrupt(format!("body of {id:?} at {rev}: {e}")))?;
    let mut doc = Map::with_capacity(body.len() + 2);
    doc.insert("_id".into(), Value::String(id.to_owned()));
    doc.insert("_rev".into(), Value::String(rev.to_owned()));
    doc.extend(body);
    Ok(Some(Value::Object(doc)))
}

/// [`indexed_doc`] with only the top-level members in `names` (and `_id`, `_rev`): what an
/// index without a partial filter reads.
fn partial_doc(id: &str, rev: &str, body: &[u8], names: &[&str]) -> Result<Option<Value>> {
    let corrupt = || Error::corrupt(format!("body of {id:?} at {rev} is not a JSON object"));
    let text = std::str::from_utf8(body).map_err(|_| corrupt())?;
    let members = crate::json_text::members_of_text(text).ok_or_else(corrupt)?;
    let mut doc = Map::with_capacity(names.len() + 2);
    doc.insert("_id".into(), Value::String(id.to_owned()));
    doc.insert("_rev".into(), Value::String(rev.to_owned()));
    for m in members {
        if names.contains(&m.name.as_ref()) && m.name != "_id" && m.name != "_rev" {
            let v: Value = crate::deep_json::from_str(m.value)
                .map_err(|e| Error::corrupt(format!("body of {id:?} at {rev}: {e}")))?;
            doc.insert(m.name.into_owned(), v);
        }
    }
    Ok(Some(Value::Object(doc)))
}

/// The catalog of an open store: the current one, and one a write call is about to commit.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    current: RwLock<Arc<Catalog>>,
    /// Set by a write call that changes the catalog, taken by `Inner::commit`, which
    /// publishes it once the batch is applied. Both happen under the writer lock.
    pending: Mutex<Option<Arc<Catalog>>>,
}

impl Indexes {
    pub(crate) fn new(catalog: Catalog) -> Indexes {
        Indexes {
            current: RwLock::new(Arc::new(catalog)),
            pending: Mutex::new(None),
        }
    }

    /// The catalog as of the last commit.
    pub(crate) fn current(&self) -> Arc<Catalog> {
        // A panic while holding this lock cannot leave a half-written Arc: reuse it.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_pending(&self, catalog: Catalog) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(catalog));
    }

    /// Takes the catalog the batch being committed brings, if any.
    pub(crate) fn take_pending(&self) -> Option<Arc<Catalog>> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Makes `catalog` current (after its batch is applied).
    pub(crate) fn publish(&self, catalog: Arc<Catalog>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = catalog;
    }
}

/// The write path's part in keeping indexes in step: a write call records, per document,
/// the entries it had before the call ([`IndexHook::before_write`]) and, when the batch is
/// finished, replaces them with the entries of the document's new state and applies design
/// document changes to the catalog ([`IndexHook::finish`]).
#[derive(Default)]
pub(crate) struct IndexHook {
    catalog: Arc<Catalog>,
    before: HashMap<String, Vec<(u32, Vec<u8>)>>,
}

impl IndexHook {
    pub(crate) fn new(inner: &Inner) -> IndexHook {
        IndexHook {
            catalog: inner.indexes.current(),
            before: HashMap::new(),
        }
    }

    /// Called before document `id` is written for the first time in the call, with its
    /// record as the call found it.
    pub(crate) fn before_write(&mut self, id: &str, old: Option<&DocRecord>) -> Result<()> {
        if self.catalog.entries.is_empty()
            || id.starts_with("_design/")
            || self.before.contains_key(id)
        {
            return Ok(());
        }
        let keys = match old {
            Some(rec) => self.catalog.keys_for(id, rec)?,
            None => Vec::new(),
        };
        self.before.insert(id.to_owned(), keys);
        Ok(())
    }

    /// Adds the catalog and entry changes of the written documents (`docs`: their final
    /// records, `None` for a removed one) to `batch`.
    pub(crate) fn finish(
        self,
        inner: &Inner,
        batch: &mut sled::Batch,
        docs: &HashMap<String, Option<DocRecord>>,
        written: &HashSet<String>,
    ) -> Result<()> {
        let mut catalog: Option<Catalog> = None;
        for id in written.iter().filter(|id| id.starts_with("_design/")) {
            let defs = match docs.get(id) {
                Some(Some(rec)) => indexed_doc(
                    id,
                    rec.tree.is_deleted(),
                    &rec.tree.winner().to_string(),
                    &rec.body,
                )?
                .map(|d| IndexDef::from_design_doc(&d))
                .unwrap_or_default(),
                _ => Vec::new(),
            };
            let had = self.catalog.entries.iter().any(|e| e.def.ddoc == *id);
            if defs.is_empty() && !had {
                continue;
            }
            let c = catalog.get_or_insert_with(|| (*self.catalog).clone());
            c.set_design_doc(&inner.tree, batch, id, defs)?;
        }
        let now = catalog.as_ref().unwrap_or(&self.catalog);
        if !now.entries.is_empty() {
            let mut changes: HashMap<u32, Vec<(Vec<u8>, bool)>> = HashMap::new();
            for id in written.iter().filter(|id| !id.starts_with("_design/")) {
                let after: Vec<(u32, Vec<u8>)> = match docs.get(id) {
                    Some(Some(rec)) => now.keys_for(id, rec)?,
                    _ => Vec::new(),
                };
                let before: &[(u32, Vec<u8>)] = self.before.get(id).map_or(&[], Vec::as_slice);
                for (n, e) in before.iter().filter(|k| !after.contains(k)) {
                    changes.entry(*n).or_default().push((e.clone(), false));
                }
                for (n, e) in after.iter().filter(|k| !before.contains(k)) {
                    changes.entry(*n).or_default().push((e.clone(), true));
                }
            }
            for (number, list) in changes {
                // An index dropped in this call lost all its blocks already.
                if now.position(number).is_some() {
                    index_blocks::apply(&inner.tree, batch, number, list)?;
                }
            }
        }
        if let Some(c) = catalog {
            inner.indexes.set_pending(c);
        }
        Ok(())
    }
}

/// How far an index build is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProgress {
    /// The index's design document.
    pub ddoc: String,
    /// The index's name.
    pub name: String,
    /// Documents read so far.
    pub done: u64,
    /// Documents in the store (live and deleted) when the build started.
    pub total: u64,
}

impl Database {
    /// Builds index `number` to the end (nothing if it is ready), in batches, reporting
    /// progress after each.
    pub(crate) fn build_index(
        &self,
        number: u32,
        progress: &mut dyn FnMut(&IndexProgress),
    ) -> Result<()> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let mut done = 0u64;
        loop {
            let mut guard = inner.lock_writer();
            let catalog = inner.indexes.current();
            // Dropped meanwhile: nothing to build.
            let Some(pos) = catalog.position(number) else {
                return Ok(());
            };
            let entry = &catalog.entries[pos];
            let total = guard.doc_count.saturating_add(guard.doc_del_count);
            let mut report = IndexProgress {
                ddoc: entry.def.ddoc.clone(),
                name: entry.def.name.clone(),
                done,
                total,
            };
            let after = match &entry.state {
                BuildState::Ready => {
                    report.done = report.done.max(total);
                    progress(&report);
                    return Ok(());
                }
                BuildState::Building { after } => after.clone(),
            };
            let start = match &after {
                Some(a) => {
                    let mut k = keys::doc_key(a);
                    k.push(0);
                    k
                }
                None => vec![keys::DOC],
            };
            let names: Option<Vec<&str>> = entry.def.partial_filter_selector.is_none().then(|| {
                entry
                    .def
                    .fields
                    .iter()
                    .filter_map(|f| f.path.segments().first().map(String::as_str))
                    .collect()
            });
            let mut batch = sled::Batch::default();
            let mut entries: Vec<(Vec<u8>, bool)> = Vec::new();
            let mut n = 0;
            let mut last: Option<String> = None;
            for item in inner.tree.range(start..vec![keys::DOC + 1]) {
                let (k, v) = item.map_err(storage)?;
                let id = std::str::from_utf8(&k[1..])
                    .map_err(|_| Error::corrupt("a document id is not UTF-8"))?;
                n += 1;
                if !id.starts_with("_design/") {
                    let (header, body) = DocHeader::decode_with_body(id, &v)?;
                    let rev = header.winner.to_string();
                    let doc = match &names {
                        _ if header.deleted => None,
                        Some(names) => partial_doc(id, &rev, body, names)?,
                        None => indexed_doc(id, false, &rev, body)?,
                    };
                    if let Some(e) = doc.and_then(|d| entry.entry(id, &d)) {
                        entries.push((e, true));
                    }
                }
                last = Some(id.to_owned());
                if n >= BUILD_BATCH {
                    break;
                }
            }
            index_blocks::apply(&inner.tree, &mut batch, number, entries)?;
            let mut next = (*catalog).clone();
            let state = if n < BUILD_BATCH {
                BuildState::Ready
            } else {
                BuildState::Building { after: last }
            };
            let ready = state == BuildState::Ready;
            next.entries[pos].state = state;
            batch.insert(&keys::index_def_key(number)[..], next.entries[pos].encode());
            inner.indexes.set_pending(next);
            let counters = *guard;
            inner.commit(&mut guard, batch, counters)?;
            drop(guard);
            done += n as u64;
            report.done = if ready { done.max(total) } else { done };
            progress(&report);
            if ready {
                return Ok(());
            }
        }
    }

    /// Builds every index that is not built yet (a replicated design document registers its
    /// indexes; this builds them ahead of the first `find` that needs them).
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`]; what was built stays built.
    pub fn build_indexes(&self, progress: &mut dyn FnMut(&IndexProgress)) -> Result<()> {
        let pending: Vec<u32> = self
            .inner
            .indexes
            .current()
            .entries
            .iter()
            .filter(|e| e.state != BuildState::Ready)
            .map(|e| e.number)
            .collect();
        for number in pending {
            self.build_index(number, progress)?;
        }
        Ok(())
    }

    /// Checks the indexes (part of [`Database::verify`], under the writer lock): the catalog
    /// is what the query design documents define, and each index holds exactly the entries
    /// of the documents it covers (those its build has passed). The number of entries.
    pub(crate) fn verify_indexes(&self) -> Result<u64> {
        let inner = &*self.inner;
        let storage = |e| inner.storage(e);
        let catalog = inner.indexes.current();
        let stored = Catalog::load(&inner.tree, &storage)?;
        let numbers = |c: &Catalog| {
            c.entries
                .iter()
                .map(|e| e.number)
                .collect::<BTreeSet<u32>>()
        };
        if numbers(&stored) != numbers(&catalog)
            || stored.entries.iter().any(|s| {
                catalog.position(s.number).is_none_or(|i| {
                    catalog.entries[i].def != s.def || catalog.entries[i].state != s.state
                })
            })
        {
            return Err(Error::corrupt(
                "the index catalog in memory differs from the stored one",
            ));
        }
        let mut defined: Vec<IndexDef> = Vec::new();
        for item in inner.tree.scan_prefix(keys::doc_key("_design/")) {
            let (k, v) = item.map_err(storage)?;
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            let (header, body) = DocHeader::decode_with_body(&id, &v)?;
            if let Some(doc) = indexed_doc(&id, header.deleted, &header.winner.to_string(), body)? {
                defined.extend(IndexDef::from_design_doc(&doc));
            }
        }
        for def in &defined {
            if !catalog.entries.iter().any(|e| e.def == *def) {
                return Err(Error::corrupt(format!(
                    "index {}/{} is defined but not in the catalog",
                    def.ddoc, def.name
                )));
            }
        }
        if let Some(e) = catalog.entries.iter().find(|e| !defined.contains(&e.def)) {
            return Err(Error::corrupt(format!(
                "index {}/{} is in the catalog but no design document defines it",
                e.def.ddoc, e.def.name
            )));
        }
        let mut expected: HashMap<u32, BTreeSet<Vec<u8>>> = catalog
            .entries
            .iter()
            .map(|e| (e.number, BTreeSet::new()))
            .collect();
        if !catalog.entries.is_empty() {
            for item in inner.tree.scan_prefix([keys::DOC]) {
                let (k, v) = item.map_err(storage)?;
                let id = String::from_utf8_lossy(&k[1..]).into_owned();
                if id.starts_with("_design/") {
                    continue;
                }
                let (header, body) = DocHeader::decode_with_body(&id, &v)?;
                let Some(doc) = indexed_doc(&id, header.deleted, &header.winner.to_string(), body)?
                else {
                    continue;
                };
                for e in catalog.entries.iter().filter(|e| e.maintains(&id)) {
                    if let Some(entry) = e.entry(&id, &doc) {
                        expected.entry(e.number).or_default().insert(entry);
                    }
                }
            }
        }
        let mut count = 0u64;
        for (number, want) in &expected {
            let have = index_blocks::all_entries(&inner.tree, *number)?;
            count += have.len() as u64;
            let have: BTreeSet<Vec<u8>> = have.into_iter().collect();
            if let Some(extra) = have.difference(want).next() {
                return Err(Error::corrupt(format!(
                    "index {number} holds the entry {extra:?}, which matches no document's current state"
                )));
            }
            if let Some(missing) = want.difference(&have).next() {
                return Err(Error::corrupt(format!(
                    "index {number} lacks the entry {missing:?} of a document it covers"
                )));
            }
        }
        for item in inner.tree.scan_prefix([keys::INDEX_ENTRY]) {
            let (k, _) = item.map_err(storage)?;
            let number = k
                .get(1..5)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| Error::corrupt(format!("index block {k:?} has a bad key")))?;
            if !expected.contains_key(&number) {
                return Err(Error::corrupt(format!(
                    "index block {k:?} belongs to no index in the catalog"
                )));
            }
        }
        Ok(count)
    }
}
