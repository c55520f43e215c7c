//! The bodies of the `fuzz/` targets that reach into this crate (`json_members`,
//! `store_records`, and the store's part of `rev_seq`): each takes arbitrary bytes and
//! panics only on a bug. Compiled for tests (which replay the committed corpora, so a
//! regression shows on stable) and under the `fuzzing` feature (which the fuzz crate
//! turns on); not part of the public API.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use settee_revtree::Rev;

use crate::database::Counters;
use crate::index::catalog::CatalogEntry;
use crate::keys::{self, DocHeader, DocRecord, Unsynced};
use crate::sync_state::registry::{self, Registry};

/// `json_text`'s member scanner on any text: it must never panic, and on a JSON object
/// (which is what it is given in the store) it must find what serde_json finds.
pub fn json_members(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = crate::json_text::members_of_text(text);
    // Only valid JSON has an answer to compare with.
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    let parsed: Value = match serde_json::from_str(raw.get()) {
        Ok(v) => v,
        Err(_) => return,
    };
    let from_raw = crate::json_text::members(raw);
    let Value::Object(object) = parsed else {
        assert!(from_raw.is_none(), "members of a non-object: {text:?}");
        return;
    };
    let members = from_raw.unwrap_or_else(|| panic!("no members found in an object: {text:?}"));
    let found = found.unwrap_or_else(|| panic!("text scan disagrees with raw scan: {text:?}"));
    assert_eq!(found.len(), members.len());
    // serde_json keeps the last of two members with one name.
    let mut last: Map<String, Value> = Map::new();
    for m in &members {
        let value: Value = serde_json::from_str(m.value)
            .unwrap_or_else(|e| panic!("member value {:?} of {text:?}: {e}", m.value));
        let whole: Value = serde_json::from_str(&format!("{{{}}}", m.text))
            .unwrap_or_else(|e| panic!("member text {:?} of {text:?}: {e}", m.text));
        assert_eq!(whole.get(m.name.as_ref()), Some(&value), "in {text:?}");
        last.insert(m.name.clone().into_owned(), value);
    }
    assert_eq!(last.len(), object.len(), "member names of {text:?}");
    for (name, value) in &object {
        assert_eq!(last.get(name), Some(value), "member {name:?} of {text:?}");
    }
}

/// Every record decoder of the store on a key and a value read from disk, which may be
/// damaged: each must answer `Ok` or `Err`, never panic, and what they accept must be
/// usable (a decoded rev tree has a winner, a decoded chunk re-encodes to the same bytes).
///
/// The input is the key, a `0xff` byte (no key kind holds one before its variable part
/// except ids, which then just end early), then the value.
pub fn store_records(data: &[u8]) {
    let (key, value) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    record(key, value);
}

/// Decodes `value` as the record kind its `key` names.
fn record(key: &[u8], value: &[u8]) {
    let id = std::str::from_utf8(key.get(1..).unwrap_or_default()).unwrap_or("?");
    match key.first().copied() {
        Some(keys::DOC) => doc_record(id, value),
        Some(keys::REV) | Some(keys::LOCAL) => {
            let rev = Rev::new(1, "a").expect("`1-a` is a revision");
            let _ = crate::write::parse_body(id, &rev, value);
            let _ = serde_json::from_slice::<Map<String, Value>>(value);
        }
        Some(keys::CHUNK) => {
            if let Ok(entries) = keys::decode_chunk(key, value) {
                let again = keys::encode_chunk(&entries).expect("a decoded chunk encodes");
                let back = keys::decode_chunk(key, &again).expect("a re-encoded chunk decodes");
                assert_eq!(back, entries);
            }
        }
        Some(keys::STALE) => {
            let _ = keys::decode_u64(value, "stale marker");
        }
        Some(keys::ATT_HEAD) => {
            if let Ok(head) = keys::AttHead::decode(id, value) {
                let back = keys::AttHead::decode(id, &head.encode()).expect("a head re-encodes");
                assert_eq!(back, head);
            }
        }
        Some(keys::ATT_CHUNK) | Some(keys::ATT_PENDING) => {
            let _ = keys::blob_of_key(key);
        }
        Some(keys::UNSYNCED) => {
            let _ = keys::split_unsynced_key(key);
            if let Ok(entry) = Unsynced::decode(id, value) {
                let again = entry.encode().expect("a decoded entry encodes");
                let back = Unsynced::decode(id, &again).expect("a re-encoded entry decodes");
                assert_eq!(back, entry);
            }
        }
        Some(keys::INDEX_DEF) => {
            if let Ok(entry) = CatalogEntry::decode(key, value) {
                let doc = serde_json::from_slice::<Value>(value).unwrap_or(Value::Null);
                let _ = entry.def.key_of(&doc);
            }
        }
        Some(keys::INDEX_ENTRY) => {
            let _ = crate::index_blocks::decode(key, value);
        }
        Some(b'M') => meta(key, value),
        _ => {}
    }
}

fn doc_record(id: &str, value: &[u8]) {
    if let Ok(header) = DocHeader::decode(id, value) {
        let _ = header.winner.to_string();
    }
    let _ = DocHeader::decode_with_body(id, value);
    let _ = DocRecord::decode_tree(id, value);
    let _ = DocRecord::decode_v1(id, value);
    let Ok(rec) = DocRecord::decode(id, value) else {
        return;
    };
    // A tree that decodes is a tree: every query of it answers.
    let tree = &rec.tree;
    let winner = tree.winner();
    assert!(tree.is_leaf(&winner));
    for leaf in tree.leaves() {
        assert!(tree.contains(&leaf.rev));
        let _ = tree.ancestry(&leaf.rev);
        let _ = tree.revisions(&leaf.rev);
        let _ = tree.revs_info(&leaf.rev);
        let _ = tree.latest(&leaf.rev);
    }
    let _ = tree.conflicts();
    let _ = tree.deleted_conflicts();
    let _ = tree.compactable();
    let _ = tree.paths();
    let again = rec.encode().expect("a decoded record encodes");
    let back = DocRecord::decode(id, &again).expect("a re-encoded record decodes");
    assert_eq!(back.tree, rec.tree);
    assert_eq!(back.body, rec.body);
}

fn meta(key: &[u8], value: &[u8]) {
    match key {
        keys::META_COUNTERS => {
            let _ = Counters::decode(value);
        }
        keys::META_REMOTES | keys::META_SYNC => {
            // The two records are read together; try the value as either, with and without
            // the other.
            for (remotes, counts) in [
                (Some(value), None),
                (None, Some(value)),
                (Some(value), Some(&[][..])),
            ] {
                if let Ok(reg) = Registry::decode(remotes, counts) {
                    let _ = registry::next_number(&reg);
                    reg.exercise();
                }
            }
        }
        keys::META_SECURITY => {
            let _ = serde_json::from_slice::<Map<String, Value>>(value);
        }
        _ => {
            let _ = keys::decode_u64(value, "meta");
        }
    }
}

/// The store's own revision texts: `_local` revisions (`0-N`) and document revisions.
pub fn local_rev(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = crate::local::parse_local_rev(text) {
        assert_eq!(
            crate::local::parse_local_rev(&format!("0-{n}")).ok(),
            Some(n)
        );
    }
    if let Ok(rev) = crate::validate::parse_rev(text) {
        assert_eq!(rev.to_string().parse::<Rev>().ok(), Some(rev));
    }
}

/// Every committed input of `fuzz/corpus/<target>` with its path, in path order: what the
/// tests of this crate and of the crates above it replay on stable Rust.
///
/// # Errors
/// The corpus directory or one of its files cannot be read.
pub fn corpus(target: &str) -> std::io::Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let data = std::fs::read(&path)?;
        inputs.push((path, data));
    }
    inputs.sort();
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed input of `fuzz/corpus/<target>` run through
    /// `body`: the corpus replayed on stable Rust.
    pub(crate) fn replay(target: &str, body: fn(&[u8])) {
        let inputs = corpus(target).unwrap();
        assert!(!inputs.is_empty(), "no corpus for {target}");
        for (path, data) in inputs {
            eprintln!("{}", path.display());
            body(&data);
        }
    }

    /// Every record a real store writes (documents with conflicts, deletions and
    /// attachments, local documents, a Mango index, a remote's sync state, settings)
    /// decodes with the decoders the `store_records` target feeds damaged bytes. With
    /// `SETTEE_FUZZ_SEEDS=dir` set, the records are written there as seeds for the target.
    #[test]
    fn real_store_records_decode() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Database::open(dir.path().join("s")).unwrap();
        let a = db
            .put(json!({"_id": "a", "n": 1, "s": "x"}))
            .unwrap()
            .rev
            .unwrap();
        db.put(json!({"_id": "a", "_rev": a.to_string(), "n": 2}))
            .unwrap();
        db.bulk_docs(
            vec![
                json!({"_id": "a", "_rev": "2-zzz", "n": 3, "_revisions": {"start": 2, "ids": ["zzz", a.hash()]}}),
                json!({"_id": "b\u{0}c", "_rev": "0-x\u{0}y", "v": [1, {"w": null}]}),
                json!({"_id": "long", "_rev": format!("1-{}", "h".repeat(300))}),
            ],
            false,
        )
        .unwrap();
        let d = db.put(json!({"_id": "d"})).unwrap().rev.unwrap();
        db.delete("d", &d).unwrap();
        db.put_attachment("att", None, "f.txt", "text/plain", b"hello".to_vec())
            .unwrap();
        db.put_local(json!({"_id": "_local/cp", "last_seq": 3}))
            .unwrap();
        db.create_index(&json!({"index": {"fields": ["n"]}, "ddoc": "q", "name": "by-n"}))
            .unwrap();
        db.register_remote("http://couch/db", Map::new()).unwrap();
        let held = [("a".to_string(), vec![a.clone()])].into();
        let rejected = [crate::Rejection {
            id: "long".into(),
            rev: format!("1-{}", "h".repeat(300)).parse().unwrap(),
            error: "forbidden".into(),
            reason: "no".into(),
        }];
        db.record_remote_revs("http://couch/db", &held, &rejected)
            .unwrap();
        // A write that supersedes an entry of a chunk with others: a stale marker.
        let long = format!("1-{}", "h".repeat(300));
        db.put(json!({"_id": "long", "_rev": long, "z": 1}))
            .unwrap();
        db.set_revs_limit(50).unwrap();
        db.set_security(
            json!({"members": {"names": ["u"]}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        let out = std::env::var_os("SETTEE_FUZZ_SEEDS").map(std::path::PathBuf::from);
        let mut kinds = std::collections::BTreeSet::new();
        for (i, item) in db.inner.tree.iter().enumerate() {
            let (k, v) = item.unwrap();
            record(&k, &v);
            let id = std::str::from_utf8(&k[1..]).unwrap_or("?");
            match k[0] {
                keys::DOC => {
                    DocRecord::decode(id, &v).unwrap();
                }
                keys::CHUNK => {
                    keys::decode_chunk(&k, &v).unwrap();
                }
                keys::UNSYNCED => {
                    Unsynced::decode(id, &v).unwrap();
                }
                keys::INDEX_DEF => {
                    CatalogEntry::decode(&k, &v).unwrap();
                }
                keys::INDEX_ENTRY => {
                    crate::index_blocks::decode(&k, &v).unwrap();
                }
                keys::ATT_HEAD => {
                    keys::AttHead::decode(id, &v).unwrap();
                }
                _ => {}
            }
            kinds.insert(k[0]);
            if let Some(out) = &out {
                let mut seed = k.to_vec();
                seed.push(0xff);
                seed.extend_from_slice(&v);
                std::fs::write(out.join(format!("real-{}-{i}", k[0] as char)), seed).unwrap();
            }
        }
        let seen: String = kinds.into_iter().map(char::from).collect();
        // Format 7 writes attachments as a head and chunks (`H`, `C`), never `A` values.
        assert_eq!(seen, "CDHILMNQRUX");
    }

    #[test]
    fn json_members_corpus_replays() {
        replay("json_members", json_members);
    }

    #[test]
    fn store_records_corpus_replays() {
        replay("store_records", store_records);
    }

    #[test]
    fn rev_seq_corpus_replays() {
        replay("rev_seq", local_rev);
    }
}
