//! Attachments: CouchDB's digest format, the metadata kept in each revision's body, and how
//! an attachment is shown on read (stub or inline data). Bytes are stored once per digest
//! under `A` keys (see `keys.rs`); `write.rs` decides when to store them.

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// CouchDB's digest of attachment bytes: `md5-` + base64 of the raw MD5. Equal content gives
/// equal digests on CouchDB, PouchDB and here, so stubs compare across peers.
///
/// ```
/// assert_eq!(settee_store::attachment_digest(b"hello"), "md5-XUFAKrxLKna5cZ2REBfFkg==");
/// ```
pub fn attachment_digest(bytes: &[u8]) -> String {
    let md5 = Md5::digest(bytes);
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(md5)
    )
}

/// An attachment as a revision's body stores it (`_attachments.{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttMeta {
    pub(crate) content_type: String,
    pub(crate) digest: String,
    pub(crate) length: u64,
    pub(crate) revpos: u64,
}

impl AttMeta {
    pub(crate) fn to_value(&self) -> Value {
        json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "length": self.length,
            "revpos": self.revpos,
        })
    }

    /// The stub CouchDB returns when attachment bodies are not asked for.
    pub(crate) fn stub(&self) -> Value {
        json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "length": self.length,
            "revpos": self.revpos,
            "stub": true,
        })
    }

    /// The inline form (`attachments=true`): CouchDB sends no `length` with `data`.
    pub(crate) fn inline(&self, data: &[u8]) -> Value {
        json!({
            "content_type": self.content_type,
            "digest": self.digest,
            "revpos": self.revpos,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_couchdb() {
        // RFC 1321 test vector: md5("") = d41d8cd98f00b204e9800998ecf8427e, whose base64 is
        // 1B2M2Y8AsgTpgAmY7PhCfg== (CouchDB's digest of an empty attachment).
        assert_eq!(attachment_digest(b""), "md5-1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
