//! The index choice: which of the indexes that can serve a request (`usable.rs`) wins,
//! and [`plan`], which puts the choice, the range and the explanation together.

use serde_json::Value;

use super::explain::{candidates_json, selector_hints, CandidateSets};
use super::ranges::keys_of;
use super::usable::usability;
use super::{columns, Cand, Plan};
use crate::field::FieldPath;
use crate::request::UseIndex;
use crate::selector::{Bound, CmpOp, Range};
use crate::{Error, FindRequest, IndexDef, Result};

fn matches_use_index(indexes: &[IndexDef], c: Cand, use_index: &UseIndex) -> bool {
    let Cand::Json(i) = c else {
        return false;
    };
    match use_index {
        UseIndex::Any => false,
        UseIndex::Ddoc(d) => indexes[i].ddoc == format!("_design/{d}"),
        UseIndex::Index(d, n) => indexes[i].ddoc == format!("_design/{d}") && indexes[i].name == *n,
    }
}

/// The constrained fields and their ranges (`mango_idx_view:field_ranges`): stops at the
/// first empty range, which is then the only one.
fn field_ranges(req: &FindRequest) -> Vec<(FieldPath, Option<Range>)> {
    let mut out = Vec::new();
    for f in req.selector.indexable_fields() {
        match req.selector.range(&f) {
            Some(r) => out.push((f, Some(r))),
            None => return vec![(f, None)],
        }
    }
    out
}

/// Chooses a JSON index or `_all_docs` and the range to read. See the module doc for the
/// rules.
///
/// # Errors
/// [`Error::NoUsableIndex`] when the sort needs an index no definition serves;
/// [`Error::InvalidIndex`] when `use_index` cannot be used and `allow_fallback` is false;
/// [`Error::InvalidBookmark`] is [`Plan::resume_after`]'s.
pub fn plan<'a>(req: &FindRequest, indexes: &'a [IndexDef]) -> Result<Plan<'a>> {
    let sort: Vec<FieldPath> = req.sort.paths().cloned().collect();
    let all: Vec<Cand> = std::iter::once(Cand::AllDocs)
        .chain((0..indexes.len()).map(Cand::Json))
        .collect();
    let is_partial =
        |c: &Cand| matches!(c, Cand::Json(i) if indexes[*i].partial_filter_selector.is_some());
    let mut pool: Vec<Cand> = all
        .iter()
        .copied()
        .filter(|c| !is_partial(c) || matches_use_index(indexes, *c, &req.use_index))
        .collect();
    pool.sort();
    pool.dedup();
    let verdicts: Vec<(Cand, Vec<&'static str>)> = pool
        .iter()
        .map(|c| (*c, usability(indexes, *c, req, &sort)))
        .collect();
    let usable: Vec<Cand> = verdicts
        .iter()
        .filter(|(_, r)| r.is_empty())
        .map(|(c, _)| *c)
        .collect();
    if usable.is_empty() {
        return Err(Error::NoUsableIndex {
            reason: "No index exists for this sort, try indexing by the sort fields.".into(),
        });
    }
    let by_user: Vec<Cand> = usable
        .iter()
        .copied()
        .filter(|c| matches_use_index(indexes, *c, &req.use_index))
        .collect();
    let filtered = if !by_user.is_empty() {
        by_user
    } else if req.allow_fallback || (req.use_index == UseIndex::Any && usable.len() > 1) {
        usable.clone()
    } else {
        let reason = match &req.use_index {
            UseIndex::Any => "You must specify an index with the `use_index` parameter.".into(),
            UseIndex::Ddoc(d) => format!(
                "_design/{d} specified by `use_index` could not be found or it is not suitable."
            ),
            UseIndex::Index(d, n) => format!(
                "_design/{d}, {n} specified by `use_index` could not be found or it is not suitable."
            ),
        };
        return Err(Error::InvalidIndex { reason });
    };
    // JSON indexes first; `_all_docs` only when no JSON index is usable.
    let of_type: Vec<Cand> = if filtered.iter().any(|c| matches!(c, Cand::Json(_))) {
        filtered
            .iter()
            .copied()
            .filter(|c| matches!(c, Cand::Json(_)))
            .collect()
    } else {
        vec![Cand::AllDocs]
    };
    let mut ranges = field_ranges(req);
    if of_type == [Cand::AllDocs] {
        // The catch-all range of `_all_docs` (`mango_cursor_special`), after any real one.
        ranges.push((
            FieldPath::from_segments(vec!["_id".into()]),
            Some(Range {
                low_op: CmpOp::Gt,
                low: Bound::Value(Value::Null),
                high_op: CmpOp::Lt,
                high: Bound::Max,
            }),
        ));
    }
    let mut composite: Vec<(Cand, Vec<Option<Range>>, usize)> = of_type
        .iter()
        .map(|c| {
            let mut prefix = Vec::new();
            for col in columns(indexes, *c) {
                match ranges.iter().find(|(f, _)| *f == col) {
                    Some((_, r)) => prefix.push(r.clone()),
                    None => break,
                }
            }
            let diff = ranges.len().saturating_sub(prefix.len());
            (*c, prefix, diff)
        })
        .collect();
    let key = |c: Cand| match c {
        Cand::AllDocs => (String::new(), String::new()),
        Cand::Json(i) => (indexes[i].ddoc.clone(), indexes[i].name.clone()),
    };
    composite.sort_by(|a, b| {
        a.2.cmp(&b.2)
            .then_with(|| {
                columns(indexes, a.0)
                    .len()
                    .cmp(&columns(indexes, b.0).len())
            })
            .then_with(|| key(a.0).cmp(&key(b.0)))
    });
    // INVARIANT: `of_type` is not empty (`usable` is not), so neither is `composite`.
    let (chosen, prefix, _) = composite[0].clone();
    let keys = if req.selector.is_noop() || prefix.iter().any(Option::is_none) {
        None
    } else {
        let prefix: Vec<Range> = prefix.into_iter().flatten().collect();
        Some(keys_of(&prefix))
    };
    let fields = req.field_paths();
    let covering = match chosen {
        Cand::AllDocs => false,
        Cand::Json(i) => {
            let mut needed = fields.clone();
            if let Some(n) = &mut needed {
                n.extend(req.selector.fields());
            }
            indexes[i].covers(needed.as_deref())
        }
    };
    let mut warnings = Vec::new();
    if req.use_index != UseIndex::Any && !matches_use_index(indexes, chosen, &req.use_index) {
        warnings.push(match &req.use_index {
            UseIndex::Index(d, n) => format!(
                "_design/{d}, {n} was not used because it is not a valid index for this query."
            ),
            other => format!(
                "{} was not used because it does not contain a valid index for this query.",
                other.ddoc_id().unwrap_or_default()
            ),
        });
    }
    if chosen == Cand::AllDocs {
        warnings.push("No matching index found, create an index to optimize query time.".into());
    }
    let candidates = candidates_json(
        indexes,
        &CandidateSets {
            all: &all,
            pool: &pool,
            verdicts: &verdicts,
            usable: &usable,
            filtered: &filtered,
            of_type: &of_type,
            sorted: &composite,
            chosen,
        },
        fields.as_deref(),
    );
    Ok(Plan {
        indexes,
        chosen,
        keys,
        descending: req.sort.is_descending(),
        warnings,
        candidates,
        hints: selector_hints(req),
        covering,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{idx, req};
    use serde_json::json;

    #[test]
    fn sort_without_an_index_is_couchdbs_error() {
        let e = plan(
            &req(json!({"selector": {"x": {"$gt": 0}}, "sort": ["x"]})),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.name(), "no_usable_index");
        assert_eq!(
            e.reason(),
            "No index exists for this sort, try indexing by the sort fields."
        );
        // Even by _id, unless the selector constrains _id.
        assert!(plan(&req(json!({"selector": {}, "sort": ["_id"]})), &[]).is_err());
        let p = plan(
            &req(json!({"selector": {"_id": {"$gt": null}}, "sort": [{"_id": "desc"}]})),
            &[],
        )
        .unwrap();
        assert!(p.index().is_none() && p.is_descending());
    }

    #[test]
    fn index_needs_every_column_required_except_sort_fields() {
        let indexes = [idx(
            json!({"index": {"fields": ["a", "b"]}, "ddoc": "ab", "name": "ab"}),
        )];
        // b is not required: documents without b are not in the index.
        let p = plan(&req(json!({"selector": {"a": 1}})), &indexes).unwrap();
        assert!(p.index().is_none());
        assert!(p.warning().unwrap().contains("No matching index"));
        let p = plan(
            &req(json!({"selector": {"a": 1, "b": {"$exists": true}}})),
            &indexes,
        )
        .unwrap();
        assert_eq!(p.index().unwrap().name, "ab");
        // Sorting by b with a pinned: usable, b need not be in the selector.
        let p = plan(
            &req(json!({"selector": {"a": 1}, "sort": ["a", "b"]})),
            &indexes,
        )
        .unwrap();
        assert_eq!(p.index().unwrap().name, "ab");
        let p = plan(&req(json!({"selector": {"a": 1}, "sort": ["b"]})), &indexes).unwrap();
        assert_eq!(p.index().unwrap().name, "ab");
        // a is not pinned: sorting by b alone cannot use [a, b].
        let e = plan(
            &req(json!({"selector": {"a": {"$gt": 1}}, "sort": ["b"]})),
            &indexes,
        )
        .unwrap_err();
        assert_eq!(e.name(), "no_usable_index");
        // $exists: false does not require the field.
        let p = plan(
            &req(json!({"selector": {"a": 1, "b": {"$exists": false}}})),
            &indexes,
        )
        .unwrap();
        assert!(p.index().is_none());
    }

    #[test]
    fn best_index_covers_most_fields_then_fewest_columns_then_name() {
        let indexes = [
            idx(json!({"index": {"fields": ["a"]}, "ddoc": "z", "name": "a"})),
            idx(json!({"index": {"fields": ["a", "b"]}, "ddoc": "y", "name": "ab"})),
            idx(json!({"index": {"fields": ["a"]}, "ddoc": "x", "name": "a2"})),
        ];
        let p = plan(&req(json!({"selector": {"a": 1, "b": 2}})), &indexes).unwrap();
        assert_eq!(p.index().unwrap().name, "ab");
        let p = plan(&req(json!({"selector": {"a": 1}})), &indexes).unwrap();
        assert_eq!(p.index().unwrap().ddoc, "_design/x");
        let p = plan(
            &req(json!({"selector": {"a": 1}, "use_index": "z"})),
            &indexes,
        )
        .unwrap();
        assert_eq!(p.index().unwrap().ddoc, "_design/z");
        assert!(p.warning().is_none());
        let p = plan(
            &req(json!({"selector": {"a": 1}, "use_index": ["y", "ab"]})),
            &indexes,
        )
        .unwrap();
        assert_eq!(p.index().unwrap().ddoc, "_design/x");
        assert!(p.warning().unwrap().contains("_design/y, ab was not used"));
        let e = plan(
            &req(json!({"selector": {"a": 1}, "use_index": "nope", "allow_fallback": false})),
            &indexes,
        )
        .unwrap_err();
        assert_eq!(e.name(), "invalid_index");
    }

    #[test]
    fn partial_indexes_are_used_only_when_named() {
        let indexes = [idx(json!({
            "index": {"fields": ["a"], "partial_filter_selector": {"kind": "x"}}, "ddoc": "p", "name": "p"
        }))];
        let p = plan(&req(json!({"selector": {"a": 1}})), &indexes).unwrap();
        assert!(p.index().is_none());
        let ex = p.explain("db", &req(json!({"selector": {"a": 1}})));
        assert_eq!(
            ex["index_candidates"][0]["analysis"]["reasons"][0]["name"],
            "is_partial"
        );
        let p = plan(
            &req(json!({"selector": {"a": 1}, "use_index": "p"})),
            &indexes,
        )
        .unwrap();
        assert_eq!(p.index().unwrap().name, "p");
    }
}
