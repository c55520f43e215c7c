//! The query planner: which index serves a `_find`, which part of it to read, in which
//! direction, and what `_explain` says about the choice. CouchDB's rules
//! (`mango_idx:get_usable_indexes`, `mango_cursor:create`, `mango_cursor_view`):
//!
//! - a JSON index is usable when the selector requires every column to exist (sort fields
//!   exist in the results by definition) and the sort is a prefix of its columns, after
//!   columns the selector pins with `$eq`;
//! - `_all_docs` is usable without a sort, or to sort by `_id` when the selector constrains
//!   `_id`; a sort no index serves is the 400 `no_usable_index`;
//! - JSON indexes are preferred to `_all_docs`; among them the one whose leading columns
//!   cover the most constrained fields, then the one with fewer columns, then the first by
//!   design document and name;
//! - the range read comes from the selector's top-level `$and` (CouchDB's start and end
//!   keys); every document read is matched against the whole selector afterwards, so the
//!   range only has to contain the answer.
//!
//! Reading the index is the store's job: [`Plan::key_range`] gives the bytes to scan.
//!
//! This module holds the plan's types; the work is in `choice` (usability and the
//! winner, and [`plan`] itself), `ranges` (the keys to read), `explain` (`_explain`'s
//! answer) and `bookmark` (where a page ended).

use serde_json::{json, Value};

use crate::field::FieldPath;
use crate::IndexDef;

mod bookmark;
mod choice;
mod explain;
mod ranges;
mod usable;

pub use choice::plan;
pub use explain::explain_unplannable;

/// An index the planner can choose: `_all_docs` or one of the given JSON indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cand {
    AllDocs,
    Json(usize),
}

/// The scan of a JSON index the plan asks for, as encoded keys (see [`crate::encode_key`];
/// an index entry's key is its columns' encodings, then the document id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The first key to read (inclusive).
    pub start: Vec<u8>,
    /// The last key to read: every key that is below it or starts with it is in range.
    pub end: Vec<u8>,
}

/// What the planner decided for one request.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    indexes: &'a [IndexDef],
    chosen: Cand,
    /// CouchDB's start and end keys (end may end with the `<MAX>` bound); `None` when the
    /// selector cannot match anything.
    keys: Option<(Vec<Value>, Vec<Value>, bool)>,
    descending: bool,
    warnings: Vec<String>,
    candidates: Vec<Value>,
    hints: Value,
    covering: bool,
}

/// The label of an index in bookmarks and messages.
fn label(indexes: &[IndexDef], c: Cand) -> String {
    match c {
        Cand::AllDocs => "_all_docs".into(),
        Cand::Json(i) => format!("{}/{}", indexes[i].ddoc, indexes[i].name),
    }
}

/// The `_all_docs` special index as `_index` lists it.
pub fn all_docs_index_json() -> Value {
    json!({"ddoc": null, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}})
}

fn columns(indexes: &[IndexDef], c: Cand) -> Vec<FieldPath> {
    match c {
        Cand::AllDocs => vec![FieldPath::from_segments(vec!["_id".into()])],
        Cand::Json(i) => indexes[i].columns().cloned().collect(),
    }
}

impl<'a> Plan<'a> {
    /// The chosen JSON index, `None` for `_all_docs`.
    pub fn index(&self) -> Option<&'a IndexDef> {
        match self.chosen {
            Cand::AllDocs => None,
            Cand::Json(i) => Some(&self.indexes[i]),
        }
    }

    /// The position of the chosen index in the list given to [`plan`], `None` for
    /// `_all_docs`.
    pub fn index_position(&self) -> Option<usize> {
        match self.chosen {
            Cand::AllDocs => None,
            Cand::Json(i) => Some(i),
        }
    }

    /// Whether the index is read backwards (a descending sort).
    pub fn is_descending(&self) -> bool {
        self.descending
    }

    /// Whether the selector cannot match anything, so nothing needs reading.
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// CouchDB's `warning` for the answer (several joined by newlines), if any.
    pub fn warning(&self) -> Option<String> {
        (!self.warnings.is_empty()).then(|| self.warnings.join("\n"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! What the tests of every planner module share.
    use super::*;
    use crate::FindRequest;

    pub(crate) fn idx(body: Value) -> IndexDef {
        IndexDef::from_create_request(&body).unwrap()
    }

    pub(crate) fn req(body: Value) -> FindRequest {
        FindRequest::parse(&body).unwrap()
    }
}
