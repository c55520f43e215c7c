//! Which indexes can serve a request, and why not: CouchDB's usability rules (field and
//! sort-order mismatches, with CouchDB's reason names), shared by the choice and
//! `_explain`.

use super::{columns, Cand};
use crate::field::FieldPath;
use crate::{FindRequest, IndexDef};

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
pub(super) fn usability(
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
