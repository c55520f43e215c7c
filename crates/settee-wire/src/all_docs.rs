//! `_all_docs`: its query parameters ([`AllDocsOptions`]), its answer ([`AllDocs`]) and
//! one row of it ([`AllDocsRow`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Options of `_all_docs`; each field is CouchDB's query parameter of the same name (`keys`
/// goes in a `POST` body), and the default is CouchDB's. Keys are document ids, compared by
/// their UTF-8 bytes (CouchDB's raw collation, which `_all_docs` uses).
///
/// ```
/// let opts = settee_wire::AllDocsOptions { startkey: Some("note:".into()), ..Default::default() };
/// assert!(opts.inclusive_end && opts.limit.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllDocsOptions {
    /// Start at this id (inclusive).
    pub startkey: Option<String>,
    /// Stop at this id (inclusive unless `inclusive_end` is false).
    pub endkey: Option<String>,
    /// Exactly these ids, in this order; deleted and missing ids get rows too (missing
    /// ones with `error: "not_found"`).
    pub keys: Option<Vec<String>>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Skip this many rows first.
    pub skip: usize,
    /// Walk the ids from the last to the first.
    pub descending: bool,
    /// Add each row's winning document as `doc`.
    pub include_docs: bool,
    /// With `include_docs`, add `_conflicts` to each document.
    pub conflicts: bool,
    /// Whether `endkey` itself is included (default true).
    pub inclusive_end: bool,
    /// With `include_docs`, inline attachment bodies.
    pub attachments: bool,
}

impl Default for AllDocsOptions {
    fn default() -> AllDocsOptions {
        AllDocsOptions {
            startkey: None,
            endkey: None,
            keys: None,
            limit: None,
            skip: 0,
            descending: false,
            include_docs: false,
            conflicts: false,
            inclusive_end: true,
            attachments: false,
        }
    }
}

/// The answer of `_all_docs`: `{"total_rows", "offset", "rows": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllDocs {
    /// Live documents in the database (0 when the server does not say).
    #[serde(default)]
    pub total_rows: u64,
    /// Rows before the first returned one in the index (the store answers 0 for `keys`
    /// requests; CouchDB sends `null` for them, and some servers nothing: `None`).
    #[serde(default)]
    pub offset: Option<u64>,
    /// The rows.
    pub rows: Vec<AllDocsRow>,
}

/// One row of `_all_docs`: `{"id", "key", "value": {"rev", "deleted"?}, "doc"?}`, or
/// `{"key", "error": "not_found"}` for a requested key that names no document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllDocsRow {
    /// The document id (absent in an error row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The key: the document id.
    pub key: String,
    /// `{"rev"}` (and `"deleted": true` for a deleted document asked for by `keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The document, with `include_docs` (`null` for a deleted one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<Value>,
    /// `"not_found"` for a requested key that names no document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_of_every_kind_round_trip() {
        for row in [
            json!({"id": "a", "key": "a", "value": {"rev": "1-x"}}),
            json!({"id": "a", "key": "a", "value": {"rev": "1-x"}, "doc": {"_id": "a", "_rev": "1-x"}}),
            json!({"id": "b", "key": "b", "value": {"rev": "2-y", "deleted": true}}),
            json!({"key": "c", "error": "not_found"}),
        ] {
            let parsed: AllDocsRow = serde_json::from_value(row.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), row);
        }
        let missing: AllDocsRow =
            serde_json::from_value(json!({"key": "c", "error": "not_found"})).unwrap();
        assert_eq!(
            (missing.id, missing.error.as_deref()),
            (None, Some("not_found"))
        );
    }

    #[test]
    fn answers_of_couchdb_pouchdb_server_and_the_store_round_trip() {
        let couch = json!({"total_rows": 2, "offset": 1,
                           "rows": [{"id": "b", "key": "b", "value": {"rev": "1-b"}}]});
        let all: AllDocs = serde_json::from_value(couch.clone()).unwrap();
        assert_eq!(
            (all.total_rows, all.offset, all.rows.len()),
            (2, Some(1), 1)
        );
        assert_eq!(serde_json::to_value(&all).unwrap(), couch);
        // CouchDB answers a `keys` request with `"offset": null`.
        let keys = json!({"total_rows": 2, "offset": null,
                          "rows": [{"key": "zz", "error": "not_found"}]});
        let all: AllDocs = serde_json::from_value(keys.clone()).unwrap();
        assert_eq!(all.offset, None);
        assert_eq!(serde_json::to_value(&all).unwrap(), keys);
        // A server that leaves both counts out.
        let bare: AllDocs = serde_json::from_value(json!({"rows": []})).unwrap();
        assert_eq!((bare.total_rows, bare.offset), (0, None));
        // The store's answer: counts always given.
        let store = AllDocs {
            total_rows: 3,
            offset: Some(0),
            rows: vec![],
        };
        assert_eq!(
            serde_json::to_value(&store).unwrap(),
            json!({"total_rows": 3, "offset": 0, "rows": []})
        );
    }

    #[test]
    fn options_default_to_couchdbs() {
        let d = AllDocsOptions::default();
        assert!(d.inclusive_end && !d.descending && !d.include_docs && !d.attachments);
        assert_eq!((d.skip, d.limit, d.keys), (0, None, None));
    }
}
