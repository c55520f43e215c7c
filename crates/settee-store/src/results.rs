//! What the store's calls return, one type per CouchDB response shape; each serialises to
//! the JSON CouchDB sends for it. The shapes the client reads too (`_changes`, `_bulk_get`,
//! `_bulk_docs`, `_all_docs`, database information) are `settee_wire`'s, here with the
//! store's integer sequences; the ones only the store answers are defined here.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use settee_revtree::Rev;

pub use settee_wire::{
    AllDocs, AllDocsRow, BulkGetDoc, BulkGetError, BulkGetResult, DocResult, Sizes,
};

use crate::Error;

/// One row of `_changes`, with the store's sequences ([`settee_wire::Change`]).
pub type Change = settee_wire::Change<u64>;

/// A `_changes` reply, with the store's sequences ([`settee_wire::Changes`]; `pending` is
/// always `Some`).
pub type Changes = settee_wire::Changes<u64>;

/// Database information (`GET /{db}`), with the store's sequences ([`settee_wire::DbInfo`];
/// the store fills every field).
pub type DbInfo = settee_wire::DbInfo<u64>;

/// A failed write's result names the store's error as CouchDB does.
impl settee_wire::CouchError for Error {
    fn error_name(&self) -> &str {
        self.name()
    }

    fn reason(&self) -> String {
        Error::reason(self)
    }
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

/// A `_purge` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeResult {
    /// The store's purge sequence after this purge.
    pub purge_seq: u64,
    /// For each id, the revisions that were removed.
    pub purged: BTreeMap<String, Vec<Rev>>,
}
