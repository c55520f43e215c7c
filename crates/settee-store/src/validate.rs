//! Checking a document given to a write and splitting it into its parts: id, rev, ancestry,
//! deletion flag, body and attachments. Every rule here is CouchDB's (`couch_doc.erl`
//! `validate_docid/1` and `transfer_fields/3`), with CouchDB's error names and reasons. What
//! the parts mean for the rev tree is `write/`'s business.

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use settee_revtree::{Rev, Revisions};

use crate::{json_text, Error, Result};

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
        /// Set when `data` is the attachment's encoded bytes (a store's replication fetch,
        /// [`encoded_inline`]): the encoding and the decoded length, checked.
        encoded: Option<(crate::keys::AttEncoding, u64)>,
    },
    /// Bytes staged already ([`crate::StagedAttachment`]): the write commits them.
    Staged {
        content_type: String,
        digest: String,
        /// Its blob, and how the staged bytes are encoded.
        head: crate::keys::AttHead,
        /// The attachment's length once decoded.
        decoded_length: u64,
        revpos: Option<u64>,
    },
    /// `follows`: the bytes come apart from the JSON (CouchDB's multipart form). Only
    /// [`crate::Database::bulk_doc_staged_from`] gives them (staged); any other write
    /// refuses it.
    Follows {
        content_type: Option<String>,
        revpos: Option<u64>,
    },
    /// A stub: the attachment is already stored (on the parent revision, or by digest).
    Stub {
        content_type: Option<String>,
        digest: Option<String>,
        revpos: Option<u64>,
        /// What the stub says of the bytes (`att_encoding_info`): the decoded length, and
        /// the encoding with the encoded length when they are encoded.
        length: Option<u64>,
        encoding: Option<(crate::keys::AttEncoding, Option<u64>)>,
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
    pub(crate) body: Body,
    pub(crate) attachments: Vec<(String, AttIn)>,
}

/// A document body without its special members: parsed, or as the JSON text of an object
/// (a replicated document passes through as text, saving a pull the work of building a
/// `Value` per document only to serialize it again).
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Map(Map<String, Value>),
    /// `{...}`: valid JSON, no whitespace after the closing brace.
    Json(Vec<u8>),
}

impl Body {
    /// The body as a map (parsing the text form).
    pub(crate) fn into_map(self) -> Result<Map<String, Value>> {
        match self {
            Body::Map(m) => Ok(m),
            Body::Json(bytes) => crate::deep_json::from_slice(&bytes)
                .map_err(|e| Error::bad_request(format!("Invalid document body: {e}"))),
        }
    }

    /// Adds a member at the end (the body has no member of that name: specials are out).
    pub(crate) fn push(&mut self, key: &str, value: Value) {
        match self {
            Body::Map(m) => {
                m.insert(key.to_owned(), value);
            }
            Body::Json(bytes) => {
                bytes.pop(); // the closing brace
                if bytes.len() > 1 {
                    bytes.push(b',');
                }
                // Writing JSON to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *bytes, key);
                bytes.push(b':');
                let _ = serde_json::to_writer(&mut *bytes, &value);
                bytes.push(b'}');
            }
        }
    }

    /// The JSON text to store.
    pub(crate) fn encode(self) -> Result<Vec<u8>> {
        match self {
            Body::Map(map) => {
                // Sized for a typical note, so the writer rarely grows it.
                let mut bytes = Vec::with_capacity(1536);
                serde_json::to_writer(&mut bytes, &map)
                    .map_err(|e| Error::bad_request(format!("body: {e}")))?;
                Ok(bytes)
            }
            Body::Json(bytes) => Ok(bytes),
        }
    }
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
    let mut parsed = ParsedDoc::empty();
    for key in specials {
        let Some(value) = body.shift_remove(&key) else {
            continue;
        };
        parsed.special(&key, value)?;
    }
    parsed.body = Body::Map(body);
    parsed.check_rev_matches()?;
    Ok(parsed)
}

/// Checks a document given as JSON text and splits it into its parts, like [`parse_doc`],
/// keeping the body as text: the members other than specials are copied as written.
pub(crate) fn parse_doc_json(json: &RawValue) -> Result<ParsedDoc> {
    let members = json_text::members(json)
        .ok_or_else(|| Error::bad_request("Document must be a JSON object"))?;
    let mut parsed = ParsedDoc::empty();
    let mut body = Vec::with_capacity(json.get().len() + 2);
    body.push(b'{');
    for m in members {
        if m.name.starts_with('_') && !KEPT_SPECIALS.contains(&m.name.as_ref()) {
            parsed.special_text(&m.name, m.value)?;
        } else {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(m.text.as_bytes());
        }
    }
    body.push(b'}');
    parsed.body = Body::Json(body);
    parsed.check_rev_matches()?;
    Ok(parsed)
}

/// The `_id` of a document given as JSON text, if it has a string one (for the result of a
/// document that failed to parse).
pub(crate) fn id_of_json(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(rename = "_id")]
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(json).ok().and_then(|d| d.id)
}

impl ParsedDoc {
    pub(crate) fn empty() -> ParsedDoc {
        ParsedDoc {
            id: None,
            rev: None,
            revisions: None,
            deleted: false,
            body: Body::Map(Map::new()),
            attachments: Vec::new(),
        }
    }

    /// Takes one special member (`_id`, `_rev`, ...), or rejects it.
    fn special(&mut self, key: &str, value: Value) -> Result<()> {
        let parsed = self;
        match key {
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
        Ok(())
    }

    /// [`ParsedDoc::special`] for a value given as JSON text: the usual members of a
    /// replicated document are read straight into their types, anything else (and any
    /// value of an unexpected type, for the error) through a `Value`.
    fn special_text(&mut self, key: &str, text: &str) -> Result<()> {
        match key {
            "_id" | "_rev" if text.starts_with('"') => {
                if let Ok(s) = serde_json::from_str::<String>(text) {
                    return self.special(key, Value::String(s));
                }
            }
            "_revisions" => {
                if let Ok(revs) = serde_json::from_str::<Revisions>(text) {
                    revs.to_path()?;
                    self.revisions = Some(revs);
                    return Ok(());
                }
            }
            _ => {}
        }
        let value: Value = crate::deep_json::from_str(text)
            .map_err(|e| Error::bad_request(format!("Invalid value of {key}: {e}")))?;
        self.special(key, value)
    }

    /// `_rev` and `_revisions`, when both are given, must name the same leaf.
    /// With both `_rev` and `_revisions`, `_revisions` says which revision this is, as in
    /// CouchDB (`couch_doc:transfer_fields/3` lets it replace what `_rev` set) and PouchDB.
    /// They can disagree: PouchDB 9 reports `_revisions` of a path whose hash repeats
    /// (`3-c` on `2-c`) starting one position short, with `_rev` right.
    fn check_rev_matches(&mut self) -> Result<()> {
        if let (Some(rev), Some(revs)) = (&self.rev, &self.revisions) {
            let leaf = Rev::new(revs.start, revs.ids[0].clone())?;
            if &leaf != rev {
                self.rev = Some(leaf);
            }
        }
        Ok(())
    }
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
        if name.starts_with('_') {
            return Err(Error::bad_request(format!(
                "Attachment name '{name}' starts with prohibited character '_'"
            )));
        }
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
            let encoding = att
                .get("encoding")
                .and_then(Value::as_str)
                .and_then(|e| e.parse().ok())
                .map(|e| (e, att.get("encoded_length").and_then(Value::as_u64)));
            out.push((
                name,
                AttIn::Stub {
                    content_type,
                    digest,
                    revpos,
                    length: att.get("length").and_then(Value::as_u64),
                    encoding,
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
            let encoded = encoded_inline(&name, &att, &data)?;
            out.push((
                name,
                AttIn::Data {
                    content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    data,
                    revpos,
                    encoded,
                },
            ));
        } else if att.get("follows").and_then(Value::as_bool) == Some(true) {
            out.push((
                name,
                AttIn::Follows {
                    content_type,
                    revpos,
                },
            ));
        } else {
            return Err(Error::bad_request(format!(
                "attachment {name:?} has neither data nor stub"
            )));
        }
    }
    Ok(out)
}

/// Whether inline `data` is the attachment's ENCODED bytes: CouchDB's inline data is always
/// decoded, its `encoding` and `encoded_length` only information, and its `digest` that of
/// the encoded bytes, so decoded data never has that digest (short of an MD5 collision).
/// Data that has it, `encoded_length` long, with `encoding` named, is the encoded bytes:
/// the form a store's replication fetch sends another store (`settee_replicate`'s
/// `store_fetch.rs`), so that store-to-store replication keeps CouchDB's digests. The bytes
/// must decode to `length`.
///
/// # Errors
/// [`Error::BadRequest`] when such data does not decode to `length` bytes.
fn encoded_inline(
    name: &str,
    att: &Map<String, Value>,
    data: &[u8],
) -> Result<Option<(crate::keys::AttEncoding, u64)>> {
    let Some(encoding) = att
        .get("encoding")
        .and_then(Value::as_str)
        .and_then(|e| e.parse::<crate::keys::AttEncoding>().ok())
        .filter(|e| *e != crate::keys::AttEncoding::Identity)
    else {
        return Ok(None);
    };
    let (Some(digest), Some(encoded_length), Some(length)) = (
        att.get("digest").and_then(Value::as_str),
        att.get("encoded_length").and_then(Value::as_u64),
        att.get("length").and_then(Value::as_u64),
    ) else {
        return Ok(None);
    };
    if encoded_length != data.len() as u64 || crate::attachment_digest(data) != digest {
        return Ok(None);
    }
    let mut check = crate::attachments::encoded::Check::gzip(length);
    check
        .update(data)
        .and_then(|()| check.finish())
        .map_err(|e| Error::bad_request(format!("attachment {name:?}: {}", e.reason())))?;
    Ok(Some((encoding, length)))
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
    fn revisions_win_over_a_disagreeing_rev() {
        let d = parse_doc(json!({"_id": "a", "_rev": "3-c",
            "_revisions": {"start": 2, "ids": ["c", "a"]}}))
        .unwrap();
        assert_eq!(d.rev.unwrap().to_string(), "2-c");
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
            Value::Object(d.body.into_map().unwrap()),
            json!({"_replication_state": "x", "v": 1})
        );
    }
}
