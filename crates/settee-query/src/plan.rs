//! The query planner: which index serves a `_find`, which part of it to read, in which
//! direction, and what `_explain` says about the choice. CouchDB's rules
//! (`mango_idx:get_usable_indexes`, `mango_cursor:create`, `mango_cursor_view`):
//!
//! - a JSON index is usable when the selector requires every column to exist (sort fields
//!   exist in the results by definition) and the sort is a prefix of its columns, after
//!   columns the selector pins with `$eq`;
//! - `_all_docs` is usable without a sort, or to sort by `_id` when the selector constrains
//!   `_id`; a sort no index serves is the 400 `no_usable_index`;
//! - JSON indexes are preferred to `_all_docs`; among them the one whose leading columns
//!   cover the most constrained fields, then the one with fewer columns, then the first by
//!   design document and name;
//! - the range read comes from the selector's top-level `$and` (CouchDB's start and end
//!   keys); every document read is matched against the whole selector afterwards, so the
//!   range only has to contain the answer.
//!
//! Reading the index is the store's job: [`Plan::key_range`] gives the bytes to scan.

use serde_json::{json, Value};

use crate::collate::{encode_key, MAX_KEY_BYTE};
use crate::field::FieldPath;
use crate::request::UseIndex;
use crate::selector::{Bound, CmpOp, Range};
use crate::{Error, FindRequest, IndexDef, Result};

/// An index the planner can choose: `_all_docs` or one of the given JSON indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cand {
    AllDocs,
    Json(usize),
}

/// The scan of a JSON index the plan asks for, as encoded keys (see [`crate::encode_key`];
/// an index entry's key is its columns' encodings, then the document id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The first key to read (inclusive).
    pub start: Vec<u8>,
    /// The last key to read: every key that is below it or starts with it is in range.
    pub end: Vec<u8>,
}

/// What the planner decided for one request.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    indexes: &'a [IndexDef],
    chosen: Cand,
    /// CouchDB's start and end keys (end may end with the `<MAX>` bound); `None` when the
    /// selector cannot match anything.
    keys: Option<(Vec<Value>, Vec<Value>, bool)>,
    descending: bool,
    warnings: Vec<String>,
    candidates: Vec<Value>,
    hints: Value,
    covering: bool,
}

const MAX_TEXT: &str = "<MAX>";

/// The label of an index in bookmarks and messages.
fn label(indexes: &[IndexDef], c: Cand) -> String {
    match c {
        Cand::AllDocs => "_all_docs".into(),
        Cand::Json(i) => format!("{}/{}", indexes[i].ddoc, indexes[i].name),
    }
}

/// The `_all_docs` special index as `_index` lists it.
pub fn all_docs_index_json() -> Value {
    json!({"ddoc": null, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}})
}

fn columns(indexes: &[IndexDef], c: Cand) -> Vec<FieldPath> {
    match c {
        Cand::AllDocs => vec![FieldPath::from_segments(vec!["_id".into()])],
        Cand::Json(i) => indexes[i].columns().cloned().collect(),
    }
}

/// `mango_idx_view:can_use_sort`.
fn can_use_sort(cols: &[FieldPath], sort: &[FieldPath], req: &FindRequest) -> bool {
    match (cols.first(), sort.first()) {
        (_, None) => true,
        (None, _) => false,
        (Some(c), Some(s)) if c == s => sort.len() <= cols.len() && cols.starts_with(sort),
        (Some(c), Some(_)) => {
            req.selector.is_constant_field(c) && can_use_sort(&cols[1..], sort, req)
        }
    }
}

/// Whether an index can serve the request, and why not (CouchDB's reason names).
fn usability(
    indexes: &[IndexDef],
    c: Cand,
    req: &FindRequest,
    sort: &[FieldPath],
) -> Vec<&'static str> {
    let cols = columns(indexes, c);
    let mut reasons = Vec::new();
    match c {
        Cand::AllDocs => {
            if sort.is_empty() {
                return reasons;
            }
            let id = &cols[0];
            if !req.selector.indexable_fields().contains(id) {
                reasons.push("field_mismatch");
            }
            if !(sort.len() <= cols.len() && cols.starts_with(sort)) {
                reasons.push("sort_order_mismatch");
            }
        }
        Cand::Json(_) => {
            let required: Vec<FieldPath> = cols
                .iter()
                .filter(|c| !sort.contains(c))
                .filter(|c| !matches!(c.segments(), [one] if one == "_id" || one == "_rev"))
                .cloned()
                .collect();
            if !req.selector.has_required_fields(&required) {
                reasons.push("field_mismatch");
            }
            if !can_use_sort(&cols, sort, req) {
                reasons.push("sort_order_mismatch");
            }
        }
    }
    reasons
}

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

/// `_explain`'s `selector_hints`: which fields of the selector an index could serve.
fn selector_hints(req: &FindRequest) -> Value {
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
    json!({
        "dbname": dbname,
        "index": null,
        "partitioned": false,
        "selector": req.selector.to_json(),
        "opts": req.opts_json(),
        "limit": req.limit,
        "skip": req.skip,
        "fields": req.fields.clone().unwrap_or_default(),
        "index_candidates": candidates,
        "selector_hints": selector_hints(req),
    })
}

/// CouchDB's start and end keys for the ranges of an index's leading columns
/// (`mango_idx_view:start_key/end_key`): the start stops at the first open lower bound, the
/// end at the first open upper bound, which becomes `<MAX>`.
fn keys_of(ranges: &[Range]) -> (Vec<Value>, Vec<Value>, bool) {
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

struct CandidateSets<'c> {
    all: &'c [Cand],
    pool: &'c [Cand],
    verdicts: &'c [(Cand, Vec<&'static str>)],
    usable: &'c [Cand],
    filtered: &'c [Cand],
    of_type: &'c [Cand],
    sorted: &'c [(Cand, Vec<Option<Range>>, usize)],
    chosen: Cand,
}

/// `_explain`'s `index_candidates`: every index but the chosen one, with why it was not
/// chosen and a ranking (CouchDB's `extract_candidate_indexes`).
fn candidates_json(
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

impl<'a> Plan<'a> {
    /// The chosen JSON index, `None` for `_all_docs`.
    pub fn index(&self) -> Option<&'a IndexDef> {
        match self.chosen {
            Cand::AllDocs => None,
            Cand::Json(i) => Some(&self.indexes[i]),
        }
    }

    /// The position of the chosen index in the list given to [`plan`], `None` for
    /// `_all_docs`.
    pub fn index_position(&self) -> Option<usize> {
        match self.chosen {
            Cand::AllDocs => None,
            Cand::Json(i) => Some(i),
        }
    }

    /// Whether the index is read backwards (a descending sort).
    pub fn is_descending(&self) -> bool {
        self.descending
    }

    /// Whether the selector cannot match anything, so nothing needs reading.
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// CouchDB's `warning` for the answer (several joined by newlines), if any.
    pub fn warning(&self) -> Option<String> {
        (!self.warnings.is_empty()).then(|| self.warnings.join("\n"))
    }

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

    /// The bookmark to return after a page whose last row is `entry` (an index entry's key
    /// after the index prefix, or a document id for `_all_docs`): opaque, base64url.
    pub fn bookmark(&self, entry: &[u8]) -> String {
        let label = label(self.indexes, self.chosen);
        let mut raw = Vec::with_capacity(3 + label.len() + entry.len());
        raw.push(1);
        // Labels are design document ids and names: far below 64 KiB.
        raw.extend_from_slice(&u16::try_from(label.len()).unwrap_or(u16::MAX).to_be_bytes());
        raw.extend_from_slice(label.as_bytes());
        raw.extend_from_slice(entry);
        base64url_encode(&raw)
    }

    /// Where a bookmark says to resume: reading continues strictly after this entry (before
    /// it, for a descending sort). `None` without a bookmark.
    ///
    /// # Errors
    /// [`Error::InvalidBookmark`] if it does not decode or was made by another index.
    pub fn resume_after(&self, bookmark: Option<&str>) -> Result<Option<Vec<u8>>> {
        let Some(b) = bookmark else {
            return Ok(None);
        };
        let bad = |why: &str| Error::InvalidBookmark {
            reason: format!("Invalid bookmark value: {b:?} ({why})"),
        };
        let raw = base64url_decode(b).ok_or_else(|| bad("not a Settee bookmark"))?;
        if raw.first() != Some(&1) || raw.len() < 3 {
            return Err(bad("not a Settee bookmark"));
        }
        let len = usize::from(u16::from_be_bytes([raw[1], raw[2]]));
        let label_bytes = raw.get(3..3 + len).ok_or_else(|| bad("truncated"))?;
        let expected = label(self.indexes, self.chosen);
        if label_bytes != expected.as_bytes() {
            return Err(bad(&format!(
                "it was made by index {}, this query uses {expected}",
                String::from_utf8_lossy(label_bytes)
            )));
        }
        Ok(Some(raw[3 + len..].to_vec()))
    }

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
        json!({
            "dbname": dbname,
            "index": index,
            "partitioned": false,
            "selector": req.selector.to_json(),
            "opts": req.opts_json(),
            "limit": req.limit,
            "skip": req.skip,
            "fields": req.fields.clone().unwrap_or_default(),
            "index_candidates": self.candidates,
            "selector_hints": self.hints,
            "mrargs": {
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
            },
            "covering": self.covering,
        })
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(body: Value) -> IndexDef {
        IndexDef::from_create_request(&body).unwrap()
    }

    fn req(body: Value) -> FindRequest {
        FindRequest::parse(&body).unwrap()
    }

    #[test]
    fn base64url_round_trips() {
        for n in 0..20u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64url_encode(b"hi?"), "aGk_");
        assert!(base64url_decode("a=b").is_none());
    }

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

    #[test]
    fn bookmarks_belong_to_their_index() {
        let indexes = [idx(
            json!({"index": {"fields": ["a"]}, "ddoc": "a", "name": "a"}),
        )];
        let r = req(json!({"selector": {"a": {"$gt": 0}}}));
        let p = plan(&r, &indexes).unwrap();
        let b = p.bookmark(b"\x40key-and-id");
        assert_eq!(
            p.resume_after(Some(&b)).unwrap().unwrap(),
            b"\x40key-and-id"
        );
        let other = plan(&req(json!({"selector": {"z": 1}})), &indexes).unwrap();
        assert_eq!(
            other.resume_after(Some(&b)).unwrap_err().name(),
            "invalid_bookmark"
        );
        assert_eq!(
            p.resume_after(Some("!!")).unwrap_err().name(),
            "invalid_bookmark"
        );
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
