//! `_bulk_get`: the request items ([`BulkGetRequest`]), its query options
//! ([`BulkGetOptions`]) and its answer ([`BulkGetResult`], [`BulkGetDoc`],
//! [`BulkGetError`]), which `GET /{db}/{id}?open_revs=...` answers in too. Reading the
//! answer of every server (CouchDB's, pouchdb-server's, `open_revs`') is here; pairing
//! answers with requests and the fallback for servers without `_bulk_get` are the client's.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use settee_revtree::Rev;

/// One item of a `_bulk_get` request body: `{"id", "rev"?, "atts_since"?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkGetRequest {
    /// The document id.
    pub id: String,
    /// The revision; without one, every leaf is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
    /// Revisions the caller already has: attachments unchanged since them come back as
    /// stubs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub atts_since: Vec<Rev>,
}

/// The query parameters of `_bulk_get` (and of the `open_revs` fallback), each of the same
/// name. The default is CouchDB's: all off. A replicator asks for
/// [`BulkGetOptions::REPLICATION`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkGetOptions {
    /// Add `_revisions` to each document (replication needs them).
    pub revs: bool,
    /// Return the newest leaves descending from each requested revision.
    pub latest: bool,
    /// Inline attachment bodies (subject to each request's `atts_since`).
    pub attachments: bool,
}

impl BulkGetOptions {
    /// `revs=true&latest=true`: what a replicator reads revisions with (attachments are
    /// its choice).
    ///
    /// ```
    /// let opts = settee_wire::BulkGetOptions { attachments: true, ..settee_wire::BulkGetOptions::REPLICATION };
    /// assert!(opts.revs && opts.latest);
    /// ```
    pub const REPLICATION: BulkGetOptions = BulkGetOptions {
        revs: true,
        latest: true,
        attachments: false,
    };
}

/// The answer for one request item: `{"id", "docs": [...]}`, one entry per revision
/// returned (several for a conflicted document requested without `rev`).
///
/// `D` is how documents come: parsed (`Value`, the default) or as JSON text
/// (`Box<RawValue>`, which a replicator passes on without parsing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkGetResult<D = Value> {
    /// The document id.
    pub id: String,
    /// One entry per revision.
    pub docs: Vec<BulkGetDoc<D>>,
}

/// One revision in a [`BulkGetResult`]: `{"ok": doc}`, `{"missing": rev}` or
/// `{"error": {...}}`.
///
/// The store answers `Ok` or `Error` (CouchDB's `_bulk_get` forms). `Missing` is the
/// `open_revs` form, and what [`BulkGetDoc::from_json`] makes of pouchdb-server's `{}` for
/// a document that does not exist at all (which names no revision: `Missing(None)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkGetDoc<D = Value> {
    /// The document at that revision (with `_revisions` when asked for).
    Ok(D),
    /// The revision is not there.
    Missing(Option<Rev>),
    /// Why it could not be read (CouchDB's `{"error": {"id", "rev", "error", "reason"}}`).
    Error(BulkGetError),
}

/// The error object of a `_bulk_get` entry: `{"id", "rev", "error", "reason"}`. Members a
/// server leaves out read as empty (`rev`: `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkGetError {
    /// The document id.
    #[serde(default)]
    pub id: String,
    /// The revision asked for, as sent (CouchDB says `"undefined"` when none was given,
    /// and so does the store).
    #[serde(default)]
    pub rev: Option<String>,
    /// CouchDB's error name (`not_found`, ...).
    #[serde(default)]
    pub error: String,
    /// CouchDB's reason (`missing`, `deleted`, ...).
    #[serde(default)]
    pub reason: String,
}

impl BulkGetError {
    /// What an entry whose error object does not parse stands for.
    fn unknown() -> BulkGetError {
        BulkGetError {
            id: String::new(),
            rev: None,
            error: "unknown_error".into(),
            reason: String::new(),
        }
    }
}

impl BulkGetDoc {
    /// Reads one entry of any server's answer, never failing: `{"ok": doc}`,
    /// `{"missing": rev}` (`open_revs`), CouchDB's `{"error": {...}}`, pouchdb-server's
    /// flattened `{"error": name, "reason": text}`, and anything else (pouchdb-server's
    /// `{}` for a document that does not exist) as `Missing(None)`.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_wire::BulkGetDoc;
    /// let e = BulkGetDoc::from_json(json!({"error": "not_found", "reason": "missing"}));
    /// let BulkGetDoc::Error(e) = e else { panic!() };
    /// assert_eq!((e.error.as_str(), e.reason.as_str()), ("not_found", "missing"));
    /// ```
    pub fn from_json(v: Value) -> BulkGetDoc {
        let Value::Object(mut map) = v else {
            return BulkGetDoc::Missing(None);
        };
        if let Some(doc) = map.remove("ok") {
            return BulkGetDoc::Ok(doc);
        }
        if let Some(missing) = map.remove("missing") {
            return BulkGetDoc::Missing(missing.as_str().and_then(|s| s.parse().ok()));
        }
        match map.remove("error") {
            Some(Value::Object(e)) => BulkGetDoc::Error(
                serde_json::from_value(Value::Object(e))
                    .unwrap_or_else(|_| BulkGetError::unknown()),
            ),
            Some(Value::String(error)) => BulkGetDoc::Error(BulkGetError {
                id: String::new(),
                rev: None,
                error,
                reason: map
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            _ => BulkGetDoc::Missing(None),
        }
    }
}

impl<D> BulkGetDoc<D> {
    /// The document, if this entry has one.
    pub fn doc(&self) -> Option<&D> {
        match self {
            BulkGetDoc::Ok(doc) => Some(doc),
            _ => None,
        }
    }

    /// The same entry with its document converted.
    pub fn map<E>(self, f: impl FnOnce(D) -> E) -> BulkGetDoc<E> {
        match self {
            BulkGetDoc::Ok(d) => BulkGetDoc::Ok(f(d)),
            BulkGetDoc::Missing(rev) => BulkGetDoc::Missing(rev),
            BulkGetDoc::Error(e) => BulkGetDoc::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_serialise_only_what_is_set_and_round_trip() {
        let bare = BulkGetRequest {
            id: "a".into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"id": "a"}));
        let full = BulkGetRequest {
            id: "a".into(),
            rev: Some("2-b".parse().unwrap()),
            atts_since: vec!["1-a".parse().unwrap()],
        };
        let v = serde_json::to_value(&full).unwrap();
        assert_eq!(v, json!({"id": "a", "rev": "2-b", "atts_since": ["1-a"]}));
        assert_eq!(serde_json::from_value::<BulkGetRequest>(v).unwrap(), full);
        assert_eq!(
            serde_json::from_value::<BulkGetRequest>(json!({"id": "a"})).unwrap(),
            bare
        );
    }

    #[test]
    fn couchdb_answers_round_trip_and_the_store_answers_the_same() {
        let couch = json!({"id": "a", "docs": [
            {"ok": {"_id": "a", "_rev": "1-x"}},
            {"error": {"id": "a", "rev": "2-y", "error": "not_found", "reason": "missing"}}
        ]});
        let r: BulkGetResult = serde_json::from_value(couch.clone()).unwrap();
        assert_eq!(r.docs[0].doc(), Some(&json!({"_id": "a", "_rev": "1-x"})));
        let BulkGetDoc::Error(e) = &r.docs[1] else {
            panic!("not an error")
        };
        assert_eq!(e.rev.as_deref(), Some("2-y"));
        assert_eq!(serde_json::to_value(&r).unwrap(), couch);
        // The store's form of a request without a rev: CouchDB's "undefined".
        let store: BulkGetResult = BulkGetResult {
            id: "b".into(),
            docs: vec![BulkGetDoc::Error(BulkGetError {
                id: "b".into(),
                rev: Some("undefined".into()),
                error: "not_found".into(),
                reason: "missing".into(),
            })],
        };
        assert_eq!(
            serde_json::to_value(&store).unwrap(),
            json!({"id": "b", "docs": [{"error": {"id": "b", "rev": "undefined",
                                                   "error": "not_found", "reason": "missing"}}]})
        );
    }

    #[test]
    fn entries_of_every_server_shape_parse() {
        assert_eq!(
            BulkGetDoc::from_json(json!({"ok": {"_id": "a"}})).doc(),
            Some(&json!({"_id": "a"}))
        );
        // open_revs.
        assert_eq!(
            BulkGetDoc::from_json(json!({"missing": "2-b"})),
            BulkGetDoc::Missing(Some("2-b".parse().unwrap()))
        );
        // pouchdb-server, for a document that does not exist.
        assert_eq!(BulkGetDoc::from_json(json!({})), BulkGetDoc::Missing(None));
        assert_eq!(
            BulkGetDoc::from_json(json!(null)),
            BulkGetDoc::Missing(None)
        );
        // pouchdb-server's flattened error.
        assert_eq!(
            BulkGetDoc::from_json(json!({"error": "not_found", "reason": "deleted"})),
            BulkGetDoc::Error(BulkGetError {
                id: String::new(),
                rev: None,
                error: "not_found".into(),
                reason: "deleted".into()
            })
        );
        // CouchDB's error object; an unreadable one is an unknown_error.
        let BulkGetDoc::Error(e) = BulkGetDoc::from_json(json!(
            {"error": {"id": "a", "rev": "1-x", "error": "not_found", "reason": "missing"}}))
        else {
            panic!("not an error entry")
        };
        assert_eq!(
            (e.error.as_str(), e.rev.as_deref()),
            ("not_found", Some("1-x"))
        );
        let BulkGetDoc::Error(e) = BulkGetDoc::from_json(json!({"error": {"id": 5}})) else {
            panic!("not an error entry")
        };
        assert_eq!(e.error, "unknown_error");
    }

    #[test]
    fn missing_entries_round_trip_and_map_keeps_the_kind() {
        let missing: BulkGetDoc = BulkGetDoc::Missing(Some("3-c".parse().unwrap()));
        let v = serde_json::to_value(&missing).unwrap();
        assert_eq!(v, json!({"missing": "3-c"}));
        assert_eq!(serde_json::from_value::<BulkGetDoc>(v).unwrap(), missing);
        assert_eq!(
            serde_json::to_value(BulkGetDoc::<Value>::Missing(None)).unwrap(),
            json!({"missing": null})
        );
        let ok: BulkGetDoc<String> = BulkGetDoc::Ok(json!({"a": 1})).map(|d| d.to_string());
        assert_eq!(ok, BulkGetDoc::Ok(r#"{"a":1}"#.to_owned()));
        assert_eq!(
            missing.map(|d| d.to_string()),
            BulkGetDoc::Missing(Some("3-c".parse().unwrap()))
        );
    }

    #[test]
    fn options_default_to_couchdbs_and_replication_reads_revs_and_latest() {
        assert_eq!(
            BulkGetOptions::default(),
            BulkGetOptions {
                revs: false,
                latest: false,
                attachments: false
            }
        );
        assert_eq!(
            BulkGetOptions::REPLICATION,
            BulkGetOptions {
                revs: true,
                latest: true,
                attachments: false
            }
        );
    }
}
