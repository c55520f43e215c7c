//! Deterministic revision ids: the same edit made on two replicas gets the same rev, so it is
//! not a conflict.
//!
//! # Byte layout (version 1)
//!
//! The hash of a new revision is the first 16 bytes of SHA-256 over the concatenation of:
//!
//! | field | bytes |
//! |---|---|
//! | domain tag | the 9 ASCII bytes `settee-r1` followed by one `0x00` |
//! | parent rev | u64 big-endian length, then the parent rev as text (`"3-abc"`), empty for a first revision |
//! | deleted flag | one byte, `0x01` for a deletion, `0x00` otherwise |
//! | body | u64 big-endian length, then the canonical JSON of the body without top-level fields starting with `_` |
//! | attachments | u64 big-endian count, then for each attachment in byte order of name: u64 length + name (UTF-8), u64 length + digest text (`"md5-..."`) |
//!
//! written as 32 lowercase hex characters. Canonical JSON is JSON with no whitespace, object
//! members sorted by key in byte order of their UTF-8 encoding (at every depth), strings
//! escaped as `serde_json` writes them (only `"`, `\`, and control characters), and numbers
//! as `serde_json` writes them (integers in decimal, other numbers in shortest round-trip
//! form).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Rev;

/// Computes the hash of a new revision (see the module docs for the exact bytes).
///
/// `attachments` are `(name, digest)` pairs in any order.
///
/// ```
/// use serde_json::json;
/// use settee_revtree::new_rev_hash;
/// let body = json!({"title": "note", "_id": "n1"}).as_object().unwrap().clone();
/// let a = new_rev_hash(None, false, &body, &[]);
/// let b = new_rev_hash(None, false, &json!({"title": "note"}).as_object().unwrap().clone(), &[]);
/// assert_eq!(a, b); // `_` fields do not count
/// assert_eq!(a.len(), 32);
/// ```
pub fn new_rev_hash(
    parent: Option<&Rev>,
    deleted: bool,
    body: &Map<String, Value>,
    attachments: &[(&str, &str)],
) -> String {
    let mut h = Sha256::new();
    h.update(b"settee-r1\0");
    let parent = parent.map(Rev::to_string).unwrap_or_default();
    put_bytes(&mut h, parent.as_bytes());
    h.update([u8::from(deleted)]);
    let mut canonical = Vec::with_capacity(2048);
    write_object(&mut canonical, body, true);
    put_bytes(&mut h, &canonical);
    let mut atts: Vec<&(&str, &str)> = attachments.iter().collect();
    atts.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    h.update((atts.len() as u64).to_be_bytes());
    for (name, digest) in atts {
        put_bytes(&mut h, name.as_bytes());
        put_bytes(&mut h, digest.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Writes canonical JSON (sorted keys, no whitespace) of `value` into `out`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, false),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        // Scalars: serde_json's compact form is already canonical.
        scalar => {
            // Writing a scalar Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, skip_underscore: bool) {
    let mut entries: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    entries.extend(
        map.iter()
            .filter(|(k, _)| !(skip_underscore && k.starts_with('_'))),
    );
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = obj(json!({"a": 1, "b": {"y": [1, {"q": 2, "p": 1}], "x": null}}));
        let b = obj(json!({"b": {"x": null, "y": [1, {"p": 1, "q": 2}]}, "a": 1}));
        assert_eq!(
            new_rev_hash(None, false, &a, &[]),
            new_rev_hash(None, false, &b, &[])
        );
    }

    #[test]
    fn every_input_changes_the_hash() {
        let body = obj(json!({"a": 1}));
        let parent: Rev = "1-abc".parse().unwrap();
        let base = new_rev_hash(Some(&parent), false, &body, &[("f", "md5-x")]);
        let other_parent: Rev = "1-abd".parse().unwrap();
        assert_ne!(base, new_rev_hash(None, false, &body, &[("f", "md5-x")]));
        assert_ne!(
            base,
            new_rev_hash(Some(&other_parent), false, &body, &[("f", "md5-x")])
        );
        assert_ne!(
            base,
            new_rev_hash(Some(&parent), true, &body, &[("f", "md5-x")])
        );
        assert_ne!(
            base,
            new_rev_hash(
                Some(&parent),
                false,
                &obj(json!({"a": 2})),
                &[("f", "md5-x")]
            )
        );
        assert_ne!(
            base,
            new_rev_hash(Some(&parent), false, &body, &[("f", "md5-y")])
        );
        assert_ne!(base, new_rev_hash(Some(&parent), false, &body, &[]));
        assert!(base
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn known_vector() {
        // Pins the byte layout documented above: changing it changes every rev id.
        let body = obj(json!({"title": "hello", "n": 1}));
        assert_eq!(
            new_rev_hash(None, false, &body, &[]),
            "e585ea729381a59c175fb5ebb6a5472b"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v = json!({"b": [1, 2.5, "x\n"], "a": {"d": true, "c": null}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"c":null,"d":true},"b":[1,2.5,"x\n"]}"#
        );
    }
}
