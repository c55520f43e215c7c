//! The Mango index catalog: each index's number, definition and build state (its `N`
//! record), the entries a document has in the indexes that maintain it, and [`Indexes`], the
//! open store's current catalog and the one a write call is about to commit (held by the
//! core, which publishes it when the batch is applied). Knows nothing of `Inner`.

use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Map, Value};
use settee_query::IndexDef;

use crate::index_blocks;
use crate::keys::{self, DocRecord};
use crate::{Error, Result};

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
    pub(super) fn maintains(&self, id: &str) -> bool {
        match &self.state {
            BuildState::Ready => true,
            BuildState::Building { after: Some(a) } => id <= a.as_str(),
            BuildState::Building { after: None } => false,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
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
    pub(super) fn entry(&self, id: &str, doc: &Value) -> Option<Vec<u8>> {
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
    pub(super) fn members_read(&self, id: &str) -> Option<Vec<&str>> {
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
    pub(super) fn keys_for(&self, id: &str, rec: &DocRecord) -> Result<Vec<(u32, Vec<u8>)>> {
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
    pub(super) fn set_design_doc(
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
pub(super) fn partial_doc(
    id: &str,
    rev: &str,
    body: &[u8],
    names: &[&str],
) -> Result<Option<Value>> {
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

    pub(super) fn set_pending(&self, catalog: Catalog) {
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
