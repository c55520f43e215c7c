//! One comparison of document leaves for every test that checks replicas agree: each leaf
//! as CouchDB reports it with `open_revs=all&revs=true&attachments=true` (its body,
//! `_revisions`, `_deleted`, and each attachment's content type, length, digest, revpos and
//! data), reduced only where servers differ by design, with the reason next to each rule.
//! Which databases to read and when is the test's; this module only says what "the same"
//! means.

use std::collections::BTreeMap;

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

/// Which server the test server is, from `SETTEE_TEST_SERVER_KIND` (`couchdb` for Apache
/// CouchDB, `couchdb-cluster` for a cluster of it (every node answers as one CouchDB does);
/// anything else, or unset, is pouchdb-server as `scripts/test.sh` starts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Apache CouchDB.
    CouchDb,
    /// pouchdb-server.
    PouchDbServer,
}

impl ServerKind {
    /// The test server's kind, from the environment.
    pub fn from_env() -> ServerKind {
        match std::env::var("SETTEE_TEST_SERVER_KIND").as_deref() {
            Ok("couchdb" | "couchdb-cluster") => ServerKind::CouchDb,
            _ => ServerKind::PouchDbServer,
        }
    }
}

/// What a comparison of leaves checks, for the servers a test runs on.
#[derive(Debug, Clone, Copy)]
pub struct Compare {
    /// Compare each attachment's `revpos`. pouchdb-server gives an attachment written with
    /// data the position of the revision carrying it even in a replicated write
    /// (pouchdb-adapter-leveldb-core's `saveAttachment`), where CouchDB and the store keep
    /// the position it was first added at: so only on Apache CouchDB.
    pub revpos: bool,
    /// For compressible content types (`text/*`, JSON, JavaScript, XML), accept a digest
    /// that is not the MD5 of the data: Apache CouchDB stores those gzipped and gives the
    /// digest of the gzipped bytes, which a test cannot recompute, while the store gives the
    /// data's. Such a digest must still be a well-formed `md5-` digest. Every other digest
    /// must be the MD5 of the data.
    pub encoded_digests: bool,
}

impl Compare {
    /// The rules for the test server of this run ([`ServerKind::from_env`]).
    pub fn for_test_server() -> Compare {
        let couchdb = ServerKind::from_env() == ServerKind::CouchDb;
        Compare {
            revpos: couchdb,
            encoded_digests: couchdb,
        }
    }

    /// One leaf (a document as `open_revs` gives it under `"ok"`) as compared: the document
    /// itself, except that each attachment is `content_type`, `data`, `revpos` (see
    /// [`Compare::revpos`]) and `digest`, which is checked against the data here (see
    /// [`Compare::encoded_digests`]) and then kept as the MD5 of the data, or as one mark
    /// for a compressible type on Apache CouchDB; a `length`, where the server gives one with the data (Apache CouchDB
    /// does not), must be the data's. A stub (no `data`) keeps its digest and length as
    /// given.
    ///
    /// # Panics
    /// If a digest or a length does not match its data, or `data` is not base64.
    pub fn leaf(&self, doc: &Value) -> Value {
        let id = format!("{} {}", doc["_id"], doc["_rev"]);
        let mut doc = doc.clone();
        let Some(atts) = doc.get_mut("_attachments").and_then(Value::as_object_mut) else {
            return doc;
        };
        for (name, att) in atts.iter_mut() {
            *att = self.attachment(name, att, &id);
        }
        doc
    }

    fn attachment(&self, name: &str, att: &Value, id: &str) -> Value {
        let mut out = Map::new();
        for key in ["content_type", "data", "stub"] {
            if let Some(v) = att.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        if self.revpos {
            out.insert("revpos".into(), att["revpos"].clone());
        }
        let digest = att["digest"].as_str().unwrap_or_default();
        let Some(data) = att["data"].as_str() else {
            out.insert("digest".into(), json!(digest));
            out.insert("length".into(), att["length"].clone());
            return Value::Object(out);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("{id}: attachment {name}: data is not base64 ({e})"));
        let of_data = format!(
            "md5-{}",
            base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes))
        );
        let compressible = is_compressible(att["content_type"].as_str().unwrap_or_default());
        let kept = if self.encoded_digests && compressible {
            // One replica (CouchDB) may give the gzipped bytes' digest where another (the
            // store) gives the data's: both are kept as the same mark.
            assert!(
                digest == of_data || is_md5_digest(digest),
                "{id}: attachment {name}: digest {digest:?} is not an MD5 digest"
            );
            "md5 of the data or of its gzip encoding".to_owned()
        } else if digest == of_data {
            of_data
        } else {
            panic!("{id}: attachment {name}: digest {digest:?}, but its data's is {of_data}: {att}")
        };
        out.insert("digest".into(), json!(kept));
        // Apache CouchDB gives no `length` with inline data; where one is given, it is the
        // data's.
        if let Some(length) = att.get("length") {
            assert_eq!(
                length,
                &json!(bytes.len()),
                "{id}: attachment {name}: length is not its data's"
            );
        }
        Value::Object(out)
    }

    /// `a` and `b` (each: document id -> its leaves, as `open_revs` gives them) compared
    /// leaf by leaf under these rules, leaves in `_rev` order.
    ///
    /// # Panics
    /// If they differ (the message names `what`), or as [`Compare::leaf`].
    pub fn assert_same(
        &self,
        a: &BTreeMap<String, Vec<Value>>,
        b: &BTreeMap<String, Vec<Value>>,
        what: &str,
    ) {
        assert_eq!(self.all(a), self.all(b), "{what}");
    }

    /// Every document's leaves as compared, in `_rev` order.
    pub fn all(&self, docs: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<Value>> {
        docs.iter()
            .map(|(id, leaves)| (id.clone(), self.leaves(leaves)))
            .collect()
    }

    /// Leaves as compared, in `_rev` order.
    pub fn leaves(&self, leaves: &[Value]) -> Vec<Value> {
        let mut out: Vec<Value> = leaves.iter().map(|l| self.leaf(l)).collect();
        out.sort_by_key(|l| l["_rev"].as_str().unwrap_or_default().to_owned());
        out
    }
}

/// CouchDB's default `[attachments] compressible_types`.
fn is_compressible(content_type: &str) -> bool {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    base.starts_with("text/")
        || [
            "application/javascript",
            "application/json",
            "application/xml",
        ]
        .contains(&base)
}

fn is_md5_digest(digest: &str) -> bool {
    digest.strip_prefix("md5-").is_some_and(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|raw| raw.len() == 16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Compare = Compare {
        revpos: true,
        encoded_digests: false,
    };

    fn doc(digest: &str) -> Value {
        json!({"_id": "d", "_rev": "1-a", "_attachments": {"a.txt": {
            "content_type": "text/plain", "revpos": 1, "length": 5,
            "digest": digest, "data": "aGVsbG8="}}})
    }

    #[test]
    fn a_digest_of_the_data_is_kept_and_another_fails() {
        let leaf = STRICT.leaf(&doc("md5-XUFAKrxLKna5cZ2REBfFkg=="));
        assert_eq!(
            leaf["_attachments"]["a.txt"]["digest"],
            "md5-XUFAKrxLKna5cZ2REBfFkg=="
        );
        let wrong = std::panic::catch_unwind(|| STRICT.leaf(&doc("md5-AAAAKrxLKna5cZ2REBfFkg==")));
        assert!(wrong.is_err());
        let lenient = Compare {
            encoded_digests: true,
            ..STRICT
        };
        let encoded = lenient.leaf(&doc("md5-AAAAKrxLKna5cZ2REBfFkg=="));
        let plain = lenient.leaf(&doc("md5-XUFAKrxLKna5cZ2REBfFkg=="));
        assert_eq!(encoded, plain);
    }

    #[test]
    fn revpos_is_compared_only_when_asked() {
        let mut other = doc("md5-XUFAKrxLKna5cZ2REBfFkg==");
        other["_attachments"]["a.txt"]["revpos"] = json!(2);
        let one = doc("md5-XUFAKrxLKna5cZ2REBfFkg==");
        assert_ne!(STRICT.leaf(&one), STRICT.leaf(&other));
        let loose = Compare {
            revpos: false,
            ..STRICT
        };
        assert_eq!(loose.leaf(&one), loose.leaf(&other));
    }
}
