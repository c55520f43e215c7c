//! Evaluating a selector against a document: CouchDB's view collation for every field but
//! the top-level `_id` (raw order), and each operator's meaning, including on missing
//! fields and arrays.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{CmpOp, Cond, Node, Pattern};
use crate::collate::{cmp_raw, collate};
use crate::field::Lookup;

/// How values are compared: CouchDB's collation, or raw term order for `_id`.
type CmpFn = fn(&Value, &Value) -> Ordering;

pub(super) fn match_node(node: &Node, value: &Value) -> bool {
    match_node_with(node, value, collate)
}

fn match_node_with(node: &Node, value: &Value, inherited: CmpFn) -> bool {
    match node {
        Node::All => true,
        Node::And(items) => items.iter().all(|n| match_node_with(n, value, inherited)),
        Node::Or(items) => {
            items.is_empty() || items.iter().any(|n| match_node_with(n, value, inherited))
        }
        Node::Nor(items) => !items.iter().any(|n| match_node_with(n, value, inherited)),
        Node::Not(inner) => !match_node_with(inner, value, inherited),
        Node::Field(path, cond) => {
            let cmp: CmpFn = if path.is_id() { cmp_raw } else { inherited };
            match path.lookup(value) {
                Lookup::Found(v) => match_cond(cond, v, cmp),
                Lookup::NotFound => matches!(cond, Cond::Exists(false)),
                Lookup::BadPath => false,
            }
        }
    }
}

fn match_cond(cond: &Cond, value: &Value, cmp: CmpFn) -> bool {
    match cond {
        Cond::Cmp(op, arg) => {
            let ord = cmp(value, arg);
            match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Lte => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Gte => ord != Ordering::Less,
            }
        }
        Cond::In(args) => in_match(args, value, cmp),
        Cond::Nin(args) => !in_match(args, value, cmp),
        Cond::Exists(should) => *should,
        Cond::Type(t) => type_name(value) == t,
        Cond::Regex(Pattern(re)) => value.as_str().is_some_and(|s| re.is_match(s)),
        Cond::Size(n) => value
            .as_array()
            .is_some_and(|items| u64::try_from(items.len()) == Ok(*n)),
        Cond::Mod(_, d, r) => match value {
            Value::Number(n) => int_of(n).is_some_and(|v| v % d == *r),
            _ => false,
        },
        // Every argument must be an element (exact term equality), or the
        // sole argument is an array equal to the whole field.
        Cond::All(args) => match value {
            Value::Array(items) if !args.is_empty() => {
                args.iter()
                    .all(|a| items.iter().any(|v| term_eq(a, v, true)))
                    || matches!(args.as_slice(), [one @ Value::Array(_)] if term_eq(one, value, false))
            }
            _ => false,
        },
        Cond::BeginsWith(prefix) => value
            .as_str()
            .is_some_and(|s| s.starts_with(prefix.as_str())),
        Cond::ElemMatch(sub) => value
            .as_array()
            .is_some_and(|items| items.iter().any(|v| match_node_with(sub, v, cmp))),
        Cond::AllMatch(sub) => value.as_array().is_some_and(|items| {
            !items.is_empty() && items.iter().all(|v| match_node_with(sub, v, cmp))
        }),
        Cond::KeyMapMatch(sub) => value.as_object().is_some_and(|map| {
            map.keys()
                .any(|k| match_node_with(sub, &Value::String(k.clone()), cmp))
        }),
        Cond::Not(inner) => !match_cond(inner, value, cmp),
    }
}

/// `$in`: an array field matches when one of its *elements* is a candidate
/// (the array itself is not compared), as in CouchDB.
fn in_match(args: &[Value], value: &Value, cmp: CmpFn) -> bool {
    let equal = |v: &Value| args.iter().any(|a| cmp(v, a).is_eq());
    match value {
        Value::Array(items) => items.iter().any(equal),
        _ => equal(value),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) fn int_of(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn cmp_numbers_exact(a: &Number, b: &Number) -> Ordering {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
    }
}

/// Erlang term equality: `=:=` when `strict` (1 and 1.0 differ), `==`
/// otherwise; object members compared in order.
fn term_eq(a: &Value, b: &Value, strict: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if strict => {
            x.is_f64() == y.is_f64() && cmp_numbers_exact(x, y).is_eq()
        }
        (Value::Number(x), Value::Number(y)) => cmp_numbers_exact(x, y).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| term_eq(p, q, strict))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && term_eq(va, vb, strict))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use crate::selector::tests::{check, m};
    use serde_json::{json, Value};

    #[test]
    fn comparisons() {
        check(
            json!({"$lt": 5}),
            &[(true, json!(4)), (false, json!(5)), (false, json!(6))],
        );
        check(
            json!({"$lte": "hello"}),
            &[
                (true, json!("held")),
                (true, json!("hello")),
                (false, json!("help")),
            ],
        );
        check(
            json!({"$gt": [1, 2, 3]}),
            &[
                (false, json!([1, 2, 2])),
                (false, json!([1, 2])),
                (false, json!([1, 2, 3])),
                (true, json!([1, 2, 4])),
                (true, json!([1, 3])),
            ],
        );
        check(
            json!({"$gte": 5}),
            &[
                (false, json!(4)),
                (true, json!(5)),
                (true, json!(6)),
                (true, json!(5.0)),
            ],
        );
        check(
            json!({"$eq": [1, [2, 3, 4], 5]}),
            &[
                (true, json!([1, [2, 3, 4], 5])),
                (false, json!([1, [2, 3, 4]])),
                (false, json!([1, [2, 3, 4], 5, 6])),
                (false, json!([1, [2, 7, 4], 5])),
            ],
        );
        check(
            json!({"$eq": {"a": {"b": {"c": 7}}}}),
            &[
                (true, json!({"a": {"b": {"c": 7}}})),
                (false, json!({"a": {"b": {"c": 8}}})),
                (false, json!({"a": {"b": {"d": 7}}})),
                (false, json!({"a": {"d": {"c": 7}}})),
            ],
        );
        check(
            json!({"$ne": "hello"}),
            &[(false, json!("hello")), (true, json!("help"))],
        );
        check(
            json!({"$gt": 5, "$lt": 10}),
            &[(true, json!(7)), (false, json!(5)), (false, json!(10))],
        );
    }

    #[test]
    fn cross_type_collation() {
        // null < false < true < numbers < strings < arrays < objects
        let order = [
            json!(null),
            json!(false),
            json!(true),
            json!(-3),
            json!(1.5),
            json!(""),
            json!("a"),
            json!([]),
            json!([1]),
            json!({}),
            json!({"a": 1}),
        ];
        for (i, lo) in order.iter().enumerate() {
            for hi in &order[i + 1..] {
                assert!(
                    m(json!({"x": {"$lt": hi}}), json!({"x": lo})),
                    "{lo} < {hi}"
                );
                assert!(
                    m(json!({"x": {"$gt": lo}}), json!({"x": hi})),
                    "{hi} > {lo}"
                );
                assert!(!m(json!({"x": {"$eq": lo}}), json!({"x": hi})));
            }
        }
        assert!(m(json!({"x": {"$gt": 100}}), json!({"x": "1"})));
        assert!(m(json!({"x": 1}), json!({"x": 1.0})));
        // ICU: letters first, case second.
        assert!(m(json!({"x": {"$gt": "a"}}), json!({"x": "B"})));
        assert!(m(json!({"x": {"$lt": "b"}}), json!({"x": "A"})));
    }

    #[test]
    fn missing_fields() {
        for cond in [
            json!({"$ne": 5}),
            json!({"$nin": [1]}),
            json!({"$lt": 5}),
            json!({"$exists": true}),
            json!({"$type": "null"}),
            json!({"$size": 0}),
            json!({"$regex": ""}),
            json!({"$not": {"$eq": 5}}),
        ] {
            assert!(!m(json!({"x": cond.clone()}), json!({"y": 1})), "{cond}");
        }
        assert!(!m(json!({"$not": {"x": 5}}), json!({})));
        assert!(!m(json!({"$nor": [{"x": 5}]}), json!({})));
        assert!(m(json!({"x": {"$exists": false}}), json!({"y": 0})));
        assert!(!m(json!({"x": {"$exists": false}}), json!({"x": 0})));
        assert!(m(json!({"$not": {"x": {"$exists": true}}}), json!({})));
        // `$not` of `$exists: true` plus another condition does match a missing field.
        let s = json!({"x": {"$not": {"$exists": true, "$eq": 0}}});
        assert!(m(s.clone(), json!({"x": 1})));
        assert!(!m(s.clone(), json!({"x": 0})));
        assert!(m(s, json!({})));
        // A path through a non-object is a bad path: nothing matches, not even $exists:false.
        assert!(!m(json!({"x.y": {"$exists": false}}), json!({"x": 5})));
        assert!(m(json!({"x.y": {"$exists": false}}), json!({"x": {}})));
    }

    #[test]
    fn combination_operators() {
        let x = |v: Value| json!({"x": v});
        let and = json!({"x": {"$and": [{"$gt": 3}, {"$lt": 7}]}});
        assert_eq!(
            [6, 2, 9].map(|v| m(and.clone(), x(json!(v)))),
            [true, false, false]
        );
        assert!(!m(and, json!({})));
        let not_and = json!({"x": {"$not": {"$and": [{"$gt": 3}, {"$lt": 7}]}}});
        assert_eq!(
            [6, 2, 9].map(|v| m(not_and.clone(), x(json!(v)))),
            [false, true, true]
        );
        assert!(!m(not_and, json!({})));
        let or = json!({"x": {"$or": [{"$lt": 3}, {"$gt": 7}]}});
        assert_eq!(
            [6, 2, 9].map(|v| m(or.clone(), x(json!(v)))),
            [false, true, true]
        );
        let not_or = json!({"x": {"$not": {"$or": [{"$lt": 3}, {"$gt": 7}]}}});
        assert_eq!(
            [6, 2, 9].map(|v| m(not_or.clone(), x(json!(v)))),
            [true, false, false]
        );
        assert!(!m(not_or, json!({})));
        let nor = json!({"x": {"$nor": [{"$lt": 3}, {"$gt": 7}]}});
        assert_eq!(
            [6, 2, 9].map(|v| m(nor.clone(), x(json!(v)))),
            [true, false, false]
        );
        assert!(!m(nor, json!({})));
        // Empty lists match anything, even when negated or the field is missing.
        for s in [
            json!({"x": {"$and": []}}),
            json!({"x": {"$or": []}}),
            json!({"x": {"$nor": []}}),
            json!({"x": {"$not": {"$and": []}}}),
            json!({"x": {"$not": {"$or": []}}}),
        ] {
            assert!(
                m(s.clone(), json!({"x": 0})) && m(s.clone(), json!({})),
                "{s}"
            );
        }
        let top = json!({"$or": [{"type": "a"}, {"$and": [{"type": "b"}, {"n": {"$gt": 1}}]}]});
        assert!(m(top.clone(), json!({"type": "a"})));
        assert!(m(top.clone(), json!({"type": "b", "n": 2})));
        assert!(!m(top, json!({"type": "b", "n": 1})));
        assert!(m(json!({"$not": {"$not": {"x": 1}}}), x(json!(1))));
    }

    #[test]
    fn in_and_nin() {
        let cands = json!([42, false, "bar", [["nested"], "list"], {"b": 2}]);
        let cases = [
            (true, json!(42)),
            (true, json!(false)),
            (true, json!("bar")),
            (true, json!({"b": 2})),
            (false, json!(43)),
            (false, json!(true)),
            (false, json!("bars")),
            (false, json!({"b": 2, "c": 3})),
            (true, json!([0, 42])),
            (true, json!([0, {"b": 2}])),
            (false, json!([["nested"], "list"])),
            (true, json!([0, [["nested"], "list"]])),
        ];
        check(json!({"$in": cands.clone()}), &cases);
        let flipped: Vec<_> = cases.iter().map(|(b, v)| (!b, v.clone())).collect();
        check(json!({"$nin": cands}), &flipped);
        check(
            json!({"$in": []}),
            &[(false, json!(0)), (false, json!("foo"))],
        );
        check(
            json!({"$nin": []}),
            &[(true, json!(0)), (true, json!("foo"))],
        );
    }

    #[test]
    fn all_operator() {
        check(
            json!({"$all": []}),
            &[
                (false, json!([])),
                (false, json!([42])),
                (false, json!({})),
                (false, json!("foo")),
            ],
        );
        check(
            json!({"$all": [1, 2, 3, 4]}),
            &[
                (true, json!([3, 2, 4, 1])),
                (true, json!([0, 4, 3, 5, 2, 1, 6])),
                (false, json!([3, 2, 4])),
                (false, json!([])),
            ],
        );
        check(
            json!({"$all": [[1, 2, 3, 4]]}),
            &[
                (true, json!([1, 2, 3, 4])),
                (false, json!([4, 3, 2, 1])),
                (false, json!([])),
                (true, json!([5, [1, 2, 3, 4], 6])),
                (false, json!([5, [1, 3, 4], 6])),
            ],
        );
        check(
            json!({"$all": ["hello"]}),
            &[
                (false, json!("hello")),
                (true, json!(["hello"])),
                (true, json!([0, "hello", 1])),
            ],
        );
        check(
            json!({"$all": [{"a": 1}]}),
            &[
                (true, json!([{"a": 1}])),
                (false, json!([{"a": 1, "b": 2}])),
            ],
        );
        assert!(m(
            json!({"genre": {"$all": ["Comedy", "Short"]}}),
            json!({"genre": ["Short", "Drama", "Comedy"]})
        ));
    }

    #[test]
    fn exists_type_regex_beginswith() {
        check(
            json!({"$type": "null"}),
            &[
                (true, json!(null)),
                (false, json!(false)),
                (false, json!({})),
            ],
        );
        check(
            json!({"$type": "boolean"}),
            &[(true, json!(true)), (true, json!(false)), (false, json!(0))],
        );
        check(
            json!({"$type": "number"}),
            &[
                (true, json!(42)),
                (true, json!(2.5)),
                (false, json!([1])),
                (false, json!("1")),
            ],
        );
        check(
            json!({"$type": "string"}),
            &[(true, json!("")), (false, json!([]))],
        );
        check(
            json!({"$type": "array"}),
            &[(true, json!([])), (false, json!({})), (false, json!("hi"))],
        );
        check(
            json!({"$type": "object"}),
            &[
                (true, json!({})),
                (true, json!({"a": 1})),
                (false, json!(null)),
            ],
        );
        check(
            json!({"$regex": "^[0-9a-f]+$"}),
            &[
                (false, json!("")),
                (true, json!("3a0df5e")),
                (false, json!("3a0gf5e")),
                (false, json!(42)),
            ],
        );
        check(
            json!({"$regex": "ell"}),
            &[(true, json!("hello")), (false, json!(["hello"]))],
        );
        check(
            json!({"$beginsWith": "foo"}),
            &[
                (true, json!("foo")),
                (true, json!("food")),
                (false, json!("more food")),
                (false, json!("fo")),
                (false, json!(42)),
            ],
        );
        check(
            json!({"$exists": true}),
            &[(true, json!(null)), (true, json!(0))],
        );
    }

    #[test]
    fn size_and_mod() {
        check(
            json!({"$mod": [28, 1]}),
            &[
                (true, json!(1)),
                (true, json!(29)),
                (true, json!(57)),
                (false, json!(58)),
                (false, json!("57")),
            ],
        );
        check(
            json!({"$mod": [2, 1]}),
            &[
                (false, json!(3.0)),
                (false, json!(3.5)),
                (true, json!(-3 + 4)),
            ],
        );
        check(
            json!({"$mod": [2, -1]}),
            &[(true, json!(-3)), (false, json!(3))],
        );
        check(
            json!({"$size": 3}),
            &[
                (false, json!(3)),
                (false, json!("fun")),
                (true, json!([0, 0, 0])),
                (false, json!([0, 0])),
                (false, json!([0, 0, 0, 0])),
            ],
        );
    }

    #[test]
    fn elem_all_keymap_match() {
        check(
            json!({"$elemMatch": {"$eq": 0}}),
            &[
                (false, json!([])),
                (true, json!([0])),
                (false, json!([1])),
                (true, json!([0, 1])),
                (false, json!(0)),
            ],
        );
        check(
            json!({"$allMatch": {"$eq": 0}}),
            &[
                (false, json!([])),
                (true, json!([0])),
                (false, json!([1])),
                (false, json!([0, 1])),
            ],
        );
        check(
            json!({"$elemMatch": {"$ne": 0}}),
            &[
                (false, json!([])),
                (false, json!([0])),
                (true, json!([1])),
                (true, json!([0, 1])),
            ],
        );
        check(
            json!({"$keyMapMatch": {"$regex": "^[a-z]+$"}}),
            &[
                (true, json!({"hello": 0})),
                (true, json!({"a": 1, "b4": 2})),
                (false, json!({"b4": 2})),
                (false, json!({})),
            ],
        );
        let doc = json!({"genre": [{"name": "Horror", "y": 1980}, {"name": "Comedy", "y": 1990}]});
        assert!(m(
            json!({"genre": {"$elemMatch": {"name": "Comedy", "y": {"$gt": 1985}}}}),
            doc.clone()
        ));
        assert!(!m(
            json!({"genre": {"$elemMatch": {"name": "Horror", "y": {"$gt": 1985}}}}),
            doc.clone()
        ));
        assert!(m(
            json!({"genre": {"$allMatch": {"y": {"$gte": 1980, "$lt": 2000}}}}),
            doc.clone()
        ));
        assert!(!m(json!({"genre": {"$allMatch": {"name": "Horror"}}}), doc));
        check(
            json!({"$elemMatch": {"$gte": 80, "$lt": 85}}),
            &[(true, json!([70, 82])), (false, json!([70, 90]))],
        );
    }

    #[test]
    fn id_compares_raw_like_couchdb() {
        // Bytewise: "B" < "a", unlike the collation of other fields.
        assert!(m(json!({"_id": {"$lt": "a"}}), json!({"_id": "B"})));
        assert!(!m(json!({"name": {"$lt": "a"}}), json!({"name": "B"})));
        // Erlang term order: every string is above null and objects.
        assert!(m(json!({"_id": {"$gt": null}}), json!({"_id": "x"})));
        assert!(m(json!({"_id": {"$gt": {}}}), json!({"_id": "x"})));
    }
}
