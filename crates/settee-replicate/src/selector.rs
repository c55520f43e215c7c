//! Mango selector evaluation for `filter=_selector` replications whose source
//! is the local store.
//!
//! This module owns parsing, validating, normalising and evaluating CouchDB
//! Mango selectors, so that a local source gives the same answers CouchDB
//! would give server-side. It follows CouchDB's `mango_selector` pipeline:
//!
//! * implicit operators are made explicit (a bare value is `$eq`, several keys
//!   are `$and`), nested field objects and dotted paths (`"a.b"`, `"a\.b"` for a
//!   literal dot, `"a.0"` to index arrays) become one path per condition;
//! * `$not` and `$nor` are pushed down to the conditions (De Morgan, `$lt` ↔
//!   `$gte`, `$in` ↔ `$nin`, `$exists` flipped), so a missing field never
//!   matches anything but `$exists: false`, even under a negation. As in
//!   CouchDB, selectors inside `$elemMatch`/`$allMatch`/`$keyMapMatch` keep
//!   their negations and evaluate them literally.
//!
//! Values are compared with CouchDB's view collation across types
//! (`null < false < true < numbers < strings < arrays < objects`; arrays
//! element-wise, objects key/value pair-wise in document order). CouchDB
//! compares strings with ICU collation; we approximate it by Unicode code point
//! order, so e.g. `"B" < "a"` here although ICU puts `"a"` first. `$regex` uses
//! the `regex` crate (an unanchored search, like Erlang `re:run`) rather than
//! PCRE, so PCRE-only syntax such as look-around is rejected as invalid.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Number, Value};

/// A parsed, validated Mango selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    root: Node,
}

/// Why a selector was rejected by [`Selector::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector: {reason}")]
pub struct SelectorError {
    /// Human-readable reason, naming the offending operator or field.
    pub reason: String,
}

/// A selector tree; field names only appear in `Field` leaves.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// The empty top-level selector: matches every document.
    All,
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Not(Box<Node>),
    /// A path (empty: the value itself) and the condition its value must meet.
    Field(Vec<String>, Cond),
}

/// A condition on one value.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    /// `$eq $ne $lt $lte $gt $gte` with its operand.
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(String),
    Regex(Pattern),
    Size(u64),
    /// `[divisor, remainder]` as given, and their integer values.
    Mod(Value, i128, i128),
    All(Vec<Value>),
    BeginsWith(String),
    ElemMatch(Box<Node>),
    AllMatch(Box<Node>),
    KeyMapMatch(Box<Node>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// A compiled regex, compared by its source text.
#[derive(Debug, Clone)]
struct Pattern(Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

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

fn err<T>(reason: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError {
        reason: reason.into(),
    })
}

fn bad_arg<T>(op: &str, expected: &str) -> Result<T, SelectorError> {
    err(format!("bad argument for {op}: expected {expected}"))
}

impl Selector {
    /// Parses and validates a selector.
    ///
    /// Unknown or unsupported operators, operands of the wrong type (`$in`,
    /// `$nin`, `$all` need arrays; `$size` a non-negative integer; `$mod` a
    /// `[divisor, remainder]` pair of integers with a non-zero divisor;
    /// `$regex` a valid regex string; `$type` one of `"null"`, `"boolean"`,
    /// `"number"`, `"string"`, `"array"`, `"object"`; `$exists` a boolean;
    /// `$and`/`$or`/`$nor` arrays of selectors; `$not`,
    /// `$elemMatch`, `$allMatch`, `$keyMapMatch` a selector), empty path
    /// segments and a top-level condition without a field are errors.
    pub fn parse(value: &Value) -> Result<Selector, SelectorError> {
        let Value::Object(map) = value else {
            return err("expected a JSON object");
        };
        if map.is_empty() {
            return Ok(Selector { root: Node::All });
        }
        let root = normalize_negations(parse_node(value, &[])?);
        if matches!(&root, Node::Field(path, _) if path.is_empty()) {
            return err("missing field name: a condition operator needs a field");
        }
        Ok(Selector { root })
    }

    /// Whether the document (a JSON object; `_id`, `_rev`, `_deleted` fields
    /// visible like any other) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match_node(&self.root, doc)
    }

    /// The selector as JSON, normalised (used to compute replication ids):
    /// CouchDB's normal form (explicit operators, one dotted path per
    /// condition, negations pushed down) with object keys sorted recursively,
    /// so equivalent spellings of a selector give the same value.
    pub fn to_canonical_json(&self) -> Value {
        sort_keys(node_to_json(&self.root))
    }
}

// ---------------------------------------------------------------- parsing

/// Parses a selector (or a field's condition) that applies at `path`.
fn parse_node(value: &Value, path: &[String]) -> Result<Node, SelectorError> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let mut items = map.iter();
            match items.next() {
                Some((key, arg)) => parse_pair(key, arg, path),
                None => err("empty selector"),
            }
        }
        Value::Object(map) if map.len() > 1 => map
            .iter()
            .map(|(key, arg)| parse_pair(key, arg, path))
            .collect::<Result<_, _>>()
            .map(Node::And),
        // A bare value (including `{}`) means equality.
        other => Ok(Node::Field(
            path.to_vec(),
            Cond::Cmp(CmpOp::Eq, other.clone()),
        )),
    }
}

fn parse_list(op: &str, arg: &Value, path: &[String]) -> Result<Vec<Node>, SelectorError> {
    match arg {
        Value::Array(items) => items.iter().map(|item| parse_node(item, path)).collect(),
        _ => bad_arg(op, "an array of selectors"),
    }
}

fn parse_sub(op: &str, arg: &Value) -> Result<Box<Node>, SelectorError> {
    if !arg.is_object() {
        return bad_arg(op, "a selector object");
    }
    Ok(Box::new(parse_node(arg, &[])?))
}

fn array_arg(op: &str, arg: &Value) -> Result<Vec<Value>, SelectorError> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => bad_arg(op, "an array"),
    }
}

fn parse_pair(key: &str, arg: &Value, path: &[String]) -> Result<Node, SelectorError> {
    let leaf = |cond| Ok(Node::Field(path.to_vec(), cond));
    let cmp = |op| leaf(Cond::Cmp(op, arg.clone()));
    match key {
        "$and" => Ok(Node::And(parse_list(key, arg, path)?)),
        "$or" => Ok(Node::Or(parse_list(key, arg, path)?)),
        "$nor" => Ok(Node::Nor(parse_list(key, arg, path)?)),
        "$not" if arg.is_object() => Ok(Node::Not(Box::new(parse_node(arg, path)?))),
        "$not" => bad_arg(key, "a selector object"),
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
            _ => bad_arg(key, "a boolean"),
        },
        "$type" => match arg {
            Value::String(t) if TYPES.contains(&t.as_str()) => leaf(Cond::Type(t.clone())),
            _ => bad_arg(
                key,
                "one of \"null\", \"boolean\", \"number\", \"string\", \"array\", \"object\"",
            ),
        },
        "$size" => match arg.as_u64() {
            Some(n) => leaf(Cond::Size(n)),
            None => bad_arg(key, "a non-negative integer"),
        },
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([Value::Number(d), Value::Number(r)]) => match (int_of(d), int_of(r)) {
                (Some(d), Some(r)) if d != 0 => leaf(Cond::Mod(arg.clone(), d, r)),
                _ => bad_arg(key, "[divisor, remainder] integers with a non-zero divisor"),
            },
            _ => bad_arg(key, "[divisor, remainder] integers with a non-zero divisor"),
        },
        "$regex" => match arg.as_str().map(Regex::new) {
            Some(Ok(re)) => leaf(Cond::Regex(Pattern(re))),
            Some(Err(e)) => err(format!("bad argument for $regex: {e}")),
            None => bad_arg(key, "a regular expression string"),
        },
        "$beginsWith" => match arg {
            Value::String(prefix) => leaf(Cond::BeginsWith(prefix.clone())),
            _ => bad_arg(key, "a string"),
        },
        op if UNSUPPORTED.contains(&op) => err(format!("operator {op} is not supported")),
        op if op.starts_with('$') => err(format!("unknown operator {op}")),
        field => {
            let mut full = path.to_vec();
            full.extend(parse_field(field)?);
            parse_node(arg, &full)
        }
    }
}

/// Splits a field name on dots not preceded by a backslash, then drops the
/// backslashes, as CouchDB's `mango_util:parse_field` does.
fn parse_field(field: &str) -> Result<Vec<String>, SelectorError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut prev = None;
    for c in field.chars() {
        if c == '.' && prev != Some('\\') {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
        prev = Some(c);
    }
    parts.push(current);
    if parts.iter().any(String::is_empty) {
        return err(format!("invalid field name {field:?}"));
    }
    Ok(parts.into_iter().map(|p| p.replace('\\', "")).collect())
}

// ---------------------------------------------------------- normalisation

/// Pushes `$not`/`$nor` down to the conditions (CouchDB's `norm_negations`).
/// Sub-selectors of `$elemMatch` and friends are left as written, as CouchDB
/// leaves them.
fn normalize_negations(node: Node) -> Node {
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

// --------------------------------------------------------------- matching

enum Lookup<'a> {
    Found(&'a Value),
    NotFound,
    BadPath,
}

/// Follows `path` like `mango_doc:get_field`: object keys, or array indexes.
fn lookup<'a>(value: &'a Value, path: &[String]) -> Lookup<'a> {
    let mut current = value;
    for name in path {
        current = match current {
            Value::Object(map) => match map.get(name) {
                Some(v) => v,
                None => return Lookup::NotFound,
            },
            Value::Array(items) => match name.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return Lookup::BadPath,
            },
            _ => return Lookup::BadPath,
        };
    }
    Lookup::Found(current)
}

fn match_node(node: &Node, value: &Value) -> bool {
    match node {
        Node::All => true,
        Node::And(items) => items.iter().all(|n| match_node(n, value)),
        Node::Or(items) => items.is_empty() || items.iter().any(|n| match_node(n, value)),
        Node::Nor(items) => !items.iter().any(|n| match_node(n, value)),
        Node::Not(inner) => !match_node(inner, value),
        Node::Field(path, cond) => match lookup(value, path) {
            Lookup::Found(v) => match_cond(cond, v),
            Lookup::NotFound => matches!(cond, Cond::Exists(false)),
            Lookup::BadPath => false,
        },
    }
}

fn match_cond(cond: &Cond, value: &Value) -> bool {
    match cond {
        Cond::Cmp(op, arg) => {
            let ord = collate(value, arg);
            match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Lte => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Gte => ord != Ordering::Less,
            }
        }
        Cond::In(args) => in_match(args, value),
        Cond::Nin(args) => !in_match(args, value),
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
            .is_some_and(|items| items.iter().any(|v| match_node(sub, v))),
        Cond::AllMatch(sub) => value
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(|v| match_node(sub, v))),
        Cond::KeyMapMatch(sub) => value.as_object().is_some_and(|map| {
            map.keys()
                .any(|k| match_node(sub, &Value::String(k.clone())))
        }),
        Cond::Not(inner) => !match_cond(inner, value),
    }
}

/// `$in`: an array field matches when one of its *elements* is a candidate
/// (the array itself is not compared), as in CouchDB.
fn in_match(args: &[Value], value: &Value) -> bool {
    let equal = |v: &Value| args.iter().any(|a| collate(v, a).is_eq());
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

fn int_of(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// CouchDB view collation, with strings in code point order (see module doc).
fn collate(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| collate(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .zip(y)
            .map(|((ka, va), (kb, vb))| ka.cmp(kb).then_with(|| collate(va, vb)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// Erlang term equality: `=:=` when `strict` (1 and 1.0 differ), `==`
/// otherwise; object members compared in order.
fn term_eq(a: &Value, b: &Value, strict: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if strict => {
            x.is_f64() == y.is_f64() && cmp_numbers(x, y).is_eq()
        }
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y).is_eq(),
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

// ------------------------------------------------------------ canonical form

fn single(key: impl Into<String>, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Value::Object(map)
}

fn node_to_json(node: &Node) -> Value {
    let list = |items: &[Node]| Value::Array(items.iter().map(node_to_json).collect());
    match node {
        Node::All => Value::Object(Map::new()),
        Node::And(items) => single("$and", list(items)),
        Node::Or(items) => single("$or", list(items)),
        Node::Nor(items) => single("$nor", list(items)),
        Node::Not(inner) => single("$not", node_to_json(inner)),
        Node::Field(path, cond) => single(path.join("."), cond_to_json(cond)),
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

fn sort_keys(value: Value) -> Value {
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
    //! Expected answers come from CouchDB's Mango documentation and the
    //! behaviour pinned down by `mango_selector`'s own tests.
    use super::*;
    use serde_json::json;

    fn sel(s: Value) -> Selector {
        Selector::parse(&s).unwrap()
    }

    fn m(s: Value, doc: Value) -> bool {
        sel(s).matches(&doc)
    }

    /// `{"x": cond}` must give `expected` on `{"x": value}`, and
    /// `{"x": {"$not": cond}}` the opposite (CouchDB's `check_selector`).
    fn check(cond: Value, cases: &[(bool, Value)]) {
        let pos = sel(json!({ "x": cond.clone() }));
        let neg = sel(json!({ "x": { "$not": cond } }));
        for (expected, value) in cases {
            let doc = json!({ "x": value });
            assert_eq!(pos.matches(&doc), *expected, "{pos:?} on {doc}");
            assert_eq!(neg.matches(&doc), !*expected, "{neg:?} on {doc}");
        }
    }

    fn reason(s: Value) -> String {
        Selector::parse(&s).unwrap_err().reason
    }

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
        // Code point approximation of ICU: uppercase sorts before lowercase.
        assert!(m(json!({"x": {"$lt": "a"}}), json!({"x": "B"})));
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
        assert_eq!(reason(json!(1)), "expected a JSON object");
        assert_eq!(
            Selector::parse(&json!({"x": {"$in": 1}}))
                .unwrap_err()
                .to_string(),
            "invalid selector: bad argument for $in: expected an array"
        );
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
