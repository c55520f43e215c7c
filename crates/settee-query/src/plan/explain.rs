//! What `_explain` says: the chosen index with the keys it reads, every other candidate
//! with why it lost (CouchDB's reasons and rankings), and the selector's hints; also the
//! answer for a query no index can serve.

use serde_json::{json, Value};

use super::usable::usability;
use super::{all_docs_index_json, columns, Cand, Plan};
use crate::field::FieldPath;
use crate::selector::Range;
use crate::{FindRequest, IndexDef};

const MAX_TEXT: &str = "<MAX>";

/// `_explain`'s `selector_hints`: which fields of the selector an index could serve.
pub(super) fn selector_hints(req: &FindRequest) -> Value {
    let mut fields: Vec<String> = req
        .selector
        .fields()
        .iter()
        .map(ToString::to_string)
        .collect();
    fields.sort();
    fields.dedup();
    let indexable: Vec<String> = req
        .selector
        .indexable_fields()
        .iter()
        .map(ToString::to_string)
        .collect();
    let unindexable: Vec<&String> = fields.iter().filter(|f| !indexable.contains(f)).collect();
    json!([{"type": "json", "indexable_fields": indexable, "unindexable_fields": unindexable}])
}

/// The answer of `_explain` for a query no index can serve (a sort without an index): as
/// CouchDB answers it, with `"index": null` and why each index cannot serve it, where `_find`
/// answers `no_usable_index`.
pub fn explain_unplannable(dbname: &str, req: &FindRequest, indexes: &[IndexDef]) -> Value {
    let sort: Vec<FieldPath> = req.sort.paths().cloned().collect();
    let fields = req.field_paths();
    let candidates: Vec<Value> = (0..indexes.len())
        .map(Cand::Json)
        .chain(std::iter::once(Cand::AllDocs))
        .map(|c| {
            let partial = matches!(c, Cand::Json(i) if indexes[i].partial_filter_selector.is_some());
            let reason = if partial {
                "is_partial"
            } else {
                usability(indexes, c, req, &sort).first().copied().unwrap_or("field_mismatch")
            };
            let (index, covering) = match c {
                Cand::AllDocs => (all_docs_index_json(), Value::Null),
                Cand::Json(i) => (indexes[i].to_json(), json!(indexes[i].covers(fields.as_deref()))),
            };
            json!({"index": index, "analysis": {"usable": false, "reasons": [{"name": reason}], "ranking": 1, "covering": covering}})
        })
        .collect();
    answer(
        dbname,
        Value::Null,
        req,
        json!(candidates),
        selector_hints(req),
    )
}

/// The members every `_explain` answer opens with, in CouchDB's order.
fn answer(dbname: &str, index: Value, req: &FindRequest, candidates: Value, hints: Value) -> Value {
    json!({
        "dbname": dbname,
        "index": index,
        "partitioned": false,
        "selector": req.selector.to_json(),
        "opts": req.opts_json(),
        "limit": req.limit,
        "skip": req.skip,
        "fields": req.fields.clone().unwrap_or_default(),
        "index_candidates": candidates,
        "selector_hints": hints,
    })
}

/// The candidate indexes at each step of the choice, for `_explain`'s reasons.
pub(super) struct CandidateSets<'c> {
    pub(super) all: &'c [Cand],
    pub(super) pool: &'c [Cand],
    pub(super) verdicts: &'c [(Cand, Vec<&'static str>)],
    pub(super) usable: &'c [Cand],
    pub(super) filtered: &'c [Cand],
    pub(super) of_type: &'c [Cand],
    pub(super) sorted: &'c [(Cand, Vec<Option<Range>>, usize)],
    pub(super) chosen: Cand,
}

/// `_explain`'s `index_candidates`: every index but the chosen one, with why it was not
/// chosen and a ranking (CouchDB's `extract_candidate_indexes`).
pub(super) fn candidates_json(
    indexes: &[IndexDef],
    s: &CandidateSets<'_>,
    fields: Option<&[FieldPath]>,
) -> Vec<Value> {
    let minus = |a: &[Cand], b: &[Cand]| -> Vec<Cand> {
        a.iter().copied().filter(|c| !b.contains(c)).collect()
    };
    let partial = minus(s.all, s.pool);
    let not_usable = minus(s.pool, s.usable);
    let excluded = minus(s.usable, s.filtered);
    let unfavored = minus(s.filtered, s.of_type);
    let unfavored_rank = s.sorted.len().max(1);
    let excluded_rank = unfavored_rank + usize::from(!unfavored.is_empty());
    let not_usable_rank = excluded_rank + usize::from(!excluded.is_empty());
    let partial_rank = not_usable_rank + usize::from(!not_usable.is_empty());
    let winner_width = columns(indexes, s.chosen).len();
    let mut out = Vec::new();
    for c in s.all {
        if *c == s.chosen {
            continue;
        }
        let (usable, reason, ranking) = if partial.contains(c) {
            (false, "is_partial", partial_rank)
        } else if not_usable.contains(c) {
            let reason = s
                .verdicts
                .iter()
                .find(|(v, _)| v == c)
                .and_then(|(_, r)| r.first().copied())
                .unwrap_or("field_mismatch");
            (false, reason, not_usable_rank)
        } else if excluded.contains(c) {
            (true, "excluded_by_user", excluded_rank)
        } else if unfavored.contains(c) {
            (true, "unfavored_type", unfavored_rank)
        } else {
            let n = s.sorted.iter().position(|(x, _, _)| x == c).unwrap_or(0);
            let (_, _, distance) = &s.sorted[n.min(s.sorted.len().saturating_sub(1))];
            let reason = if *distance > 0 {
                "less_overlap"
            } else if columns(indexes, *c).len() > winner_width {
                "too_many_fields"
            } else {
                "alphabetically_comes_after"
            };
            (true, reason, n)
        };
        let (index, covering) = match c {
            Cand::AllDocs => (all_docs_index_json(), Value::Null),
            Cand::Json(i) => (indexes[*i].to_json(), json!(indexes[*i].covers(fields))),
        };
        out.push(json!({
            "index": index,
            "analysis": {
                "usable": usable,
                "reasons": [{"name": reason}],
                "ranking": ranking,
                "covering": covering,
            }
        }));
    }
    out
}

impl Plan<'_> {
    /// The answer of `POST /{db}/_explain` for this plan, in CouchDB's shape.
    pub fn explain(&self, dbname: &str, req: &FindRequest) -> Value {
        let index = match self.index() {
            Some(i) => i.to_json(),
            None => all_docs_index_json(),
        };
        let show = |v: &Value| v.clone();
        let (start_key, end_key) = match (&self.keys, self.chosen) {
            (None, _) => (Value::Null, Value::Null),
            (Some((s, e, _)), Cand::AllDocs) => (
                s.first().map(show).unwrap_or_else(|| json!("")),
                e.first().map(show).unwrap_or_else(|| json!(MAX_TEXT)),
            ),
            (Some((s, e, max)), Cand::Json(_)) => {
                let mut end: Vec<Value> = e.clone();
                if *max {
                    end.push(json!(MAX_TEXT));
                }
                (Value::Array(s.clone()), Value::Array(end))
            }
        };
        let (start_key, end_key) = if self.descending {
            (end_key, start_key)
        } else {
            (start_key, end_key)
        };
        let mut out = answer(
            dbname,
            index,
            req,
            json!(self.candidates),
            json!(self.hints),
        );
        out["mrargs"] = json!({
                "include_docs": true,
                "view_type": "map",
                "reduce": false,
                "partition": null,
                "start_key": start_key,
                "end_key": end_key,
                "direction": if self.descending { "rev" } else { "fwd" },
                "stable": false,
                "update": true,
                "conflicts": if req.conflicts { json!(true) } else { json!("undefined") },
        });
        out["covering"] = json!(self.covering);
        out
    }
}
