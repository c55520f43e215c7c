//! [`Doc<T>`]'s conversion to and from CouchDB's document JSON: which `_` members go to the
//! `Doc`'s own fields, which go nowhere (read-only metadata), and that the rest is `T`'s.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use settee_revtree::Rev;

use super::{attachment_stub, Doc};
use crate::{Error, Result};

/// The members a `Doc` holds in fields of its own: taken out of the JSON before `T` sees it,
/// and on a write taken from the `Doc`, never from `T`'s serialization.
const OWN: [&str; 5] = ["_id", "_rev", "_attachments", "_deleted", "_conflicts"];

/// Members a read may carry that a write must not send back: they describe the revision
/// tree or the database (`revs`, `revs_info`, `local_seq`, `deleted_conflicts`), and a
/// write computes them anew. Dropped, so `T` never sees them either.
const READ_ONLY: [&str; 4] = [
    "_revisions",
    "_revs_info",
    "_local_seq",
    "_deleted_conflicts",
];

impl<T: Serialize> Doc<T> {
    /// The document as CouchDB's JSON, ready to write: the body's members with `_id`,
    /// `_rev`, `_deleted: true` for a deletion, and `_attachments` as stubs (so the write
    /// keeps them; an attachment not in [`Doc::attachments`] is not in the new revision).
    /// The body's own `_id`, `_rev`, `_attachments`, `_deleted` and `_conflicts`, if `T`
    /// has such fields, are ignored: the `Doc`'s fields say them.
    ///
    /// ```
    /// # #[derive(serde::Serialize)] struct Note { title: String }
    /// let mut doc = settee::Doc::new("note:1", Note { title: "hi".into() });
    /// doc.attachments.insert("a.txt".into(), settee::AttachmentStub::new("text/plain", "md5-x", 5, 2));
    /// assert_eq!(doc.to_json()?, serde_json::json!({
    ///     "_id": "note:1",
    ///     "_attachments": {"a.txt": {"content_type": "text/plain", "digest": "md5-x",
    ///                                "length": 5, "revpos": 2, "stub": true}},
    ///     "title": "hi",
    /// }));
    /// # Ok::<(), settee::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Decode`] if the body does not serialize to a JSON object.
    pub fn to_json(&self) -> Result<Value> {
        let decode = |cause| Error::decode(self.id.clone(), cause);
        let body = serde_json::to_value(&self.body).map_err(decode)?;
        let Value::Object(fields) = body else {
            return Err(decode(serde::ser::Error::custom(
                "a document body must serialize to a JSON object",
            )));
        };
        let mut out = Map::with_capacity(fields.len() + 4);
        out.insert("_id".into(), Value::String(self.id.clone()));
        if let Some(rev) = &self.rev {
            out.insert("_rev".into(), Value::String(rev.to_string()));
        }
        if self.deleted {
            out.insert("_deleted".into(), Value::Bool(true));
        }
        if !self.attachments.is_empty() {
            out.insert(
                "_attachments".into(),
                attachment_stub::to_json(&self.attachments),
            );
        }
        out.extend(
            fields
                .into_iter()
                .filter(|(k, _)| !OWN.contains(&k.as_str())),
        );
        Ok(Value::Object(out))
    }
}

impl<T: DeserializeOwned> Doc<T> {
    /// A document from CouchDB's JSON (a read's answer). `_id`, `_rev`, `_deleted`,
    /// `_conflicts` and `_attachments` (stubs or inline data, kept as
    /// [`AttachmentStub`](crate::AttachmentStub)s) go to the `Doc`'s fields; `_revisions`,
    /// `_revs_info`, `_local_seq` and `_deleted_conflicts` are dropped; the rest is
    /// deserialized into `T`, whose unknown fields serde ignores unless `T` says otherwise.
    ///
    /// ```
    /// #[derive(serde::Deserialize)] struct Note { title: String }
    /// let doc: settee::Doc<Note> = settee::Doc::from_json(serde_json::json!({
    ///     "_id": "note:1", "_rev": "2-b", "title": "hi",
    ///     "_attachments": {"a.txt": {"content_type": "text/plain", "digest": "md5-x",
    ///                                "length": 5, "revpos": 2, "stub": true}},
    /// }))?;
    /// assert_eq!(doc.attachments["a.txt"].length, 5);
    /// assert!(!doc.deleted);
    /// # Ok::<(), settee::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Decode`] if it is not an object with an `_id`, a `_rev`, `_conflicts` or
    /// `_attachments` entry is malformed, or the rest does not fit `T`.
    pub fn from_json(doc: Value) -> Result<Doc<T>> {
        let Value::Object(mut fields) = doc else {
            return Err(Error::decode(
                "",
                serde::de::Error::custom("a document must be a JSON object"),
            ));
        };
        let id = match fields.shift_remove("_id") {
            Some(Value::String(id)) => id,
            _ => {
                return Err(Error::decode(
                    "",
                    serde::de::Error::custom("the document has no string _id"),
                ))
            }
        };
        let decode = |cause| Error::decode(id.clone(), cause);
        let rev = match fields.shift_remove("_rev") {
            Some(Value::String(r)) => Some(
                r.parse::<Rev>()
                    .map_err(|e| decode(serde::de::Error::custom(e)))?,
            ),
            _ => None,
        };
        let conflicts = match fields.shift_remove("_conflicts") {
            Some(c) => serde_json::from_value(c).map_err(decode)?,
            None => Vec::new(),
        };
        let attachments = match fields.shift_remove("_attachments") {
            Some(a) => attachment_stub::from_json(a).map_err(decode)?,
            None => BTreeMap::new(),
        };
        let deleted = fields.shift_remove("_deleted") == Some(Value::Bool(true));
        for member in READ_ONLY {
            fields.shift_remove(member);
        }
        let body = serde_json::from_value(Value::Object(fields)).map_err(decode)?;
        Ok(Doc {
            id,
            rev,
            body,
            attachments,
            deleted,
            conflicts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_read_and_its_write_keep_the_attachments_as_stubs() {
        let read = json!({
            "_id": "n", "_rev": "3-c", "title": "t",
            "_attachments": {"img": {"content_type": "image/png", "digest": "md5-d",
                "revpos": 2, "data": "aGVsbG8="}},
            "_revisions": {"start": 3, "ids": ["c", "b", "a"]},
            "_local_seq": 7,
        });
        let doc: Doc<Map<String, Value>> = Doc::from_json(read).unwrap();
        // Read-only metadata reaches neither the body nor the write.
        assert_eq!(doc.body, json!({"title": "t"}).as_object().unwrap().clone());
        assert_eq!(
            doc.to_json().unwrap(),
            json!({"_id": "n", "_rev": "3-c", "title": "t",
                "_attachments": {"img": {"content_type": "image/png", "digest": "md5-d",
                    "length": 5, "revpos": 2, "stub": true}}})
        );
    }

    #[test]
    fn a_deleted_revision_reads_as_deleted_and_writes_as_a_deletion() {
        let doc: Doc<Value> =
            Doc::from_json(json!({"_id": "n", "_rev": "2-b", "_deleted": true})).unwrap();
        assert!(doc.deleted);
        assert_eq!(doc.body, json!({}));
        assert_eq!(
            doc.to_json().unwrap(),
            json!({"_id": "n", "_rev": "2-b", "_deleted": true})
        );
    }

    #[test]
    fn the_docs_fields_outrank_the_bodys_own_underscore_members() {
        let mut doc = Doc::new(
            "n",
            json!({"_id": "other", "_attachments": {"x": {}}, "_deleted": true, "a": 1}),
        );
        doc.attachments.insert(
            "y".into(),
            crate::AttachmentStub::new("text/plain", "md5-y", 1, 1),
        );
        let json = doc.to_json().unwrap();
        assert_eq!(json["_id"], "n");
        assert_eq!(json.get("_deleted"), None);
        assert_eq!(
            json["_attachments"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["y"]
        );
        assert_eq!(json["a"], 1);
    }

    #[test]
    fn a_malformed_attachment_entry_is_a_decode_error_naming_the_document() {
        let err =
            Doc::<Value>::from_json(json!({"_id": "n", "_attachments": {"img": {"digest": "d"}}}))
                .unwrap_err();
        assert_eq!(err.name(), "doc_decode");
        assert!(err.to_string().contains("\"n\""), "{err}");
    }
}
