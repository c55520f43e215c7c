//! The range a plan reads: CouchDB's start and end keys from the selector's ranges, and
//! the same as bytes of an index's keys ([`Plan::key_range`]) or as document ids for
//! `_all_docs` ([`Plan::id_range`]).

use serde_json::Value;

use super::{Cand, KeyRange, Plan};
use crate::collate::{encode_key, MAX_KEY_BYTE};
use crate::selector::{Bound, Range};

/// CouchDB's start and end keys for the ranges of an index's leading columns
/// (`mango_idx_view:start_key/end_key`): the start stops at the first open lower bound, the
/// end at the first open upper bound, which becomes `<MAX>`.
pub(super) fn keys_of(ranges: &[Range]) -> (Vec<Value>, Vec<Value>, bool) {
    let mut start = Vec::new();
    for r in ranges {
        match &r.low {
            Bound::Value(v) => start.push(v.clone()),
            Bound::Min | Bound::Max => break,
        }
    }
    let mut end = Vec::new();
    for r in ranges {
        match &r.high {
            Bound::Value(v) => end.push(v.clone()),
            Bound::Min | Bound::Max => return (start, end, true),
        }
    }
    (start, end, true)
}

impl Plan<'_> {
    /// For a JSON index: the encoded range to scan (`None` when the plan is empty or uses
    /// `_all_docs`).
    pub fn key_range(&self) -> Option<KeyRange> {
        if self.chosen == Cand::AllDocs {
            return None;
        }
        let (start, end, max) = self.keys.as_ref()?;
        let mut s = Vec::new();
        for v in start {
            encode_key(v, &mut s);
        }
        let mut e = Vec::new();
        for v in end {
            encode_key(v, &mut e);
        }
        if *max {
            e.push(MAX_KEY_BYTE);
        }
        Some(KeyRange { start: s, end: e })
    }

    /// For `_all_docs`: the first and last document ids to scan (inclusive; `None` is
    /// unbounded). Bounds that are not strings leave that side open: every id is a string,
    /// and the selector filters what is read anyway.
    pub fn id_range(&self) -> Option<(Option<String>, Option<String>)> {
        if self.chosen != Cand::AllDocs {
            return None;
        }
        let (start, end, _) = self.keys.as_ref()?;
        let s = start.first().and_then(Value::as_str).map(str::to_owned);
        let e = end.first().and_then(Value::as_str).map(str::to_owned);
        Some((s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::plan::tests::{idx, req};
    use serde_json::json;

    #[test]
    fn ranges_become_couchdb_start_and_end_keys() {
        let indexes = [idx(
            json!({"index": {"fields": ["a", "b"]}, "ddoc": "ab", "name": "ab"}),
        )];
        let p = plan(
            &req(json!({"selector": {"a": 1, "b": {"$gt": 2, "$lte": 5}}})),
            &indexes,
        )
        .unwrap();
        let mut start = Vec::new();
        encode_key(&json!(1), &mut start);
        encode_key(&json!(2), &mut start);
        let mut end = Vec::new();
        encode_key(&json!(1), &mut end);
        encode_key(&json!(5), &mut end);
        end.push(MAX_KEY_BYTE);
        assert_eq!(p.key_range().unwrap(), KeyRange { start, end });
        let ex = p.explain(
            "db",
            &req(json!({"selector": {"a": 1, "b": {"$gt": 2, "$lte": 5}}})),
        );
        assert_eq!(ex["mrargs"]["start_key"], json!([1, 2]));
        assert_eq!(ex["mrargs"]["end_key"], json!([1, 5, "<MAX>"]));
        // Contradictions read nothing.
        let p = plan(
            &req(json!({"selector": {"a": {"$gt": 5, "$lt": 3}, "b": {"$exists": true}}})),
            &indexes,
        )
        .unwrap();
        assert!(p.is_empty());
        let p = plan(&req(json!({"selector": {"$or": []}})), &indexes).unwrap();
        assert!(p.is_empty());
    }

    #[test]
    fn all_docs_reads_the_id_range() {
        let p = plan(
            &req(json!({"selector": {"_id": {"$gte": "b", "$lt": "d"}}})),
            &[],
        )
        .unwrap();
        assert_eq!(p.id_range().unwrap(), (Some("b".into()), Some("d".into())));
        let p = plan(&req(json!({"selector": {"x": 1}})), &[]).unwrap();
        assert_eq!(p.id_range().unwrap(), (None, None));
        let ex = p.explain("db", &req(json!({"selector": {"x": 1}})));
        assert_eq!(ex["mrargs"]["start_key"], json!(null));
        assert_eq!(ex["mrargs"]["end_key"], json!("<MAX>"));
        assert_eq!(ex["index"]["name"], "_all_docs");
    }
}
