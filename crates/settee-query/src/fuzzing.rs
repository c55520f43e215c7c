//! The body of the `fuzz/` crate's `mango` target: a `_find` request (or a bare selector)
//! and a document, through parsing, matching, planning and the key encoding. It panics
//! only on a bug. Compiled for tests (which replay the committed corpus on stable) and
//! under the `fuzzing` feature; not part of the public API.

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::{collate, encode_key, plan, skip_key, FindRequest, IndexDef, Selector};

/// The input is a request (first line) and documents (the other lines), each JSON; lines
/// that do not parse are skipped.
pub fn mango(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(Ok(request)) = lines.next().map(serde_json::from_str::<Value>) else {
        return;
    };
    let mut docs: Vec<Value> = lines.filter_map(|l| serde_json::from_str(l).ok()).collect();
    if docs.is_empty() {
        docs.push(json!({"_id": "a", "_rev": "1-a", "n": 1, "s": "x", "l": [1, "b", null]}));
    }
    // A bare selector, or the request's.
    let selector = Selector::parse(&request)
        .ok()
        .or_else(|| Selector::parse(request.get("selector")?).ok());
    if let Some(selector) = &selector {
        check_selector(selector, &docs);
    }
    let _ = crate::Sort::parse(&request);
    if let Ok(index) = IndexDef::from_create_request(&request) {
        for doc in &docs {
            if let Some(key) = index.key_of(doc) {
                let mut out = Vec::new();
                for v in key {
                    encode_key(v, &mut out);
                }
            }
        }
        let _ = index.add_to_design_doc(None);
        let _ = index.view_json();
        let _ = index.to_json();
    }
    let _ = IndexDef::from_design_doc(&request);
    if let Ok(req) = FindRequest::parse(&request) {
        check_request(&req, &docs);
    }
    // The key encoding against the collation, for every pair of values at hand.
    let mut values: Vec<&Value> = vec![&request];
    for doc in &docs {
        values.push(doc);
        if let Value::Object(m) = doc {
            values.extend(m.values());
        }
    }
    values.truncate(16);
    for a in &values {
        for b in &values {
            check_order(a, b);
        }
    }
}

fn check_selector(selector: &Selector, docs: &[Value]) {
    let normal = selector.to_json();
    let canonical = selector.to_canonical_json();
    // CouchDB's normal form is a selector too, and selects the same documents.
    let again = Selector::parse(&normal)
        .unwrap_or_else(|e| panic!("normal form {normal} does not parse: {e}"));
    let again_canonical = Selector::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical} does not parse: {e}"));
    for doc in docs {
        let m = selector.matches(doc);
        assert_eq!(m, again.matches(doc), "normal form {normal} on {doc}");
        assert_eq!(
            m,
            again_canonical.matches(doc),
            "canonical form {canonical} on {doc}"
        );
    }
}

fn check_request(req: &FindRequest, docs: &[Value]) {
    let _ = req.to_json();
    let _ = req.use_index.ddoc_id();
    for doc in docs {
        let _ = req.selector.matches(doc);
        let _ = req.project(doc.clone());
    }
    // Plan it against the indexes its own fields would make.
    let mut indexes = Vec::new();
    let fields: Vec<String> = req
        .sort
        .paths()
        .map(|p| p.to_string())
        .chain(
            req.field_paths()
                .into_iter()
                .flatten()
                .map(|p| p.to_string()),
        )
        .collect();
    if !fields.is_empty() {
        if let Ok(i) = IndexDef::from_create_request(&json!({"index": {"fields": fields}})) {
            indexes.push(i);
        }
    }
    if let Ok(i) = IndexDef::from_create_request(&json!({"index": {"fields": ["n"]}})) {
        indexes.push(i);
    }
    let _ = crate::explain_unplannable("db", req, &indexes);
    let Ok(p) = plan(req, &indexes) else {
        return;
    };
    let _ = p.explain("db", req);
    let _ = p.warning();
    let _ = p.id_range();
    if let Some(range) = p.key_range() {
        let bookmark = p.bookmark(&range.start);
        assert_eq!(
            p.resume_after(Some(&bookmark)).ok().flatten(),
            Some(range.start.clone())
        );
    }
    let _ = p.resume_after(req.bookmark.as_deref());
}

/// `encode_key` must order values as `collate` does (an index's order is the query's),
/// and `skip_key` must find each encoding's end.
fn check_order(a: &Value, b: &Value) {
    let (mut ka, mut kb) = (Vec::new(), Vec::new());
    encode_key(a, &mut ka);
    encode_key(b, &mut kb);
    assert_eq!(skip_key(&ka), Some(ka.len()), "skip_key of {a}");
    match collate(a, b) {
        Ordering::Less => assert!(ka < kb, "{a} collates before {b}, its key does not"),
        Ordering::Greater => assert!(ka > kb, "{a} collates after {b}, its key does not"),
        Ordering::Equal => {}
    }
}

#[cfg(test)]
mod tests {
    /// Every committed input of `fuzz/corpus/mango`, replayed on stable.
    #[test]
    fn mango_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut n = 0;
        for dir in [root.join("corpus/mango")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("{}", path.display());
                super::mango(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "no mango corpus under {}", root.display());
    }
}
