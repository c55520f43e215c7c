//! What the store's calls return, one type per CouchDB response shape; each serialises to
//! the JSON CouchDB sends for it.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use settee_revtree::Rev;

use crate::Error;

/// The result of writing one document (an item of a `_bulk_docs` reply).
///
/// Serialises as CouchDB does: `{"ok":true,"id","rev"}` on success, `{"id","error","reason"}`
/// (plus `rev` when known) on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocResult {
    /// The document id (generated if the document had none).
    pub id: String,
    /// The new (or, for `new_edits=false`, the given) revision.
    pub rev: Option<Rev>,
    /// CouchDB's error name, when the write failed.
    pub error: Option<String>,
    /// CouchDB's reason text, when the write failed.
    pub reason: Option<String>,
}

impl DocResult {
    pub(crate) fn ok(id: impl Into<String>, rev: Rev) -> DocResult {
        DocResult {
            id: id.into(),
            rev: Some(rev),
            error: None,
            reason: None,
        }
    }

    pub(crate) fn err(id: impl Into<String>, rev: Option<Rev>, e: &Error) -> DocResult {
        DocResult {
            id: id.into(),
            rev,
            error: Some(e.name().to_owned()),
            reason: Some(e.reason()),
        }
    }

    /// Whether the write succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

impl Serialize for DocResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if self.error.is_none() {
            m.serialize_entry("ok", &true)?;
        }
        m.serialize_entry("id", &self.id)?;
        if let Some(rev) = &self.rev {
            m.serialize_entry("rev", rev)?;
        }
        if let Some(e) = &self.error {
            m.serialize_entry("error", e)?;
        }
        if let Some(r) = &self.reason {
            m.serialize_entry("reason", r)?;
        }
        m.end()
    }
}

/// Sizes in bytes, as in CouchDB's database info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    /// Bytes the store's files take on disk.
    pub file: u64,
    /// Bytes of live data. Not computed yet (sled does not track it cheaply): `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<u64>,
    /// Bytes of document bodies and attachments, uncompressed. Not computed yet: `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<u64>,
}

/// Database information (`GET /{db}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbInfo {
    /// The store directory's last component.
    pub db_name: String,
    /// Documents whose winner is not deleted (`_local` docs are not counted).
    pub doc_count: u64,
    /// Documents whose winner is deleted.
    pub doc_del_count: u64,
    /// The sequence of the latest write.
    pub update_seq: u64,
    /// How many purge requests have been applied.
    pub purge_seq: u64,
    /// A random id made when the store was created; stable for the store's life.
    pub uuid: String,
    /// Disk and data sizes.
    pub sizes: Sizes,
    /// The storage format version.
    pub disk_format_version: u32,
    /// CouchDB 1.x field kept for old clients: always `"0"`.
    pub instance_start_time: String,
}

/// One answer of `open_revs`: the document at a revision, or the revision is unknown.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenRevResult {
    /// `{"ok": doc}`.
    Ok(Value),
    /// `{"missing": rev}`.
    Missing(Rev),
}

impl Serialize for OpenRevResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            OpenRevResult::Ok(doc) => m.serialize_entry("ok", doc)?,
            OpenRevResult::Missing(rev) => m.serialize_entry("missing", rev)?,
        }
        m.end()
    }
}

/// The error object of a `_bulk_get` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkGetError {
    /// The document id.
    pub id: String,
    /// The requested revision (`"undefined"` when none was given, as CouchDB says).
    pub rev: String,
    /// CouchDB's error name (`not_found`).
    pub error: String,
    /// CouchDB's reason (`missing`, `deleted`).
    pub reason: String,
}

/// One doc of a `_bulk_get` result: `{"ok": doc}` or `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkGetDoc {
    /// The document.
    Ok(Value),
    /// Why it could not be read.
    Error(BulkGetError),
}

impl Serialize for BulkGetDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            BulkGetDoc::Ok(doc) => m.serialize_entry("ok", doc)?,
            BulkGetDoc::Error(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

/// The result for one `_bulk_get` request item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkGetResult {
    /// The requested id.
    pub id: String,
    /// One entry per revision read.
    pub docs: Vec<BulkGetDoc>,
}

/// One row of `_changes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The document's current sequence.
    pub seq: u64,
    /// The document id.
    pub id: String,
    /// The winner, or every leaf with `style=all_docs` (serialised as `[{"rev": ...}]`).
    #[serde(serialize_with = "serialize_change_revs")]
    pub changes: Vec<Rev>,
    /// Whether the winner is deleted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The winning document, with `include_docs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Value>,
}

fn serialize_change_revs<S: Serializer>(revs: &[Rev], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct R<'a> {
        rev: &'a Rev,
    }
    s.collect_seq(revs.iter().map(|rev| R { rev }))
}

/// A `_changes` reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    /// The rows.
    pub results: Vec<Change>,
    /// Where to continue from (`since` of the next call).
    pub last_seq: u64,
    /// Changes after `last_seq` not returned (because of `limit`).
    pub pending: u64,
}

/// One row of `_all_docs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllDocsRow {
    /// The document id (absent for a `keys` row that names a missing doc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The key: the document id.
    pub key: String,
    /// `{"rev"}` (and `"deleted": true` for a deleted doc asked for by `keys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The document, with `include_docs` (`null` for a deleted doc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Value>,
    /// `not_found` for a `keys` row that names a missing doc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An `_all_docs` reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllDocs {
    /// Number of live documents in the store.
    pub total_rows: u64,
    /// Rows before the first returned one in the index (for `keys` requests, 0).
    pub offset: u64,
    /// The rows.
    pub rows: Vec<AllDocsRow>,
}

/// A `_purge` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeResult {
    /// The store's purge sequence after this purge.
    pub purge_seq: u64,
    /// For each id, the revisions that were removed.
    pub purged: BTreeMap<String, Vec<Rev>>,
}
