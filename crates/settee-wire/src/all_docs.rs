//! `_all_docs`: one row of the answer ([`AllDocsRow`]). The answer around the rows and the
//! request options stay with the store and the client, which page it differently.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}
