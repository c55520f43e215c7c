//! Attachments: CouchDB's digest format, the metadata kept in each revision's body, how
//! an attachment is shown on read (stub or inline data), and finding one by document,
//! revision and name. Bytes are stored once per digest, in a file of their own
//! (`files.rs`; format 7's sled chunks and older whole values are read where they are,
//! `chunks.rs`), read as a stream (`reader.rs`) and written as one (`staging.rs`); `write/`
//! decides when to store them, `sweep.rs` what `compact` removes and `verify` checks.

pub(crate) mod chunks;
pub(crate) mod encoded;
pub(crate) mod files;
mod reader;
pub(crate) mod staging;
pub(crate) mod sweep;

pub use chunks::CHUNK_SIZE;
pub use reader::AttachmentReader;
pub use staging::StagedAttachment;

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use settee_revtree::Rev;

use crate::keys::AttEncoding as Encoding;
use crate::{Database, Error, Result};

/// CouchDB's digest of attachment bytes: `md5-` + base64 of the raw MD5. Equal content gives
/// equal digests on CouchDB, PouchDB and here, so stubs compare across peers.
///
/// ```
/// assert_eq!(settee_store::attachment_digest(b"hello"), "md5-XUFAKrxLKna5cZ2REBfFkg==");
/// ```
pub fn attachment_digest(bytes: &[u8]) -> String {
    digest_text(&Md5::digest(bytes))
}

/// `md5-` + base64 of a raw MD5.
pub(crate) fn digest_text(md5: &[u8]) -> String {
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(md5)
    )
}

/// An attachment as a revision's body stores it (`_attachments.{name}`).
///
/// An encoded attachment (CouchDB's gzipped text) has `encoding` and `encoded_length`, and
/// its `digest` is that of the encoded bytes, as CouchDB names it; `length` is always the
/// decoded length. Both are absent for bytes kept as they are, which is how every
/// revision written before encodings were kept reads (no migration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttMeta {
    pub(crate) content_type: String,
    pub(crate) digest: String,
    pub(crate) length: u64,
    pub(crate) revpos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encoded_length: Option<u64>,
}

impl AttMeta {
    /// The metadata of bytes stored `stored_length` long as `encoding`, `length` long once
    /// decoded.
    pub(crate) fn of_stored(
        content_type: String,
        digest: String,
        revpos: u64,
        length: u64,
        stored_length: u64,
        encoding: Encoding,
    ) -> AttMeta {
        let encoded = encoding != Encoding::Identity;
        AttMeta {
            content_type,
            digest,
            length,
            revpos,
            encoding: encoded.then_some(encoding),
            encoded_length: encoded.then_some(stored_length),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut v = json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "length": self.length,
            "revpos": self.revpos,
        });
        self.add_encoding(&mut v);
        v
    }

    /// How the stored bytes are encoded (identity when the revision says nothing).
    pub(crate) fn stored_encoding(&self) -> Encoding {
        self.encoding.unwrap_or(Encoding::Identity)
    }

    /// CouchDB's `encoding` and `encoded_length` members, for an encoded attachment.
    fn add_encoding(&self, v: &mut Value) {
        if let (Some(enc), Some(len), Some(obj)) =
            (self.encoding, self.encoded_length, v.as_object_mut())
        {
            if enc != Encoding::Identity {
                obj.insert("encoding".into(), Value::from(enc.as_str()));
                obj.insert("encoded_length".into(), Value::from(len));
            }
        }
    }

    /// The stub CouchDB returns when attachment bodies are not asked for; with
    /// `encoding_info` (`att_encoding_info`), an encoded one says how.
    pub(crate) fn stub(&self, encoding_info: bool) -> Value {
        let mut v = json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "length": self.length,
            "revpos": self.revpos,
            "stub": true,
        });
        if encoding_info {
            self.add_encoding(&mut v);
        }
        v
    }

    /// The inline form (`attachments=true`) of the DECODED bytes `data`: CouchDB sends no
    /// `length` with `data`, and the encoding only as information.
    pub(crate) fn inline(&self, data: &[u8], encoding_info: bool) -> Value {
        let mut v = json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "revpos": self.revpos,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        if encoding_info {
            self.add_encoding(&mut v);
        }
        v
    }
}

/// Reads the stored `_attachments` of a revision body.
pub(crate) fn metas(body: &Map<String, Value>) -> Vec<(String, AttMeta)> {
    let Some(Value::Object(atts)) = body.get("_attachments") else {
        return Vec::new();
    };
    atts.iter()
        .filter_map(|(name, v)| {
            serde_json::from_value::<AttMeta>(v.clone())
                .ok()
                .map(|m| (name.clone(), m))
        })
        .collect()
}

/// One attachment of a revision with its bytes (`GET /{db}/{docid}/{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The MIME type given when it was written.
    pub content_type: String,
    /// CouchDB's digest of the bytes as stored (`md5-<base64>`): of the encoded bytes for
    /// an encoded attachment, as CouchDB names it.
    pub digest: String,
    /// The revision position at which it was last changed.
    pub revpos: u64,
    /// The bytes, decoded.
    pub data: Vec<u8>,
}

impl Database {
    /// Reads attachment `name` of a document whole: of the winning revision, or of `rev`.
    /// For small attachments; [`Database::attachment_reader`] reads one of any size a chunk
    /// at a time. An encoded attachment is decoded.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "a", "_attachments": {"t.txt":
    ///     {"content_type": "text/plain", "data": "aGVsbG8="}}}))?;
    /// let att = db.attachment("a", None, "t.txt")?;
    /// assert_eq!((att.data.as_slice(), att.content_type.as_str()), (&b"hello"[..], "text/plain"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::attachment_reader`].
    pub fn attachment(&self, id: &str, rev: Option<&Rev>, name: &str) -> Result<Attachment> {
        let meta = self.attachment_meta(id, rev, name)?;
        let data = chunks::read_all(&self.inner, &meta.digest)?
            .ok_or_else(|| not_stored(id, name, &meta.digest))?;
        let data = encoded::decode_all(&meta.digest, meta.stored_encoding(), meta.length, data)?;
        Ok(Attachment {
            content_type: meta.content_type,
            digest: meta.digest,
            revpos: meta.revpos,
            data,
        })
    }

    /// Opens attachment `name` of a document (of the winning revision, or of `rev`) for
    /// reading a chunk at a time: its stub information and an [`std::io::Read`] that holds
    /// at most one chunk in memory (see [`AttachmentReader`]). It gives the DECODED bytes
    /// (an encoded attachment is decoded as it is read); [`Database::attachment_reader_raw`]
    /// gives them as stored.
    ///
    /// # Errors
    /// [`Error::NotFound`]: reason `missing` (no such document or revision), `deleted` (the
    /// winner is deleted and no `rev` was given), or `Document is missing attachment`
    /// (CouchDB's reason) when the revision has no attachment of that name;
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn attachment_reader(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
    ) -> Result<AttachmentReader> {
        self.open_reader(id, rev, name, true)
    }

    /// As [`Database::attachment_reader`], but the bytes as the store keeps them: encoded,
    /// when [`AttachmentReader::encoding`] says so (CouchDB's gzipped text, whose digest is
    /// that of these bytes). For replication, which moves attachments encoded so that their
    /// digests stay CouchDB's.
    ///
    /// ```
    /// # use std::io::{Read, Write};
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    /// gz.write_all(b"hello, hello, hello")?;
    /// let gz = gz.finish()?;
    /// let staged = db.stage_attachment_encoded(&gz[..], settee_store::Encoding::Gzip, 19, None)?;
    /// db.put_staged_attachment("n", None, "a.txt", "text/plain", staged)?;
    /// let mut raw = db.attachment_reader_raw("n", None, "a.txt")?;
    /// assert_eq!((raw.encoding(), raw.length(), raw.decoded_length()),
    ///     (settee_store::Encoding::Gzip, gz.len() as u64, 19));
    /// let mut bytes = Vec::new();
    /// raw.read_to_end(&mut bytes)?;
    /// assert_eq!(bytes, gz);
    /// let mut text = String::new();
    /// db.attachment_reader("n", None, "a.txt")?.read_to_string(&mut text)?;
    /// assert_eq!(text, "hello, hello, hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Database::attachment_reader`].
    pub fn attachment_reader_raw(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
    ) -> Result<AttachmentReader> {
        self.open_reader(id, rev, name, false)
    }

    fn open_reader(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
        decode: bool,
    ) -> Result<AttachmentReader> {
        let meta = self.attachment_meta(id, rev, name)?;
        let stored = chunks::lookup(&self.inner, &meta.digest)?
            .ok_or_else(|| not_stored(id, name, &meta.digest))?;
        AttachmentReader::new(self.clone(), meta, stored, decode)
    }

    /// The stored metadata of attachment `name` of `id` at `rev` (or the live winner).
    fn attachment_meta(&self, id: &str, rev: Option<&Rev>, name: &str) -> Result<AttMeta> {
        let rec = self
            .load_doc(id)?
            .ok_or_else(|| Error::not_found(id, "missing"))?;
        let rev = match rev {
            Some(r) => r.clone(),
            None => {
                let leaf = rec.tree.winning_leaf();
                if leaf.deleted {
                    return Err(Error::not_found(id, "deleted"));
                }
                leaf.rev
            }
        };
        if !rec.tree.contains(&rev) {
            return Err(Error::not_found(id, "missing"));
        }
        let body = self
            .load_body(id, &rec, &rev)?
            .ok_or_else(|| Error::not_found(id, "missing"))?;
        metas(&body)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| Error::not_found(id, "Document is missing attachment"))
    }
}

/// A body names an attachment the store does not hold (`verify` finds this too).
pub(crate) fn not_stored(id: &str, name: &str, digest: &str) -> Error {
    Error::corrupt(format!(
        "attachment {name:?} of {id:?} ({digest}) is not stored"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_of_an_old_revision_and_missing_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("db")).unwrap();
        let r1 = db
            .put(
                json!({"_id": "a", "_attachments": {"x": {"content_type": "a/b", "data": "AAE="}}}),
            )
            .unwrap()
            .rev
            .unwrap();
        db.put(json!({"_id": "a", "_rev": r1.to_string()})).unwrap();
        assert_eq!(db.attachment("a", Some(&r1), "x").unwrap().data, vec![0, 1]);
        let err = db.attachment("a", None, "x").unwrap_err();
        assert_eq!(
            (err.name(), err.reason().as_str()),
            ("not_found", "Document is missing attachment")
        );
        assert_eq!(
            db.attachment("nope", None, "x").unwrap_err().reason(),
            "missing"
        );
    }

    #[test]
    fn digest_matches_couchdb() {
        // RFC 1321 test vector: md5("") = d41d8cd98f00b204e9800998ecf8427e, whose base64 is
        // 1B2M2Y8AsgTpgAmY7PhCfg== (CouchDB's digest of an empty attachment).
        assert_eq!(attachment_digest(b""), "md5-1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
