//! What the planner reads from a selector: the fields it constrains, the range of values
//! each may take under the top-level `$and` (CouchDB's `mango_idx_view:range`), the
//! fields it requires and the ones it pins to one value.

use std::cmp::Ordering;

use serde_json::Value;

use super::{CmpOp, Cond, Node};
use crate::collate::collate;
use crate::field::FieldPath;

/// One end of a [`Range`]: below or above every value, or a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Min,
    Max,
    Value(Value),
}

impl Bound {
    fn cmp(&self, other: &Bound) -> Ordering {
        match (self, other) {
            (Bound::Min, Bound::Min) | (Bound::Max, Bound::Max) => Ordering::Equal,
            (Bound::Min, _) | (_, Bound::Max) => Ordering::Less,
            (Bound::Max, _) | (_, Bound::Min) => Ordering::Greater,
            (Bound::Value(a), Bound::Value(b)) => collate(a, b),
        }
    }
}

/// The values a field may take under a selector's top-level `$and`: CouchDB's
/// `{LowOp, Low, HighOp, High}` (`mango_idx_view:range`). `low_op` is `Gt`, `Gte` or `Eq`;
/// `high_op` is `Lt`, `Lte` or `Eq`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Range {
    pub(crate) low_op: CmpOp,
    pub(crate) low: Bound,
    pub(crate) high_op: CmpOp,
    pub(crate) high: Bound,
}

impl Range {
    pub(super) fn full() -> Range {
        Range {
            low_op: CmpOp::Gt,
            low: Bound::Min,
            high_op: CmpOp::Lt,
            high: Bound::Max,
        }
    }

    fn eq(v: &Value) -> Range {
        Range {
            low_op: CmpOp::Eq,
            low: Bound::Value(v.clone()),
            high_op: CmpOp::Eq,
            high: Bound::Value(v.clone()),
        }
    }
}

pub(super) fn indexable_paths(node: &Node, out: &mut Vec<FieldPath>) {
    match node {
        Node::And(items) => items.iter().for_each(|n| indexable_paths(n, out)),
        Node::Field(path, cond) => {
            let indexable = matches!(
                cond,
                Cond::Cmp(
                    CmpOp::Eq | CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte,
                    _
                ) | Cond::BeginsWith(_)
                    | Cond::Exists(_)
            );
            if indexable && !path.segments().is_empty() {
                out.push(path.clone());
            }
        }
        _ => {}
    }
}

pub(super) fn range_in(node: &Node, field: &FieldPath, r: Range) -> Option<Range> {
    match node {
        Node::And(items) => items
            .iter()
            .try_fold(r, |acc, item| range_in(item, field, acc)),
        Node::Field(path, cond) if path == field => narrow(cond, r),
        _ => Some(r),
    }
}

/// Where `arg` falls against the range's ends: below, at the low end, inside, at the high
/// end, above.
#[derive(PartialEq)]
enum Pos {
    Min,
    Low,
    Mid,
    High,
    Max,
}

fn pos(r: &Range, arg: &Value) -> Pos {
    let a = Bound::Value(arg.clone());
    match a.cmp(&r.low) {
        Ordering::Less => Pos::Min,
        Ordering::Equal => Pos::Low,
        Ordering::Greater => match a.cmp(&r.high) {
            Ordering::Less => Pos::Mid,
            Ordering::Equal => Pos::High,
            Ordering::Greater => Pos::Max,
        },
    }
}

/// Narrows `r` by one condition, following CouchDB's table in `mango_idx_view:range/5`.
fn narrow(cond: &Cond, r: Range) -> Option<Range> {
    let inclusive_low = matches!(r.low_op, CmpOp::Gte | CmpOp::Eq);
    let inclusive_high = matches!(r.high_op, CmpOp::Lte | CmpOp::Eq);
    match cond {
        Cond::BeginsWith(prefix) => {
            let r = narrow(&Cond::Cmp(CmpOp::Gte, Value::String(prefix.clone())), r)?;
            // U+FFFF sorts above every other character in the collation.
            narrow(
                &Cond::Cmp(CmpOp::Lte, Value::String(format!("{prefix}\u{ffff}"))),
                r,
            )
        }
        Cond::Cmp(op, arg) => {
            let p = pos(&r, arg);
            let with_high = |op| Range {
                high_op: op,
                high: Bound::Value(arg.clone()),
                ..r.clone()
            };
            let with_low = |op| Range {
                low_op: op,
                low: Bound::Value(arg.clone()),
                ..r.clone()
            };
            match op {
                CmpOp::Lt => match p {
                    Pos::Min | Pos::Low => None,
                    Pos::Mid | Pos::High => Some(with_high(CmpOp::Lt)),
                    Pos::Max => Some(r),
                },
                CmpOp::Lte => match p {
                    Pos::Min => None,
                    Pos::Low if inclusive_low => Some(Range::eq(arg)),
                    Pos::Low => None,
                    Pos::Mid => Some(with_high(CmpOp::Lte)),
                    Pos::High | Pos::Max => Some(r),
                },
                CmpOp::Eq => match p {
                    Pos::Min | Pos::Max => None,
                    Pos::Low if inclusive_low => Some(Range::eq(arg)),
                    Pos::Low => None,
                    Pos::Mid => Some(Range::eq(arg)),
                    Pos::High if inclusive_high => Some(Range::eq(arg)),
                    Pos::High => None,
                },
                CmpOp::Gte => match p {
                    Pos::Min | Pos::Low => Some(r),
                    Pos::Mid => Some(with_low(CmpOp::Gte)),
                    Pos::High if inclusive_high => Some(Range::eq(arg)),
                    Pos::High | Pos::Max => None,
                },
                CmpOp::Gt => match p {
                    Pos::Min => Some(r),
                    Pos::Low | Pos::Mid => Some(with_low(CmpOp::Gt)),
                    Pos::High | Pos::Max => None,
                },
                // Not a range: applied afterwards, as a filter.
                CmpOp::Ne => Some(r),
            }
        }
        _ => Some(r),
    }
}

/// The fields of `required` that `nodes` (conjoined) do not guarantee to exist
/// (`has_required_fields_int`).
pub(super) fn required_remainder(nodes: &[Node], mut required: Vec<FieldPath>) -> Vec<FieldPath> {
    for node in nodes {
        if required.is_empty() {
            break;
        }
        match node {
            Node::And(items) => required = required_remainder(items, required),
            Node::Or(items) => {
                // Each alternative must guarantee a field for the $or to.
                let mut left: Vec<FieldPath> = items
                    .iter()
                    .flat_map(|n| required_remainder(std::slice::from_ref(n), required.clone()))
                    .collect();
                left.sort();
                left.dedup();
                required = left;
            }
            Node::Field(_, Cond::Exists(false)) => {}
            Node::Field(path, _) => required.retain(|f| f != path),
            Node::All | Node::Nor(_) | Node::Not(_) => {}
        }
    }
    required
}

pub(super) fn is_constant(node: &Node, field: &FieldPath) -> bool {
    match node {
        Node::And(items) => items.iter().any(|n| is_constant(n, field)),
        Node::Field(path, Cond::Cmp(CmpOp::Eq, _)) => path == field,
        _ => false,
    }
}

pub(super) fn collect_fields(node: &Node, out: &mut Vec<FieldPath>) {
    match node {
        Node::And(items) | Node::Or(items) | Node::Nor(items) => {
            items.iter().for_each(|n| collect_fields(n, out))
        }
        Node::Not(inner) => collect_fields(inner, out),
        Node::Field(path, _) if !path.segments().is_empty() => out.push(path.clone()),
        Node::Field(..) | Node::All => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::tests::{path, sel};
    use serde_json::json;

    #[test]
    fn indexable_fields_see_through_and_only() {
        let f = |v: Value| {
            sel(v)
                .indexable_fields()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            f(json!({"b": 1, "a": {"$gt": 2}, "c": {"$ne": 3}})),
            ["a", "b"]
        );
        assert_eq!(
            f(json!({"a": {"$exists": true}, "d": {"$beginsWith": "x"}})),
            ["a", "d"]
        );
        assert!(f(json!({"$or": [{"a": 1}, {"b": 2}]})).is_empty());
        assert!(f(json!({"a": {"$in": [1]}, "b": {"$regex": "x"}})).is_empty());
        assert_eq!(f(json!({"$not": {"a": {"$lt": 3}}})), ["a"]);
    }

    #[test]
    fn ranges_narrow_like_couchdb() {
        let r = |v: Value, field: &str| sel(v).range(&path(field));
        let v = |x: Value| Bound::Value(x);
        let got = r(json!({"a": {"$gt": 1, "$lte": 5}}), "a").unwrap();
        assert_eq!(
            (got.low_op, got.low, got.high_op, got.high),
            (CmpOp::Gt, v(json!(1)), CmpOp::Lte, v(json!(5)))
        );
        let got = r(json!({"a": {"$gte": 3, "$lte": 3}}), "a").unwrap();
        assert_eq!((got.low_op, got.high_op), (CmpOp::Eq, CmpOp::Eq));
        assert!(r(json!({"a": {"$gt": 3, "$lt": 3}}), "a").is_none());
        assert!(r(json!({"a": {"$eq": 3, "$gt": 4}}), "a").is_none());
        assert!(r(json!({"a": 1, "b": 2}), "b").is_some());
        let got = r(json!({"a": {"$beginsWith": "ab"}}), "a").unwrap();
        assert_eq!(got.low, v(json!("ab")));
        assert_eq!(got.high, v(json!("ab\u{ffff}")));
        // Unrelated fields and other operators leave the range open.
        let got = r(json!({"b": 1, "a": {"$ne": 2}}), "a").unwrap();
        assert_eq!((got.low, got.high), (Bound::Min, Bound::Max));
    }

    #[test]
    fn required_and_constant_fields() {
        let req = |v: Value, fields: &[&str]| {
            sel(v).has_required_fields(&fields.iter().map(|f| path(f)).collect::<Vec<_>>())
        };
        assert!(req(json!({"a": 1, "b": {"$gt": 0}}), &["a", "b"]));
        assert!(!req(json!({"a": 1}), &["a", "b"]));
        assert!(!req(json!({"a": {"$exists": false}}), &["a"]));
        assert!(req(json!({"$or": [{"a": 1}, {"a": 2, "b": 3}]}), &["a"]));
        assert!(!req(json!({"$or": [{"a": 1}, {"b": 3}]}), &["a"]));
        assert!(req(json!({}), &[]));
        assert!(sel(json!({"a": 1, "b": {"$gt": 1}})).is_constant_field(&path("a")));
        assert!(!sel(json!({"a": 1, "b": {"$gt": 1}})).is_constant_field(&path("b")));
        assert!(!sel(json!({"$or": [{"a": 1}]})).is_constant_field(&path("a")));
        assert!(sel(json!({"$or": []})).is_noop());
        assert!(sel(json!({"$and": []})).is_noop());
        assert!(!sel(json!({"a": 1, "$or": []})).is_noop());
    }
}
