//! Adding an attachment to a document from its bytes, from a reader, or from bytes staged
//! before, without the base64 of inline attachments (reading one is `Database::attachment`
//! and `Database::attachment_reader`, in `attachments/`; staging is `attachments/staging.rs`).

use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::validate::{AttIn, Body, ParsedDoc, LOCAL_PREFIX};
use crate::{Database, DocResult, Error, GetOptions, Result, StagedAttachment};
use std::io::Read;

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
        let att = AttIn::Data {
            content_type: content_type.to_owned(),
            data,
            revpos: None,
            encoded: None,
        };
        self.put_one_attachment(id, rev, name, att)
    }

    /// [`Database::put_attachment`] from a reader: the bytes go to the store a chunk
    /// ([`crate::CHUNK_SIZE`]) at a time as they are read ([`Database::stage_attachment`]),
    /// and become visible with the new revision, atomically. At most one chunk is in memory.
    /// A crash before the revision is written leaves nothing behind (the next open removes
    /// what was written).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let file = std::io::repeat(7).take(1_000_000); // any `Read`: a file, a socket
    /// # use std::io::Read;
    /// db.put_attachment_from("n", None, "big.bin", "application/octet-stream", file)?;
    /// assert_eq!(db.attachment_reader("n", None, "big.bin")?.length(), 1_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::put_attachment`], and [`Error::AttachmentSource`] when `reader` fails.
    pub fn put_attachment_from(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        content_type: &str,
        reader: impl Read,
    ) -> Result<DocResult> {
        if id.starts_with(LOCAL_PREFIX) {
            return Err(Error::bad_request("_local documents have no attachments"));
        }
        let staged = self.stage_attachment(reader)?;
        self.put_staged_attachment(id, rev, name, content_type, staged)
    }

    /// [`Database::put_attachment`] with bytes staged before ([`Database::stage_attachment`]):
    /// the new revision and the staged bytes become visible together, in one batch. If the
    /// store holds the digest already, the staged copy is removed in that batch (one copy
    /// per digest). On an error the staged bytes are removed (as when it is dropped).
    ///
    /// # Errors
    /// As [`Database::put_attachment`].
    pub fn put_staged_attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        content_type: &str,
        staged: StagedAttachment,
    ) -> Result<DocResult> {
        let att = AttIn::Staged {
            content_type: content_type.to_owned(),
            digest: staged.digest().to_owned(),
            head: staged.head,
            decoded_length: staged.decoded_length,
            revpos: None,
        };
        // Dropped after the write either way: a blob the write committed has lost its
        // pending marker, so dropping it removes nothing; a duplicate (its digest was stored
        // already) or a refused write's blob still has it and is removed.
        self.put_one_attachment(id, rev, name, att)
    }

    /// Writes a replicated revision (`new_edits=false`, as
    /// [`Database::bulk_docs_json_from`], recording `origin`) whose attachments marked
    /// `follows` are given staged: the bytes a replicator read from a multipart answer and
    /// staged as they came ([`Database::stage_attachment`],
    /// [`Database::stage_attachment_encoded`]), never as base64. Each `follows` entry takes
    /// the staged attachment of its name (its `content_type` and `revpos` from the entry,
    /// its digest, length and encoding from what was staged); the revision and the staged
    /// bytes become visible together. Staged attachments the document does not name, and
    /// all of them when the document is refused, are removed.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let doc = serde_json::value::to_raw_value(&serde_json::json!({"_id": "n",
    ///     "_rev": "1-a", "_attachments": {"a.txt": {"content_type": "text/plain",
    ///     "revpos": 1, "follows": true}}}))?;
    /// let staged = db.stage_attachment(&b"hello"[..])?;
    /// let r = db.bulk_doc_staged_from(&doc, vec![("a.txt".into(), staged)], "remote")?;
    /// assert_eq!(r.rev.unwrap().to_string(), "1-a");
    /// assert_eq!(db.attachment("n", None, "a.txt")?.data, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The document's refusal is its [`DocResult`]'s error (a `follows` entry without a
    /// staged attachment is `bad_request`); [`Error::Storage`] / [`Error::DiskFull`] when
    /// the store fails.
    pub fn bulk_doc_staged_from(
        &self,
        doc: &serde_json::value::RawValue,
        staged: Vec<(String, StagedAttachment)>,
        origin: &str,
    ) -> Result<DocResult> {
        use crate::write::DocIn as _;
        let (given_id, parsed) = doc.parse();
        let mut parsed = match parsed {
            Ok(p) => p,
            Err(e) => return Ok(DocResult::err(given_id.unwrap_or_default(), None, &e)),
        };
        for (name, att) in &mut parsed.attachments {
            let AttIn::Follows {
                content_type,
                revpos,
            } = att
            else {
                continue;
            };
            let Some(i) = staged.iter().position(|(n, _)| n == name) else {
                continue;
            };
            let (_, s) = &staged[i];
            *att = AttIn::Staged {
                content_type: content_type
                    .take()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                digest: s.digest().to_owned(),
                head: s.head,
                decoded_length: s.decoded_length,
                revpos: *revpos,
            };
        }
        let mut out = self.write_docs(vec![parsed], false, false, Some(origin))?;
        let one = out
            .pop()
            .ok_or_else(|| Error::corrupt("write of one document returned no result"))?;
        // A blob the write committed has lost its pending marker, so dropping it removes
        // nothing; the others (not named, a duplicate of a stored digest, a refused
        // document, a revision the store held already) still have theirs and are removed.
        drop(staged);
        Ok(match one.result {
            Ok(written) => DocResult::ok(one.id, written),
            Err(e) => DocResult::err(one.id, one.rev, &e),
        })
    }

    /// Writes a new revision of `id` on top of `rev` with attachment `name` set to `att`,
    /// the other attachments and the body kept.
    fn put_one_attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        att: AttIn,
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
                                            length: None,
                                            encoding: None,
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
        attachments.push((name.to_owned(), att));
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
