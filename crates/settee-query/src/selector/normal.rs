//! The normal form of a selector: negations pushed down to the conditions, and the JSON
//! it prints as (`_explain`, and the canonical form a filtered replication's id hashes).

use serde_json::{Map, Value};

use super::{CmpOp, Cond, Node, Pattern};

/// Pushes `$not`/`$nor` down to the conditions (CouchDB's `norm_negations`).
/// Sub-selectors of `$elemMatch` and friends are left as written, as CouchDB
/// leaves them.
pub(super) fn normalize_negations(node: Node) -> Node {
    match node {
        Node::Not(inner) => negate(*inner),
        Node::Nor(items) => Node::And(items.into_iter().map(negate).collect()),
        Node::And(items) => Node::And(items.into_iter().map(normalize_negations).collect()),
        Node::Or(items) => Node::Or(items.into_iter().map(normalize_negations).collect()),
        other => other,
    }
}

fn negate(node: Node) -> Node {
    match node {
        Node::Not(inner) => normalize_negations(*inner),
        Node::Nor(items) => Node::Or(items.into_iter().map(normalize_negations).collect()),
        Node::And(items) => Node::Or(items.into_iter().map(negate).collect()),
        Node::Or(items) => Node::And(items.into_iter().map(negate).collect()),
        Node::Field(path, cond) => Node::Field(path, negate_cond(cond)),
        Node::All => Node::Not(Box::new(Node::All)),
    }
}

fn negate_cond(cond: Cond) -> Cond {
    match cond {
        Cond::Cmp(op, arg) => {
            let op = match op {
                CmpOp::Eq => CmpOp::Ne,
                CmpOp::Ne => CmpOp::Eq,
                CmpOp::Lt => CmpOp::Gte,
                CmpOp::Lte => CmpOp::Gt,
                CmpOp::Gt => CmpOp::Lte,
                CmpOp::Gte => CmpOp::Lt,
            };
            Cond::Cmp(op, arg)
        }
        Cond::In(args) => Cond::Nin(args),
        Cond::Nin(args) => Cond::In(args),
        Cond::Exists(b) => Cond::Exists(!b),
        Cond::Not(inner) => *inner,
        other => Cond::Not(Box::new(other)),
    }
}

fn single(key: impl Into<String>, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Value::Object(map)
}

pub(super) fn node_to_json(node: &Node) -> Value {
    let list = |items: &[Node]| Value::Array(items.iter().map(node_to_json).collect());
    match node {
        Node::All => Value::Object(Map::new()),
        Node::And(items) => single("$and", list(items)),
        Node::Or(items) => single("$or", list(items)),
        Node::Nor(items) => single("$nor", list(items)),
        Node::Not(inner) => single("$not", node_to_json(inner)),
        // Operators straight under `$elemMatch` and the like apply to the element itself:
        // no field to name.
        Node::Field(path, cond) if path.segments().is_empty() => cond_to_json(cond),
        // `Display` escapes dots inside member names, so the form parses back to this path.
        Node::Field(path, cond) => single(path.to_string(), cond_to_json(cond)),
    }
}

fn cond_to_json(cond: &Cond) -> Value {
    match cond {
        Cond::Cmp(op, arg) => {
            let name = match op {
                CmpOp::Eq => "$eq",
                CmpOp::Ne => "$ne",
                CmpOp::Lt => "$lt",
                CmpOp::Lte => "$lte",
                CmpOp::Gt => "$gt",
                CmpOp::Gte => "$gte",
            };
            single(name, arg.clone())
        }
        Cond::In(args) => single("$in", Value::Array(args.clone())),
        Cond::Nin(args) => single("$nin", Value::Array(args.clone())),
        Cond::All(args) => single("$all", Value::Array(args.clone())),
        Cond::Exists(b) => single("$exists", Value::Bool(*b)),
        Cond::Type(t) => single("$type", Value::String(t.clone())),
        Cond::Regex(Pattern(re)) => single("$regex", Value::String(re.as_str().to_owned())),
        Cond::Size(n) => single("$size", Value::from(*n)),
        Cond::Mod(raw, _, _) => single("$mod", raw.clone()),
        Cond::BeginsWith(p) => single("$beginsWith", Value::String(p.clone())),
        Cond::ElemMatch(sub) => single("$elemMatch", node_to_json(sub)),
        Cond::AllMatch(sub) => single("$allMatch", node_to_json(sub)),
        Cond::KeyMapMatch(sub) => single("$keyMapMatch", node_to_json(sub)),
        Cond::Not(inner) => single("$not", cond_to_json(inner)),
    }
}

pub(super) fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use crate::selector::tests::sel;
    use crate::selector::Selector;
    use serde_json::json;

    /// Issue 20 (found by fuzzing): the normal form (`_explain`, replication ids) of a
    /// member name holding a dot, or of operators straight under `$elemMatch`, did not
    /// parse back: `{"a\\.b": 1}` became `a.b`, another field, and `$elemMatch: {"$eq":
    /// 1}` gained a field with an empty name.
    #[test]
    fn issue_20_normal_form_parses_back_to_the_same_selector() {
        for (given, normal) in [
            (json!({"a\\.b": 1}), json!({"a\\.b": {"$eq": 1}})),
            (json!({"x": {"y\\.z": 2}}), json!({"x.y\\.z": {"$eq": 2}})),
            (
                json!({"tags": {"$elemMatch": {"$eq": "t1"}}}),
                json!({"tags": {"$elemMatch": {"$eq": "t1"}}}),
            ),
            (
                json!({"l": {"$allMatch": {"$gt": 0, "$lt": 9}}}),
                json!({"l": {"$allMatch": {"$and": [{"$gt": 0}, {"$lt": 9}]}}}),
            ),
        ] {
            let s = sel(given.clone());
            assert_eq!(s.to_json(), normal, "normal form of {given}");
            let again = Selector::parse(&s.to_json()).unwrap();
            assert_eq!(again.to_json(), normal);
            let canonical = Selector::parse(&s.to_canonical_json()).unwrap();
            assert_eq!(canonical.to_canonical_json(), s.to_canonical_json());
        }
        let doc = json!({"a.b": 1, "a": {"b": 2}, "tags": ["t1"]});
        let dotted = sel(json!({"a\\.b": 1}));
        assert!(dotted.matches(&doc));
        assert!(Selector::parse(&dotted.to_json()).unwrap().matches(&doc));
        let elem = sel(json!({"tags": {"$elemMatch": {"$eq": "t1"}}}));
        assert!(Selector::parse(&elem.to_json()).unwrap().matches(&doc));
    }

    #[test]
    fn canonical_json() {
        let a = sel(json!({"b": 1, "a": {"c": {"$gt": 2}, "$exists": true}}));
        let b =
            sel(json!({"$and": [{"b": {"$eq": 1}}, {"a.c": {"$gt": 2}, "a": {"$exists": true}}]}));
        let canon = a.to_canonical_json();
        assert_eq!(
            serde_json::to_string(&canon).unwrap(),
            r#"{"$and":[{"b":{"$eq":1}},{"$and":[{"a.c":{"$gt":2}},{"a":{"$exists":true}}]}]}"#
        );
        assert_eq!(canon, b.to_canonical_json());
        assert_eq!(
            sel(json!({"$not": {"x": {"$lt": 3}}})).to_canonical_json(),
            json!({"x": {"$gte": 3}})
        );
        assert_eq!(
            sel(json!({"x": {"$eq": {"z": 1, "a": 2}}}))
                .to_canonical_json()
                .to_string(),
            r#"{"x":{"$eq":{"a":2,"z":1}}}"#
        );
        assert_eq!(sel(json!({})).to_canonical_json(), json!({}));
        assert_eq!(sel(json!({"x": 1})), sel(json!({"x": {"$eq": 1}})));
        let re = sel(json!({"x": {"$not": {"$regex": "^a"}}}));
        assert_eq!(
            re.to_canonical_json(),
            json!({"x": {"$not": {"$regex": "^a"}}})
        );
        assert_eq!(re.clone(), re);
    }
}
