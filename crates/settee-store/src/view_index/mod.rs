//! View indexes: a map function's rows kept on disk and brought up to date incrementally, as
//! CouchDB keeps a view's B-tree. The store holds the rows and knows nothing of JavaScript:
//! the caller (`settee serve`'s views) maps the documents changed since [`ViewIndexState::seq`]
//! and hands their rows to [`ViewIndex::update`]; this module stores them, reads ranges of
//! them in view order, and drops indexes no design document uses any more.
//!
//! - **Identity.** An index is named by its view's signature ([`view_signature`]: a hash of
//!   the map and reduce source and the design document's `language`, `options` and
//!   `views.lib`), so a design document revision that leaves a view alone keeps its index,
//!   as in CouchDB. Each index is its own sled tree, `view/` + signature, in the store's sled
//!   database: it goes with the store when the database is destroyed, and
//!   [`Database::view_cleanup`] (CouchDB's `_view_cleanup`, also run by `compact`) drops the
//!   trees of signatures no live design document has.
//! - **Rows.** `r` + the collation-encoded key ([`settee_query::encode_key`]) + the encoded
//!   document id + a counter (u32 big-endian) → the row as JSON `[key, id, value]`, so that
//!   sled's byte order is CouchDB's view order (key, then document id, then the order of one
//!   document's rows with equal keys, which are sorted by value as CouchDB does).
//! - **Back index.** `b` + document id → the row keys the document emitted (each a u32
//!   big-endian length and the bytes), so a changed document's old rows are found without a
//!   scan.
//! - **Meta.** `m` → the update seq the index is current to, its row count and the store's
//!   purge seq it was built at (3 × u64 big-endian).
//!
//! One [`ViewIndex::update`] is one sled transaction on the index's tree (rows, back index
//! and meta together), so the seq never passes the rows it holds: a crash mid-build leaves
//! the last whole step, and the next update resumes from its seq. The transaction also checks
//! that the seq is still the one the caller read, so two queries that bring the same index up
//! to date at once cannot interleave: the later one is told to read again. Index writes are
//! not flushed on their own: sled recovers a prefix of its log, so an index step that
//! survives a crash has the document writes before it, and a lost step is only redone.

use std::ops::Bound;

use md5::{Digest, Md5};
use serde_json::Value;
use settee_query::encode_key;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
};

use crate::{Database, Error, Result};

/// The prefix of the sled trees that hold view indexes.
const TREE_PREFIX: &str = "view/";
const ROW: u8 = b'r';
const BACK: u8 = b'b';
const META: &[u8] = b"m";
/// The purge seq recorded while an index is being cleared: never a real one, so a crash
/// mid-clear leaves an index that [`ViewIndex::reset`] is asked to clear again.
const CLEARING: u64 = u64::MAX;

/// The signature of view `view` of design document `ddoc` (the JSON document): the hex MD5
/// of its map and reduce source and the design document's `language`, `options` and
/// `views.lib`; `None` when the design document has no such view (or its map is not a
/// string).
///
/// ```
/// use serde_json::json;
/// use settee_store::view_signature;
/// let a = json!({"_rev": "1-a", "views": {"v": {"map": "function(d){emit(d._id)}"}}});
/// let b = json!({"_rev": "2-b", "views": {"v": {"map": "function(d){emit(d._id)}"}},
///                "validate_doc_update": "function(){}"});
/// assert_eq!(view_signature(&a, "v"), view_signature(&b, "v"));
/// assert_eq!(view_signature(&a, "w"), None);
/// ```
pub fn view_signature(ddoc: &Value, view: &str) -> Option<String> {
    let views = ddoc.get("views")?;
    if view == "lib" {
        return None;
    }
    let def = views.get(view)?;
    let map = def.get("map")?.as_str()?;
    let language = ddoc
        .get("language")
        .and_then(Value::as_str)
        .unwrap_or("javascript");
    let what = serde_json::json!([
        language,
        ddoc.get("options").unwrap_or(&Value::Null),
        views.get("lib").unwrap_or(&Value::Null),
        map,
        def.get("reduce").unwrap_or(&Value::Null),
    ]);
    Some(hex::encode(Md5::digest(what.to_string().as_bytes())))
}

/// One row of a view index.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRow {
    /// The emitted key.
    pub key: Value,
    /// The id of the document that emitted it.
    pub id: String,
    /// The emitted value.
    pub value: Value,
}

/// Where a view index is: the update seq it is current to, its rows, and the purge seq it
/// was built at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewIndexState {
    /// The store's update seq the index holds every document's rows for.
    pub seq: u64,
    /// The rows in the index (a view's `total_rows`).
    pub rows: u64,
    /// The store's purge seq when the index was started: a purge since then removed
    /// documents the changes feed no longer shows, so the index must be rebuilt.
    pub purge_seq: u64,
}

impl ViewIndexState {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.rows.to_be_bytes());
        out[16..].copy_from_slice(&self.purge_seq.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<ViewIndexState> {
        let num = |i: usize| -> Result<u64> {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::corrupt("a view index's meta record is short"))
        };
        Ok(ViewIndexState {
            seq: num(0)?,
            rows: num(1)?,
            purge_seq: num(2)?,
        })
    }

    /// Whether the index was left half cleared by a crash ([`ViewIndex::reset`] it).
    pub fn is_clearing(&self) -> bool {
        self.purge_seq == CLEARING
    }
}

/// One end of a range of a view: a key and, optionally, the document id that breaks ties
/// between rows with that key (CouchDB's `startkey_docid` / `endkey_docid`).
#[derive(Debug, Clone, Copy)]
pub struct ViewKey<'a> {
    /// The key.
    pub key: &'a Value,
    /// The document id within the key's rows.
    pub doc_id: Option<&'a str>,
}

/// A range of a view's rows, as a query asks for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewRange<'a> {
    /// Where reading starts (in the direction of reading); `None`: the first row.
    pub start: Option<ViewKey<'a>>,
    /// Where reading ends; `None`: the last row.
    pub end: Option<ViewKey<'a>>,
    /// Whether rows equal to `end` are included.
    pub inclusive_end: bool,
    /// Read from the greatest row down.
    pub descending: bool,
}

/// What one document emitted: its id and its rows (key, value), empty for a deleted
/// document or one the map function failed on.
pub type ViewDocRows = (String, Vec<(Value, Value)>);

/// A view index of one database: see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct ViewIndex {
    db: Database,
    tree: sled::Tree,
}

impl std::fmt::Debug for ViewIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewIndex")
            .field("tree", &String::from_utf8_lossy(&self.tree.name()))
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The view index with this signature ([`view_signature`]), created empty (seq 0) if
    /// there is none.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "a", "n": 2}))?;
    /// let index = db.view_index("sig")?;
    /// let from = index.state()?;
    /// assert!(index.update(from.seq, vec![("a".into(), vec![(json!(2), json!(null))])], 1)?);
    /// let rows: Vec<_> = index.rows(&Default::default())?.collect::<Result<_, _>>()?;
    /// assert_eq!((rows[0].id.as_str(), index.state()?.seq), ("a", 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] if sled cannot open the tree.
    pub fn view_index(&self, signature: &str) -> Result<ViewIndex> {
        let tree = self
            .inner
            .db
            .open_tree(format!("{TREE_PREFIX}{signature}"))
            .map_err(|e| self.inner.storage(e))?;
        Ok(ViewIndex {
            db: self.clone(),
            tree,
        })
    }

    /// CouchDB's `_view_cleanup`: drops the view indexes whose signature no view of a live
    /// design document has. Returns how many were dropped.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] reading the design documents or dropping.
    pub fn view_cleanup(&self) -> Result<usize> {
        let mut used = std::collections::HashSet::new();
        for doc in self.design_docs()? {
            let Some(views) = doc.get("views").and_then(Value::as_object) else {
                continue;
            };
            used.extend(views.keys().filter_map(|v| view_signature(&doc, v)));
        }
        let mut dropped = 0;
        for name in self.inner.db.tree_names() {
            let Some(signature) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix(TREE_PREFIX))
            else {
                continue;
            };
            if !used.contains(signature) {
                self.inner
                    .db
                    .drop_tree(&name)
                    .map_err(|e| self.inner.storage(e))?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

impl ViewIndex {
    /// Where the index is.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Corrupt`] if the meta record is damaged.
    pub fn state(&self) -> Result<ViewIndexState> {
        match self.tree.get(META).map_err(|e| self.storage(e))? {
            Some(v) => ViewIndexState::decode(&v),
            None => Ok(ViewIndexState::default()),
        }
    }

    fn storage(&self, e: sled::Error) -> Error {
        self.db.inner.storage(e)
    }

    /// Empties the index and records `purge_seq` as the one it is built at (seq 0). A crash
    /// part way leaves it marked [`ViewIndexState::is_clearing`].
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn reset(&self, purge_seq: u64) -> Result<()> {
        let mark = |purge_seq| ViewIndexState {
            seq: 0,
            rows: 0,
            purge_seq,
        };
        let storage = |e| self.storage(e);
        self.tree
            .insert(META, &mark(CLEARING).encode()[..])
            .map_err(storage)?;
        let mut batch = sled::Batch::default();
        for key in self.tree.iter().keys() {
            let key = key.map_err(storage)?;
            if key != META {
                batch.remove(key);
            }
        }
        batch.insert(META, &mark(purge_seq).encode()[..]);
        self.tree.apply_batch(batch).map_err(storage)
    }

    /// Replaces the rows of each document in `docs` with the rows given (none: the
    /// document's rows go) and records the index as current to `to_seq`, in one transaction,
    /// if the index is still at seq `from` (`false`, and nothing written, if another update
    /// moved it meanwhile). One document's rows with equal keys are kept in value order.
    ///
    /// # Errors
    /// [`Error::Storage`]; [`Error::Corrupt`] if a back index record is damaged.
    pub fn update(&self, from: u64, docs: Vec<ViewDocRows>, to_seq: u64) -> Result<bool> {
        let encoded: Vec<EncodedDoc> = docs
            .into_iter()
            .map(encode_doc_rows)
            .collect::<Result<_>>()?;
        let outcome = self
            .tree
            .transaction(|tx| -> ConflictableTransactionResult<bool, Error> {
                let mut state = match tx.get(META)? {
                    Some(v) => {
                        ViewIndexState::decode(&v).map_err(ConflictableTransactionError::Abort)?
                    }
                    None => ViewIndexState::default(),
                };
                if state.seq != from || state.is_clearing() {
                    return Ok(false);
                }
                for EncodedDoc { back_key, rows } in &encoded {
                    if let Some(old) = tx.get(back_key)? {
                        let old = decode_back(&old).map_err(ConflictableTransactionError::Abort)?;
                        state.rows = state.rows.saturating_sub(old.len() as u64);
                        for k in old {
                            tx.remove(k)?;
                        }
                    }
                    let mut back = Vec::new();
                    for (k, v) in rows {
                        tx.insert(&k[..], &v[..])?;
                        back.extend_from_slice(&(k.len() as u32).to_be_bytes());
                        back.extend_from_slice(k);
                    }
                    state.rows += rows.len() as u64;
                    if back.is_empty() {
                        tx.remove(&back_key[..])?;
                    } else {
                        tx.insert(&back_key[..], back)?;
                    }
                }
                state.seq = to_seq;
                tx.insert(META, &state.encode()[..])?;
                Ok(true)
            });
        match outcome {
            Ok(done) => Ok(done),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(self.storage(e)),
        }
    }

    /// The rows of `range`, in its direction.
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] as rows are read (each item).
    pub fn rows(
        &self,
        range: &ViewRange<'_>,
    ) -> Result<impl Iterator<Item = Result<ViewRow>> + '_> {
        let (lo, hi) = bounds(range);
        let iter = self.tree.range::<Vec<u8>, _>((lo, hi));
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if range.descending {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
        Ok(iter.map(move |item| {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            let (key, id, value): (Value, String, Value) = crate::deep_json::from_slice(&v)
                .map_err(|e| Error::corrupt(format!("a view row does not parse: {e}")))?;
            Ok(ViewRow { key, id, value })
        }))
    }

    /// How many rows come before `range`'s start in its direction (a view's `offset`). It
    /// counts them: the cost grows with the offset (no stored reductions, see the module
    /// documentation of `settee serve`'s views).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn count_before(&self, range: &ViewRange<'_>) -> Result<u64> {
        let (lo, hi) = bounds(range);
        let first = Bound::Included(vec![ROW]);
        let past = Bound::Excluded(vec![ROW + 1]);
        let before = if range.descending {
            match hi {
                Bound::Excluded(h) => self.tree.range::<Vec<u8>, _>((Bound::Included(h), past)),
                _ => return Ok(0),
            }
        } else {
            match lo {
                Bound::Included(l) => self.tree.range::<Vec<u8>, _>((first, Bound::Excluded(l))),
                _ => return Ok(0),
            }
        };
        let mut n = 0;
        for item in before.keys() {
            item.map_err(|e| self.storage(e))?;
            n += 1;
        }
        Ok(n)
    }
}

/// The encoding of a key and, when given, a document id: the prefix of the rows they name.
fn row_prefix(at: &ViewKey<'_>) -> Vec<u8> {
    let mut out = vec![ROW];
    encode_key(at.key, &mut out);
    if let Some(id) = at.doc_id {
        encode_key(&Value::String(id.to_owned()), &mut out);
    }
    out
}

/// The least byte string greater than every string that starts with `prefix`.
fn past_prefix(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(last) = prefix.pop() {
        if last < u8::MAX {
            prefix.push(last + 1);
            return prefix;
        }
    }
    // Every row key starts with ROW (< 0xFF), so this is never reached for a row prefix.
    vec![ROW + 1]
}

/// The sled key bounds of a range: (inclusive low, exclusive high).
fn bounds(range: &ViewRange<'_>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (low, high) = if range.descending {
        (range.end, range.start)
    } else {
        (range.start, range.end)
    };
    // The end's rows are in when `inclusive_end`; the start's always are.
    let low_in = !range.descending || range.inclusive_end;
    let high_in = range.descending || range.inclusive_end;
    let lo = match low {
        None => vec![ROW],
        Some(k) if low_in => row_prefix(&k),
        Some(k) => past_prefix(row_prefix(&k)),
    };
    let hi = match high {
        None => vec![ROW + 1],
        Some(k) if high_in => past_prefix(row_prefix(&k)),
        Some(k) => row_prefix(&k),
    };
    // A backwards range is empty (the server refuses most of them before they get here).
    let hi = hi.max(lo.clone());
    (Bound::Included(lo), Bound::Excluded(hi))
}

/// One document's part of an update, as sled keys and values.
struct EncodedDoc {
    back_key: Vec<u8>,
    /// Row keys and values.
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A document's back index key and its rows' keys and values, sorted by (key, value) so
/// that the counter orders equal keys by value.
fn encode_doc_rows(doc: ViewDocRows) -> Result<EncodedDoc> {
    let (id, mut rows) = doc;
    rows.sort_by(|a, b| {
        settee_query::collate(&a.0, &b.0).then_with(|| settee_query::collate(&a.1, &b.1))
    });
    let mut id_key = Vec::new();
    encode_key(&Value::String(id.clone()), &mut id_key);
    let mut out = Vec::with_capacity(rows.len());
    for (n, (key, value)) in rows.into_iter().enumerate() {
        let mut k = vec![ROW];
        encode_key(&key, &mut k);
        k.extend_from_slice(&id_key);
        let n = u32::try_from(n)
            .map_err(|_| Error::bad_request(format!("{id} emitted too many rows")))?;
        k.extend_from_slice(&n.to_be_bytes());
        let v = serde_json::to_vec(&(key, &id, value))
            .map_err(|e| Error::bad_request(format!("a row of {id} does not serialize: {e}")))?;
        out.push((k, v));
    }
    let mut back = vec![BACK];
    back.extend_from_slice(id.as_bytes());
    Ok(EncodedDoc {
        back_key: back,
        rows: out,
    })
}

fn decode_back(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || Error::corrupt("a view index's back index record is damaged");
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = bytes
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(bad)? as usize;
        let key = bytes.get(4..4 + len).ok_or_else(bad)?;
        out.push(key.to_vec());
        bytes = &bytes[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
