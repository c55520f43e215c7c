//! Attachments as raw bytes: reading one attachment's bytes, and adding one to a document
//! from bytes, without the base64 of inline attachments.

use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::attachments::metas;
use crate::keys;
use crate::validate::{AttIn, Body, ParsedDoc, LOCAL_PREFIX};
use crate::{Database, DocResult, Error, GetOptions, Result};

/// An attachment's bytes and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its MIME type.
    pub content_type: String,
    /// CouchDB's digest, `md5-<base64>`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Database {
    /// Attachment `name` of document `id` (the winner, or revision `rev`):
    /// `GET /{db}/{id}/{name}`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the document, revision or attachment does not exist; storage
    /// errors.
    pub fn get_attachment(&self, id: &str, name: &str, rev: Option<&Rev>) -> Result<Attachment> {
        let opts = GetOptions {
            rev: rev.cloned(),
            ..Default::default()
        };
        let doc = self.get(id, &opts)?;
        let rec = self
            .load_doc(id)?
            .ok_or_else(|| Error::not_found(id, "missing"))?;
        let rev: Rev = doc["_rev"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Error::corrupt(format!("{id:?} read without a _rev")))?;
        let body = self
            .load_body(id, &rec, &rev)?
            .ok_or_else(|| Error::not_found(id, "missing"))?;
        let meta = metas(&body)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| Error::not_found(&format!("{id}/{name}"), "missing"))?;
        let data = self
            .inner
            .tree
            .get(keys::att_key(&meta.digest))
            .map_err(|e| self.inner.storage(e))?
            .ok_or_else(|| {
                Error::corrupt(format!("attachment {name:?} of {id:?} is not stored"))
            })?;
        Ok(Attachment {
            content_type: meta.content_type,
            digest: meta.digest,
            data: data.to_vec(),
        })
    }

    /// Adds (or replaces) attachment `name` of document `id` from its bytes: a new revision
    /// on top of `rev` (`PUT /{db}/{id}/{name}?rev=...`), keeping the other attachments and
    /// the body. Without `rev` the document must not exist (or be deleted): it is created
    /// with only the attachment, as CouchDB does.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let r = db.put_attachment("n", None, "a.txt", "text/plain", b"hello".to_vec())?;
    /// let att = db.get_attachment("n", "a.txt", None)?;
    /// assert_eq!((att.data.as_slice(), att.content_type.as_str()), (&b"hello"[..], "text/plain"));
    /// assert!(r.rev.unwrap().to_string().starts_with("1-"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] if `rev` is not the current leaf (or is missing for an existing
    /// document); [`Error::NotFound`] if `rev` is given and the document does not exist;
    /// [`Error::BadRequest`] for a `_local/` id; storage errors.
    pub fn put_attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<DocResult> {
        if id.starts_with(LOCAL_PREFIX) {
            return Err(Error::bad_request("_local documents have no attachments"));
        }
        let mut body = Map::new();
        let mut attachments = Vec::new();
        if let Some(rev) = rev {
            let doc = self.get(
                id,
                &GetOptions {
                    rev: Some(rev.clone()),
                    ..Default::default()
                },
            )?;
            if let Value::Object(map) = doc {
                for (k, v) in map {
                    if k == "_attachments" {
                        if let Value::Object(atts) = v {
                            for (att_name, _) in atts {
                                if att_name != name {
                                    attachments.push((
                                        att_name,
                                        AttIn::Stub {
                                            content_type: None,
                                            digest: None,
                                            revpos: None,
                                        },
                                    ));
                                }
                            }
                        }
                    } else if !k.starts_with('_') {
                        body.insert(k, v);
                    }
                }
            }
        }
        attachments.push((
            name.to_owned(),
            AttIn::Data {
                content_type: content_type.to_owned(),
                data,
                revpos: None,
            },
        ));
        let doc = ParsedDoc {
            id: Some(id.to_owned()),
            rev: rev.cloned(),
            body: Body::Map(body),
            attachments,
            ..ParsedDoc::empty()
        };
        let mut out = self.write_docs(vec![doc], true)?;
        let one = out
            .pop()
            .ok_or_else(|| Error::corrupt("write of one document returned no result"))?;
        one.result.map(|rev| DocResult::ok(one.id, rev))
    }
}
