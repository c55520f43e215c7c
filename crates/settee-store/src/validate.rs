//! Checking a document given to a write and splitting it into its parts: id, rev, ancestry,
//! deletion flag, body and attachments. Every rule here is CouchDB's (`couch_doc.erl`
//! `validate_docid/1` and `transfer_fields/3`), with CouchDB's error names and reasons. What
//! the parts mean for the rev tree is `write.rs`'s business.

use base64::Engine;
use serde_json::{Map, Value};
use settee_revtree::{Rev, Revisions};

use crate::{Error, Result};

/// The `_local/` prefix of local document ids.
pub(crate) const LOCAL_PREFIX: &str = "_local/";
const DESIGN_PREFIX: &str = "_design/";

/// Special members CouchDB accepts in a body and drops (they describe a read, not a write).
const IGNORED_SPECIALS: &[&str] = &[
    "_revs_info",
    "_local_seq",
    "_conflicts",
    "_deleted_conflicts",
    "_access",
];

/// Special members of replicator documents, which CouchDB keeps in the body.
const KEPT_SPECIALS: &[&str] = &[
    "_replication_state",
    "_replication_state_time",
    "_replication_state_reason",
    "_replication_id",
    "_replication_stats",
];

/// An attachment as given in a write.
#[derive(Debug, Clone)]
pub(crate) enum AttIn {
    /// Inline base64 data, decoded.
    Data {
        content_type: String,
        data: Vec<u8>,
        revpos: Option<u64>,
    },
    /// A stub: the attachment is already stored (on the parent revision, or by digest).
    Stub {
        content_type: Option<String>,
        digest: Option<String>,
        revpos: Option<u64>,
    },
}

/// A checked document.
#[derive(Debug, Clone)]
pub(crate) struct ParsedDoc {
    pub(crate) id: Option<String>,
    pub(crate) rev: Option<Rev>,
    pub(crate) revisions: Option<Revisions>,
    pub(crate) deleted: bool,
    /// The body without special members (replicator members kept).
    pub(crate) body: Map<String, Value>,
    pub(crate) attachments: Vec<(String, AttIn)>,
}

/// Checks a document id (CouchDB's `validate_docid/1`). `_local/` ids pass: callers route
/// them to the local-document code.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let illegal = |reason: &str| Error::IllegalDocId {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    if id.is_empty() {
        return Err(illegal("Document id must not be empty"));
    }
    if id == DESIGN_PREFIX || id == LOCAL_PREFIX {
        return Err(illegal(&format!("Illegal document id `{id}`")));
    }
    if id.starts_with('_') && !id.starts_with(DESIGN_PREFIX) && !id.starts_with(LOCAL_PREFIX) {
        return Err(illegal(
            "Only reserved document ids may start with underscore.",
        ));
    }
    Ok(())
}

/// Checks a document and splits it into its parts.
pub(crate) fn parse_doc(doc: Value) -> Result<ParsedDoc> {
    let Value::Object(mut body) = doc else {
        return Err(Error::bad_request("Document must be a JSON object"));
    };
    // The special members are taken out of the object, which then is the body (a document
    // has few of them, so this beats rebuilding the body member by member).
    let specials: Vec<String> = body
        .keys()
        .filter(|k| k.starts_with('_') && !KEPT_SPECIALS.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut parsed = ParsedDoc {
        id: None,
        rev: None,
        revisions: None,
        deleted: false,
        body: Map::new(),
        attachments: Vec::new(),
    };
    for key in specials {
        let Some(value) = body.shift_remove(&key) else {
            continue;
        };
        match key.as_str() {
            "_id" => match value {
                Value::String(id) => {
                    check_id(&id)?;
                    parsed.id = Some(id);
                }
                _ => {
                    return Err(Error::IllegalDocId {
                        id: value.to_string(),
                        reason: "Document id must be a string".into(),
                    })
                }
            },
            "_rev" => match value {
                Value::String(rev) => parsed.rev = Some(parse_rev(&rev)?),
                Value::Null => {}
                _ => return Err(Error::bad_request("Invalid rev format")),
            },
            "_revisions" => {
                let revs: Revisions = serde_json::from_value(value)
                    .map_err(|e| Error::bad_request(format!("Invalid _revisions: {e}")))?;
                revs.to_path()?;
                parsed.revisions = Some(revs);
            }
            "_deleted" => match value {
                Value::Bool(b) => parsed.deleted = b,
                Value::Null => {}
                _ => return Err(Error::bad_request("_deleted must be a boolean")),
            },
            "_attachments" => parsed.attachments = parse_attachments(value)?,
            other if IGNORED_SPECIALS.contains(&other) => {}
            other => {
                return Err(Error::DocValidation {
                    reason: format!("Bad special document member: {other}"),
                })
            }
        }
    }
    parsed.body = body;
    if let (Some(rev), Some(revs)) = (&parsed.rev, &parsed.revisions) {
        let leaf = Rev::new(revs.start, revs.ids[0].clone())?;
        if &leaf != rev {
            return Err(Error::bad_request(format!(
                "_rev {rev} does not match _revisions (which ends at {leaf})"
            )));
        }
    }
    Ok(parsed)
}

/// Parses a rev string, with CouchDB's reason for a bad one.
pub(crate) fn parse_rev(rev: &str) -> Result<Rev> {
    rev.parse()
        .map_err(|_| Error::bad_request(format!("Invalid rev format: {rev:?}")))
}

fn parse_attachments(value: Value) -> Result<Vec<(String, AttIn)>> {
    let Value::Object(atts) = value else {
        return Err(Error::bad_request("_attachments must be an object"));
    };
    let mut out = Vec::with_capacity(atts.len());
    for (name, att) in atts {
        let Value::Object(att) = att else {
            return Err(Error::bad_request(format!(
                "attachment {name:?} must be an object"
            )));
        };
        let content_type = att
            .get("content_type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let revpos = att.get("revpos").and_then(Value::as_u64);
        if att.get("stub").and_then(Value::as_bool) == Some(true) {
            let digest = att.get("digest").and_then(Value::as_str).map(str::to_owned);
            out.push((
                name,
                AttIn::Stub {
                    content_type,
                    digest,
                    revpos,
                },
            ));
        } else if let Some(data) = att.get("data") {
            let Some(text) = data.as_str() else {
                return Err(Error::bad_request(format!(
                    "attachment {name:?}: data must be a string"
                )));
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| Error::bad_request(format!("Invalid attachment data for {name}")))?;
            out.push((
                name,
                AttIn::Data {
                    content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    data,
                    revpos,
                },
            ));
        } else if att.get("follows").is_some() {
            return Err(Error::bad_request(format!(
                "attachment {name:?}: `follows` (multipart) is not supported; send data inline"
            )));
        } else {
            return Err(Error::bad_request(format!(
                "attachment {name:?} has neither data nor stub"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_follow_couchdb_rules() {
        assert!(check_id("a").is_ok());
        assert!(check_id("_design/x").is_ok());
        assert!(check_id("_local/x").is_ok());
        for bad in ["", "_x", "_design/", "_local/", "_Design/x"] {
            assert_eq!(check_id(bad).unwrap_err().name(), "illegal_docid", "{bad}");
        }
    }

    #[test]
    fn unknown_special_member_is_doc_validation() {
        let e = parse_doc(json!({"_id": "a", "_foo": 1})).unwrap_err();
        assert_eq!(e.name(), "doc_validation");
        assert_eq!(e.reason(), "Bad special document member: _foo");
    }

    #[test]
    fn read_only_specials_are_dropped_and_replication_fields_kept() {
        let d = parse_doc(json!({"_id": "a", "_conflicts": [], "_replication_state": "x", "v": 1}))
            .unwrap();
        assert_eq!(
            Value::Object(d.body),
            json!({"_replication_state": "x", "v": 1})
        );
    }
}
