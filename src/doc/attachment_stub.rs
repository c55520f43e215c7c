//! [`AttachmentStub`]: what a typed document knows of one of its attachments (an entry of
//! `_attachments` without the bytes), read from either form a database answers (a stub, or
//! inline `data`) and written back as a stub. The bytes travel as streams
//! (`Db::get_attachment`, `Db::put_attachment`), never through `Doc<T>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One attachment of a document as [`Doc<T>`](crate::Doc) keeps it: its metadata, without
/// its bytes. Written back as `{"stub": true, ...}`, which tells a local store and CouchDB
/// alike to keep the attachment the edited revision has under that name and `revpos`.
///
/// A document read with its attachments' data inline (`attachments=true`) gives the same
/// stub: the data is dropped (its decoded length becomes `length` when the server sends
/// none), because a `Doc<T>` is for reading and editing a document's fields; read or add
/// bytes with `Db::get_attachment` and `Db::put_attachment`. Writing a stub to a database
/// that does not hold the attachment (a document copied from elsewhere) is refused with
/// `missing_stub`, never written without it.
///
/// ```
/// let stub: settee::AttachmentStub = serde_json::from_value(serde_json::json!({
///     "content_type": "image/png", "digest": "md5-XUFAKrxLKna5cZ2REBfFkg==",
///     "length": 5, "revpos": 2, "stub": true
/// }))?;
/// assert_eq!((stub.length, stub.revpos), (5, 2));
/// assert_eq!(serde_json::to_value(&stub)?["stub"], true);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "Entry")]
pub struct AttachmentStub {
    /// Its MIME type.
    pub content_type: String,
    /// CouchDB's digest of its bytes (`md5-<base64>`): equal bytes, equal digest, on
    /// CouchDB, PouchDB and a local store.
    pub digest: String,
    /// Its length in bytes (decoded, when it is stored compressed).
    pub length: u64,
    /// The revision position (`N` of `N-hash`) at which it was last written; an edit that
    /// keeps it keeps this too.
    pub revpos: u64,
    /// How the server stores it compressed (`"gzip"`), when it says.
    pub encoding: Option<String>,
    /// Its stored (compressed) length, when the server says.
    pub encoded_length: Option<u64>,
}

impl AttachmentStub {
    /// A stub for an attachment a database holds: its type, digest, length and `revpos`.
    ///
    /// ```
    /// let stub = settee::AttachmentStub::new("text/plain", settee::store::attachment_digest(b"hi"), 2, 1);
    /// assert_eq!(serde_json::to_value(&stub)?, serde_json::json!({
    ///     "content_type": "text/plain", "digest": "md5-SfaKXIST7CwL9ImCHCH8Ow==",
    ///     "length": 2, "revpos": 1, "stub": true,
    /// }));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn new(
        content_type: impl Into<String>,
        digest: impl Into<String>,
        length: u64,
        revpos: u64,
    ) -> AttachmentStub {
        AttachmentStub {
            content_type: content_type.into(),
            digest: digest.into(),
            length,
            revpos,
            encoding: None,
            encoded_length: None,
        }
    }
}

/// Always with `"stub": true`: the marker that makes a database keep the attachment it
/// holds instead of expecting data.
impl Serialize for AttachmentStub {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            content_type: &'a str,
            digest: &'a str,
            length: u64,
            revpos: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            encoding: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            encoded_length: Option<u64>,
            stub: bool,
        }
        Wire {
            content_type: &self.content_type,
            digest: &self.digest,
            length: self.length,
            revpos: self.revpos,
            encoding: self.encoding.as_deref(),
            encoded_length: self.encoded_length,
            stub: true,
        }
        .serialize(s)
    }
}

/// An `_attachments` entry in either form a database answers: the stub's members, and
/// `data` instead of `length` when the bytes came inline.
#[derive(Deserialize)]
struct Entry {
    content_type: String,
    digest: String,
    length: Option<u64>,
    revpos: u64,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    encoded_length: Option<u64>,
    #[serde(default)]
    data: Option<String>,
}

impl TryFrom<Entry> for AttachmentStub {
    type Error = &'static str;

    fn try_from(e: Entry) -> Result<AttachmentStub, Self::Error> {
        let length = match (e.length, &e.data) {
            (Some(length), _) => length,
            (None, Some(data)) => base64_decoded_len(data),
            (None, None) => return Err("no length and no data"),
        };
        Ok(AttachmentStub {
            content_type: e.content_type,
            digest: e.digest,
            length,
            revpos: e.revpos,
            encoding: e.encoding,
            encoded_length: e.encoded_length,
        })
    }
}

/// The stubs of a document's `_attachments` member, by name.
///
/// # Errors
/// A serde error naming the attachment whose entry has no `content_type`, `digest` or
/// `revpos`, or neither `length` nor `data`.
pub(super) fn from_json(atts: Value) -> serde_json::Result<BTreeMap<String, AttachmentStub>> {
    let Value::Object(atts) = atts else {
        return Err(serde::de::Error::custom("_attachments must be an object"));
    };
    atts.into_iter()
        .map(|(name, entry)| {
            let stub = serde_json::from_value(entry)
                .map_err(|e| serde::de::Error::custom(format_args!("attachment {name:?}: {e}")))?;
            Ok((name, stub))
        })
        .collect()
}

/// The stubs as a document's `_attachments` member.
pub(super) fn to_json(atts: &BTreeMap<String, AttachmentStub>) -> Value {
    let map: Map<String, Value> = atts
        .iter()
        .map(|(name, stub)| {
            // INVARIANT: a struct of strings, integers and a bool always serializes.
            let v = serde_json::to_value(stub).unwrap_or(Value::Null);
            (name.clone(), v)
        })
        .collect();
    Value::Object(map)
}

/// The number of bytes that standard base64 `text` decodes to (padded or not), computed
/// without decoding it: the stub only needs the length.
fn base64_decoded_len(text: &str) -> u64 {
    let text = text.trim_end_matches('=');
    (text.len() as u64).saturating_mul(3) / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_data_becomes_a_stub_with_its_decoded_length() {
        // base64 of "hello" and of "hell": one and two padding characters.
        let atts = json!({
            "a.txt": {"content_type": "text/plain", "digest": "md5-x", "revpos": 3, "data": "aGVsbG8="},
            "b.txt": {"content_type": "text/plain", "digest": "md5-y", "revpos": 1, "data": "aGVsbA=="},
        });
        let stubs = from_json(atts).unwrap();
        assert_eq!(
            stubs["a.txt"],
            AttachmentStub::new("text/plain", "md5-x", 5, 3)
        );
        assert_eq!(stubs["b.txt"].length, 4);
        assert_eq!(
            to_json(&stubs)["a.txt"],
            json!({"content_type": "text/plain", "digest": "md5-x", "length": 5, "revpos": 3, "stub": true})
        );
    }

    #[test]
    fn encoding_is_kept_and_written_back() {
        let entry = json!({"content_type": "text/plain", "digest": "md5-x", "length": 900,
            "revpos": 2, "encoding": "gzip", "encoded_length": 120, "stub": true});
        let stubs = from_json(json!({"log.txt": entry.clone()})).unwrap();
        assert_eq!(stubs["log.txt"].encoding.as_deref(), Some("gzip"));
        assert_eq!(to_json(&stubs)["log.txt"], entry);
    }

    #[test]
    fn an_entry_without_a_digest_is_an_error_naming_it() {
        let err =
            from_json(json!({"a.txt": {"content_type": "text/plain", "revpos": 1, "length": 2}}))
                .unwrap_err();
        assert!(err.to_string().contains("a.txt"), "{err}");
        assert!(err.to_string().contains("digest"), "{err}");
        let err =
            from_json(json!({"a.txt": {"content_type": "text/plain", "digest": "d", "revpos": 1}}))
                .unwrap_err();
        assert!(err.to_string().contains("no length"), "{err}");
    }
}
