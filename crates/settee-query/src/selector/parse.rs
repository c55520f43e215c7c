//! Parsing and validating a selector: implicit operators made explicit (a bare value is
//! `$eq`, several keys are `$and`), nested field objects and dotted paths made one
//! [`FieldPath`] per condition, and every operator's argument checked as CouchDB checks it.

use regex::Regex;
use serde_json::Value;

use super::eval::int_of;
use super::{CmpOp, Cond, Node, Pattern};
use crate::field::FieldPath;
use crate::Error;

const TYPES: [&str; 6] = ["null", "boolean", "number", "string", "array", "object"];
const UNSUPPORTED: [&str; 7] = [
    "$where",
    "$geoWithin",
    "$geoIntersects",
    "$near",
    "$nearSphere",
    "$text",
    "$default",
];

fn bad_arg<T>(op: &str, arg: &Value, expected: &str) -> Result<T, Error> {
    Err(Error::selector(
        "bad_arg",
        format!("bad argument for operator {op}: {arg} (expected {expected})"),
    ))
}

/// Parses a selector (or a field's condition) that applies at `path`.
pub(super) fn parse_node(value: &Value, path: &FieldPath) -> Result<Node, Error> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let mut items = map.iter();
            match items.next() {
                Some((key, arg)) => parse_pair(key, arg, path),
                None => Ok(Node::All),
            }
        }
        Value::Object(map) if map.len() > 1 => map
            .iter()
            .map(|(key, arg)| parse_pair(key, arg, path))
            .collect::<Result<_, _>>()
            .map(Node::And),
        // A bare value (including `{}`) means equality.
        other => Ok(Node::Field(
            path.clone(),
            Cond::Cmp(CmpOp::Eq, other.clone()),
        )),
    }
}

fn parse_list(op: &str, arg: &Value, path: &FieldPath) -> Result<Vec<Node>, Error> {
    match arg {
        Value::Array(items) => items.iter().map(|item| parse_node(item, path)).collect(),
        _ => bad_arg(op, arg, "an array of selectors"),
    }
}

fn parse_sub(op: &str, arg: &Value) -> Result<Box<Node>, Error> {
    if !arg.is_object() {
        return bad_arg(op, arg, "a selector object");
    }
    Ok(Box::new(parse_node(
        arg,
        &FieldPath::from_segments(Vec::new()),
    )?))
}

fn array_arg(op: &str, arg: &Value) -> Result<Vec<Value>, Error> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => bad_arg(op, arg, "an array"),
    }
}

fn parse_pair(key: &str, arg: &Value, path: &FieldPath) -> Result<Node, Error> {
    let leaf = |cond| Ok(Node::Field(path.clone(), cond));
    let cmp = |op| leaf(Cond::Cmp(op, arg.clone()));
    match key {
        "$and" => Ok(Node::And(parse_list(key, arg, path)?)),
        "$or" => Ok(Node::Or(parse_list(key, arg, path)?)),
        "$nor" => Ok(Node::Nor(parse_list(key, arg, path)?)),
        "$not" if arg.is_object() => Ok(Node::Not(Box::new(parse_node(arg, path)?))),
        "$not" => bad_arg(key, arg, "a selector object"),
        "$elemMatch" => leaf(Cond::ElemMatch(parse_sub(key, arg)?)),
        "$allMatch" => leaf(Cond::AllMatch(parse_sub(key, arg)?)),
        "$keyMapMatch" => leaf(Cond::KeyMapMatch(parse_sub(key, arg)?)),
        "$eq" => cmp(CmpOp::Eq),
        "$ne" => cmp(CmpOp::Ne),
        "$lt" => cmp(CmpOp::Lt),
        "$lte" => cmp(CmpOp::Lte),
        "$gt" => cmp(CmpOp::Gt),
        "$gte" => cmp(CmpOp::Gte),
        "$in" => leaf(Cond::In(array_arg(key, arg)?)),
        "$nin" => leaf(Cond::Nin(array_arg(key, arg)?)),
        "$all" => leaf(Cond::All(array_arg(key, arg)?)),
        "$exists" => match arg {
            Value::Bool(b) => leaf(Cond::Exists(*b)),
            _ => bad_arg(key, arg, "a boolean"),
        },
        "$type" => match arg {
            Value::String(t) if TYPES.contains(&t.as_str()) => leaf(Cond::Type(t.clone())),
            _ => bad_arg(
                key,
                arg,
                "one of \"null\", \"boolean\", \"number\", \"string\", \"array\", \"object\"",
            ),
        },
        "$size" => match arg.as_u64() {
            Some(n) => leaf(Cond::Size(n)),
            None => bad_arg(key, arg, "a non-negative integer"),
        },
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([Value::Number(d), Value::Number(r)]) => match (int_of(d), int_of(r)) {
                (Some(d), Some(r)) if d != 0 => leaf(Cond::Mod(arg.clone(), d, r)),
                _ => bad_arg(
                    key,
                    arg,
                    "[divisor, remainder] integers with a non-zero divisor",
                ),
            },
            _ => bad_arg(
                key,
                arg,
                "[divisor, remainder] integers with a non-zero divisor",
            ),
        },
        "$regex" => match arg.as_str().map(Regex::new) {
            Some(Ok(re)) => leaf(Cond::Regex(Pattern(re))),
            Some(Err(e)) => Err(Error::selector(
                "bad_arg",
                format!("bad argument for operator $regex: {arg}: {e}"),
            )),
            None => bad_arg(key, arg, "a regular expression string"),
        },
        "$beginsWith" => match arg {
            Value::String(prefix) => leaf(Cond::BeginsWith(prefix.clone())),
            _ => bad_arg(key, arg, "a string"),
        },
        op if UNSUPPORTED.contains(&op) => Err(Error::selector(
            "not_supported",
            format!("unsupported operator: {op}"),
        )),
        op if op.starts_with('$') => Err(Error::selector(
            "invalid_operator",
            format!("invalid operator: {op}"),
        )),
        field => {
            let mut full = path.clone();
            full.extend(FieldPath::parse(field)?);
            parse_node(arg, &full)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::selector::tests::{m, reason};
    use crate::selector::Selector;
    use serde_json::{json, Value};

    #[test]
    fn implicit_eq_and_and() {
        let doc = json!({"_id": "foo", "_rev": "bar", "user_id": 11});
        assert!(m(json!({"user_id": 11}), doc.clone()));
        assert!(m(json!({"_id": "foo"}), doc.clone()));
        assert!(m(json!({"_id": "foo", "_rev": "bar"}), doc.clone()));
        assert!(!m(json!({"user_id": 1234}), doc.clone()));
        assert!(!m(json!({"user_id": "11"}), doc.clone()));
        assert!(!m(json!({"_id": "foo", "_rev": "quux"}), doc.clone()));
        assert!(m(json!({}), doc.clone()));
        assert!(m(
            json!({"_deleted": true}),
            json!({"_id": "a", "_deleted": true})
        ));
    }

    #[test]
    fn nested_objects_and_paths() {
        let d1 = json!({});
        let d2 = json!({"x": {}});
        let d3 = json!({"x": {"a": 1}});
        let d4 = json!({"x": {"a": 1, "b": 2}});
        let d5 = json!({"x": []});
        let all = [&d1, &d2, &d3, &d4, &d5];
        let run = |s: Value| {
            all.iter()
                .map(|d| m(s.clone(), (*d).clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(json!({"x": {}})), [false, true, false, false, false]);
        assert_eq!(
            run(json!({"$not": {"x": {}}})),
            [false, false, true, true, true]
        );
        assert_eq!(
            run(json!({"x": {"a": 1}})),
            [false, false, true, true, false]
        );
        assert_eq!(
            run(json!({"x": {"a": 1, "b": 2}})),
            [false, false, false, true, false]
        );
        assert_eq!(run(json!({"x.b": 2})), [false, false, false, true, false]);
        let deep = json!({"a": {"b": {"c": 3}}, "arr": [10, {"k": "v"}], "d.e": 1});
        assert!(m(json!({"a.b.c": {"$gte": 3}}), deep.clone()));
        assert!(m(json!({"a": {"b.c": 3}}), deep.clone()));
        assert!(m(json!({"arr.0": 10, "arr.1.k": "v"}), deep.clone()));
        assert!(!m(json!({"arr.2": {"$exists": false}}), deep.clone()));
        assert!(m(json!({"d\\.e": 1}), deep.clone()));
        assert!(!m(json!({"d.e": 1}), deep));
    }

    #[test]
    fn invalid_selectors() {
        let cases = [
            (json!({"x": {"$in": 1}}), "$in"),
            (json!({"x": {"$nin": "a"}}), "$nin"),
            (json!({"x": {"$all": {}}}), "$all"),
            (json!({"x": {"$size": "3"}}), "$size"),
            (json!({"x": {"$size": -1}}), "$size"),
            (json!({"x": {"$size": 1.5}}), "$size"),
            (json!({"x": {"$mod": [0, 1]}}), "$mod"),
            (json!({"x": {"$mod": [2]}}), "$mod"),
            (json!({"x": {"$mod": [2.5, 1]}}), "$mod"),
            (json!({"x": {"$mod": 2}}), "$mod"),
            (json!({"x": {"$regex": "("}}), "$regex"),
            (json!({"x": {"$regex": 5}}), "$regex"),
            (json!({"x": {"$type": "integer"}}), "$type"),
            (json!({"x": {"$type": 1}}), "$type"),
            (json!({"x": {"$exists": "yes"}}), "$exists"),
            (json!({"$and": {}}), "$and"),
            (json!({"$or": 1}), "$or"),
            (json!({"$nor": "x"}), "$nor"),
            (json!({"$not": [1]}), "$not"),
            (json!({"x": {"$elemMatch": 1}}), "$elemMatch"),
            (json!({"x": {"$allMatch": []}}), "$allMatch"),
            (json!({"x": {"$keyMapMatch": "a"}}), "$keyMapMatch"),
            (json!({"x": {"$beginsWith": 1}}), "$beginsWith"),
            (json!({"x": {"$foo": 1}}), "$foo"),
            (json!({"$where": "1"}), "$where"),
            (json!({"x": {"$elemMatch": {"$bar": 1}}}), "$bar"),
        ];
        for (s, op) in cases {
            let r = reason(s.clone());
            assert!(r.contains(op), "{s}: {r}");
        }
        assert!(reason(json!({"a..b": 1})).contains("a..b"));
        assert!(Selector::parse(&json!({"": 1})).is_err());
        assert!(Selector::parse(&json!({"$gt": 1})).is_err());
        assert!(Selector::parse(&json!([])).is_err());
        assert_eq!(
            Selector::parse(&json!(1)).unwrap_err().name(),
            "invalid_selector_json"
        );
        assert_eq!(
            Selector::parse(&json!({"x": {"$in": 1}}))
                .unwrap_err()
                .to_string(),
            "bad_arg: bad argument for operator $in: 1 (expected an array)"
        );
        assert_eq!(
            reason(json!({"$where": "1"})),
            "unsupported operator: $where"
        );
        assert_eq!(
            Selector::parse(&json!({"$gt": 1})).unwrap_err().name(),
            "invalid_selector"
        );
    }
}
