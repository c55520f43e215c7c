//! `_bulk_docs`: the result of writing one document ([`DocResult`]), and [`CouchError`],
//! what a failed write reports. Splitting requests and writing are the client's and the
//! store's.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use settee_revtree::Rev;

/// An error as CouchDB's JSON names it: `{"error": name, "reason": reason}`. The store's
/// and the client's errors implement it, so a failed write becomes a [`DocResult`] the
/// same way on both sides.
pub trait CouchError {
    /// CouchDB's error name (`conflict`, `forbidden`, `not_found`, ...).
    fn error_name(&self) -> &str;
    /// The reason text.
    fn reason(&self) -> String;
}

/// The result of writing one document: an item of a `_bulk_docs` answer, and the answer of
/// a single write.
///
/// Serialises as CouchDB does: `{"ok": true, "id", "rev"}` on success, `{"id", "error",
/// "reason"}` (plus `rev` when known) on failure. Reads both forms, and the `too_large`,
/// `forbidden` and `conflict` items servers send (`ok` is implied by the absence of
/// `error`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DocResult {
    /// The document id (generated if the document had none).
    pub id: String,
    /// The new (or, for `new_edits=false`, the given) revision.
    #[serde(default)]
    pub rev: Option<Rev>,
    /// CouchDB's error name (`conflict`, `forbidden`, `unauthorized`, `too_large`, ...),
    /// when the write failed.
    #[serde(default)]
    pub error: Option<String>,
    /// CouchDB's reason text, when the write failed.
    #[serde(default)]
    pub reason: Option<String>,
}

impl DocResult {
    /// A successful write of `rev`.
    ///
    /// ```
    /// let r = settee_wire::DocResult::ok("a", "1-x".parse()?);
    /// assert_eq!(serde_json::to_string(&r)?, r#"{"ok":true,"id":"a","rev":"1-x"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ok(id: impl Into<String>, rev: Rev) -> DocResult {
        DocResult {
            id: id.into(),
            rev: Some(rev),
            error: None,
            reason: None,
        }
    }

    /// A failed write, named after the error `e` (see [`CouchError`]).
    pub fn err(id: impl Into<String>, rev: Option<Rev>, e: &impl CouchError) -> DocResult {
        DocResult {
            id: id.into(),
            rev,
            error: Some(e.error_name().to_owned()),
            reason: Some(e.reason()),
        }
    }

    /// Whether the write succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Whether a validation function refused it (`forbidden` or `unauthorized`): the
    /// replicator counts these and carries on.
    pub fn is_denied(&self) -> bool {
        matches!(self.error.as_deref(), Some("forbidden" | "unauthorized"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Conflict;
    impl CouchError for Conflict {
        fn error_name(&self) -> &str {
            "conflict"
        }
        fn reason(&self) -> String {
            "Document update conflict.".into()
        }
    }

    #[test]
    fn both_forms_round_trip() {
        let ok = DocResult::ok("a", "1-x".parse().unwrap());
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(v, json!({"ok": true, "id": "a", "rev": "1-x"}));
        assert_eq!(serde_json::from_value::<DocResult>(v).unwrap(), ok);
        let failed = DocResult::err("b", Some("2-y".parse().unwrap()), &Conflict);
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            v,
            json!({"id": "b", "rev": "2-y", "error": "conflict", "reason": "Document update conflict."})
        );
        assert_eq!(serde_json::from_value::<DocResult>(v).unwrap(), failed);
        assert!(ok.is_ok() && !failed.is_ok() && !failed.is_denied());
    }

    #[test]
    fn server_answers_parse() {
        // CouchDB without a rev on a refusal; pouchdb-server's forbidden item.
        let r: DocResult =
            serde_json::from_value(json!({"id": "c", "error": "forbidden", "reason": "no"}))
                .unwrap();
        assert!(r.is_denied() && r.rev.is_none());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "c", "error": "forbidden", "reason": "no"})
        );
        let r: DocResult =
            serde_json::from_value(json!({"id": "d", "error": "unauthorized", "reason": "x",
                                          "status": 401, "name": "unauthorized"}))
            .unwrap();
        assert!(r.is_denied());
    }
}
