//! `_local` documents: not replicated, never in `_changes` or `_all_docs`, no revision tree.
//! Each write replaces the document and its rev goes `0-1`, `0-2`, ... (CouchDB's form). A
//! write must name the current rev, or none for a new document, else 409 (PouchDB's
//! `_putLocal` rule). The replicator keeps its checkpoints here.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::keys;
use crate::validate::LOCAL_PREFIX;
use crate::{Database, Error, Result};

/// The result of writing a `_local` document: `{"ok": true, "id", "rev"}`.
///
/// A separate type from [`crate::DocResult`] because local revs are `0-N`, which is not a
/// valid [`settee_revtree::Rev`] (positions start at 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalDocResult {
    /// Always true (failures are errors).
    pub ok: bool,
    /// The id with its `_local/` prefix.
    pub id: String,
    /// The new rev, `0-N` (`0-0` after a delete).
    pub rev: String,
}

/// Strips `_local/` (if present) and checks what remains.
fn local_name(id: &str) -> Result<&str> {
    let name = id.strip_prefix(LOCAL_PREFIX).unwrap_or(id);
    if name.is_empty() {
        return Err(Error::IllegalDocId {
            id: id.to_owned(),
            reason: "Local document id must not be empty".into(),
        });
    }
    Ok(name)
}

pub(crate) fn parse_local_rev(rev: &str) -> Result<u64> {
    rev.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            Error::bad_request(format!("Invalid rev format: {rev:?} (local revs are 0-N)"))
        })
}

impl Database {
    fn read_local(&self, name: &str) -> Result<Option<Map<String, Value>>> {
        let inner = &self.inner;
        match inner
            .tree
            .get(keys::local_key(name))
            .map_err(|e| inner.storage(e))?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(format!("local doc {name:?}: {e}"))),
            None => Ok(None),
        }
    }

    fn current_local_rev(doc: &Map<String, Value>) -> u64 {
        doc.get("_rev")
            .and_then(Value::as_str)
            .and_then(|r| parse_local_rev(r).ok())
            .unwrap_or(0)
    }

    /// Reads a `_local` document (`id` with or without the `_local/` prefix).
    ///
    /// # Errors
    /// [`Error::NotFound`] (`missing`) if it does not exist; [`Error::IllegalDocId`] for an
    /// empty id.
    pub fn get_local(&self, id: &str) -> Result<Value> {
        let name = local_name(id)?;
        self.read_local(name)?
            .map(Value::Object)
            .ok_or_else(|| Error::not_found(&format!("{LOCAL_PREFIX}{name}"), "missing"))
    }

    /// Writes a `_local` document. `_id` is required; `_rev` must be the current rev
    /// (`0-N`), or absent for a new document. `_deleted: true` deletes it.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let r = db.put_local(json!({"_id": "_local/ckpt", "seq": 5}))?;
    /// assert_eq!(r.rev, "0-1");
    /// let r = db.put_local(json!({"_id": "ckpt", "_rev": "0-1", "seq": 9}))?;
    /// assert_eq!(r.rev, "0-2");
    /// assert_eq!(db.get_local("ckpt")?["seq"], 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] if `_rev` is not the current rev; [`Error::BadRequest`] without a
    /// string `_id` or with a malformed `_rev`; [`Error::DocValidation`] for unknown `_`
    /// members; [`Error::Storage`] on storage failures.
    pub fn put_local(&self, doc: Value) -> Result<LocalDocResult> {
        let Value::Object(map) = doc else {
            return Err(Error::bad_request("Document must be a JSON object"));
        };
        let id = map
            .get("_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_request("a _local document needs a string _id"))?
            .to_owned();
        let given = match map.get("_rev") {
            Some(Value::String(r)) => Some(parse_local_rev(r)?),
            None | Some(Value::Null) => None,
            Some(_) => return Err(Error::bad_request("Invalid rev format")),
        };
        let deleted = map.get("_deleted").and_then(Value::as_bool) == Some(true);
        let mut body = Map::new();
        for (k, v) in map {
            match k.as_str() {
                "_id" | "_rev" | "_deleted" => {}
                other if other.starts_with('_') => {
                    return Err(Error::DocValidation {
                        reason: format!("Bad special document member: {other}"),
                    })
                }
                _ => {
                    body.insert(k, v);
                }
            }
        }
        self.write_local(&id, given, deleted, body)
    }

    /// Deletes a `_local` document; `rev` must be its current rev (`0-N`).
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist; [`Error::Conflict`] if `rev` is not current.
    pub fn delete_local(&self, id: &str, rev: &str) -> Result<LocalDocResult> {
        let given = parse_local_rev(rev)?;
        self.write_local(id, Some(given), true, Map::new())
    }

    fn write_local(
        &self,
        id: &str,
        given: Option<u64>,
        deleted: bool,
        body: Map<String, Value>,
    ) -> Result<LocalDocResult> {
        let name = local_name(id)?.to_owned();
        let full_id = format!("{LOCAL_PREFIX}{name}");
        let inner = &*self.inner;
        let mut guard = inner.lock_writer();
        let current = self.read_local(&name)?;
        let current_rev = current.as_ref().map(Database::current_local_rev);
        let conflict = || Error::Conflict {
            id: full_id.clone(),
        };
        match (current_rev, given) {
            (None, Some(_)) if deleted => return Err(Error::not_found(&full_id, "missing")),
            (None, Some(0)) | (None, None) => {}
            (None, Some(_)) => return Err(conflict()),
            (Some(cur), Some(g)) if cur == g => {}
            (Some(_), _) => return Err(conflict()),
        }
        let mut batch = sled::Batch::default();
        let rev = if deleted {
            batch.remove(keys::local_key(&name));
            "0-0".to_owned()
        } else {
            let rev = format!("0-{}", current_rev.unwrap_or(0) + 1);
            let mut doc = Map::with_capacity(body.len() + 2);
            doc.insert("_id".into(), Value::String(full_id.clone()));
            doc.insert("_rev".into(), Value::String(rev.clone()));
            doc.extend(body);
            let bytes = serde_json::to_vec(&doc)
                .map_err(|e| Error::bad_request(format!("local doc {full_id}: {e}")))?;
            batch.insert(keys::local_key(&name), bytes);
            rev
        };
        let counters = *guard;
        inner.commit(&mut guard, batch, counters)?;
        Ok(LocalDocResult {
            ok: true,
            id: full_id,
            rev,
        })
    }
}
