//! Adding an attachment to a document from its bytes, without the base64 of inline
//! attachments (reading one is `Database::attachment`, in `attachments.rs`).

use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::validate::{AttIn, Body, ParsedDoc, LOCAL_PREFIX};
use crate::{Database, DocResult, Error, GetOptions, Result};

impl Database {
    /// Adds (or replaces) attachment `name` of document `id` from its bytes: a new revision
    /// on top of `rev` (`PUT /{db}/{id}/{name}?rev=...`), keeping the other attachments and
    /// the body. Without `rev` the document must not exist (or be deleted): it is created
    /// with only the attachment, as CouchDB does.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let r = db.put_attachment("n", None, "a.txt", "text/plain", b"hello".to_vec())?;
    /// let att = db.attachment("n", None, "a.txt")?;
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
        let mut out = self.write_docs(vec![doc], true, false, None)?;
        let one = out
            .pop()
            .ok_or_else(|| Error::corrupt("write of one document returned no result"))?;
        one.result.map(|rev| DocResult::ok(one.id, rev))
    }
}
