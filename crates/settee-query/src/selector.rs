//! Mango selectors: parsing, validating, normalising and evaluating them, as CouchDB's
//! `mango_selector` does, and what the planner needs to know about them (which fields they
//! constrain, to which ranges). One evaluator serves `find` and filtered replication.
//!
//! The pipeline:
//!
//! * implicit operators are made explicit (a bare value is `$eq`, several keys are `$and`),
//!   nested field objects and dotted paths (`"a.b"`, `"a\.b"` for a literal dot, `"a.0"` to
//!   index arrays) become one [`FieldPath`] per condition;
//! * `$not` and `$nor` are pushed down to the conditions (De Morgan, `$lt` ↔ `$gte`, `$in`
//!   ↔ `$nin`, `$exists` flipped), so a missing field never matches anything but
//!   `$exists: false`, even under a negation. As in CouchDB, selectors inside
//!   `$elemMatch`/`$allMatch`/`$keyMapMatch` keep their negations and evaluate them
//!   literally.
//!
//! Values are compared with CouchDB's view collation ([`crate::collate`]), except the
//! top-level `_id`, which CouchDB compares raw (bytewise for strings). `$regex` uses the
//! `regex` crate (an unanchored search, like Erlang's `re:run`) rather than PCRE, so
//! PCRE-only syntax such as look-around is rejected as invalid.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::collate::{cmp_raw, collate};
use crate::field::{FieldPath, Lookup};
use crate::Error;

/// A parsed, validated Mango selector.
///
/// ```
/// use serde_json::json;
/// use settee_query::Selector;
/// let s = Selector::parse(&json!({"notebook": "work", "tags": {"$all": ["urgent"]}}))?;
/// assert!(s.matches(&json!({"notebook": "work", "tags": ["urgent", "q3"]})));
/// assert!(!s.matches(&json!({"notebook": "home", "tags": ["urgent"]})));
/// let err = Selector::parse(&json!({"tags": {"$all": "urgent"}})).unwrap_err();
/// assert_eq!(err.name(), "bad_arg");
/// # Ok::<(), settee_query::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    root: Node,
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
    Field(FieldPath, Cond),
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

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
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
    fn full() -> Range {
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

impl Selector {
    /// Parses and validates a selector.
    ///
    /// # Errors
    /// [`Error::Selector`] naming the bad part: `invalid_selector_json` for a selector that
    /// is not an object; `invalid_operator` for an unknown operator; `not_supported` for
    /// `$where`, `$text` and the geo operators; `bad_arg` for an operand of the wrong type
    /// (`$in`, `$nin`, `$all` need arrays; `$size` a non-negative integer; `$mod` a
    /// `[divisor, remainder]` pair of integers with a non-zero divisor; `$regex` a valid
    /// regex string; `$type` one of `"null"`, `"boolean"`, `"number"`, `"string"`,
    /// `"array"`, `"object"`; `$exists` a boolean; `$beginsWith` a string; `$and`/`$or`/
    /// `$nor` arrays of selectors; `$not`, `$elemMatch`, `$allMatch`, `$keyMapMatch` a
    /// selector); `invalid_field_name` for an empty path segment; `invalid_selector` for a
    /// top-level condition without a field.
    pub fn parse(value: &Value) -> Result<Selector, Error> {
        let Value::Object(map) = value else {
            return Err(Error::selector(
                "invalid_selector_json",
                format!("the selector must be a JSON object, got {value}"),
            ));
        };
        if map.is_empty() {
            return Ok(Selector { root: Node::All });
        }
        let root = normalize_negations(parse_node(value, &FieldPath::from_segments(Vec::new()))?);
        if matches!(&root, Node::Field(path, _) if path.segments().is_empty()) {
            return Err(Error::selector(
                "invalid_selector",
                "one or more conditions is missing a field name",
            ));
        }
        Ok(Selector { root })
    }

    /// The empty selector `{}`, which matches every document.
    pub fn all() -> Selector {
        Selector { root: Node::All }
    }

    /// Whether this is the empty selector.
    pub fn is_empty(&self) -> bool {
        self.root == Node::All
    }

    /// Whether the document (a JSON object; `_id`, `_rev`, `_deleted` fields visible like
    /// any other) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        match_node(&self.root, doc)
    }

    /// The selector as JSON, normalised (used to compute replication ids): CouchDB's
    /// normal form (explicit operators, one dotted path per condition, negations pushed
    /// down) with object keys sorted recursively, so equivalent spellings of a selector give
    /// the same value.
    pub fn to_canonical_json(&self) -> Value {
        sort_keys(node_to_json(&self.root))
    }

    /// The selector in CouchDB's normal form, members in their given order (what
    /// `_explain` shows).
    pub fn to_json(&self) -> Value {
        node_to_json(&self.root)
    }

    /// The fields the selector's top-level `$and` constrains with operators an index can
    /// serve (`$eq`, `$lt`, `$lte`, `$gt`, `$gte`, `$beginsWith`, `$exists`), sorted
    /// (`mango_idx_view:indexable_fields`).
    pub(crate) fn indexable_fields(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        indexable_paths(&self.root, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// The range `field` is restricted to by the top-level `$and`, `None` when no value can
    /// match (`mango_idx_view:range`).
    pub(crate) fn range(&self, field: &FieldPath) -> Option<Range> {
        range_in(&self.root, field, Range::full())
    }

    /// Whether every matching document has all of `required` (`has_required_fields`).
    pub(crate) fn has_required_fields(&self, required: &[FieldPath]) -> bool {
        required_remainder(std::slice::from_ref(&self.root), required.to_vec()).is_empty()
    }

    /// Whether the top-level `$and` pins `field` to one value with `$eq`.
    pub(crate) fn is_constant_field(&self, field: &FieldPath) -> bool {
        is_constant(&self.root, field)
    }

    /// Every field the selector names (`mango_selector:fields`).
    pub(crate) fn fields(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        collect_fields(&self.root, &mut out);
        out
    }

    /// Whether the selector is a top-level `$and` or `$or` of nothing, which CouchDB answers
    /// with no documents without reading an index (`mango_cursor:maybe_noop_range`).
    pub(crate) fn is_noop(&self) -> bool {
        matches!(&self.root, Node::And(items) | Node::Or(items) if items.is_empty())
    }
}

// ---------------------------------------------------------------- parsing

/// Parses a selector (or a field's condition) that applies at `path`.
fn parse_node(value: &Value, path: &FieldPath) -> Result<Node, Error> {
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

/// How values are compared: CouchDB's collation, or raw term order for `_id`.
type CmpFn = fn(&Value, &Value) -> Ordering;

fn match_node(node: &Node, value: &Value) -> bool {
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

fn int_of(n: &Number) -> Option<i128> {
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

// ------------------------------------------------------ what the planner reads

fn indexable_paths(node: &Node, out: &mut Vec<FieldPath>) {
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

fn range_in(node: &Node, field: &FieldPath, r: Range) -> Option<Range> {
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
fn required_remainder(nodes: &[Node], mut required: Vec<FieldPath>) -> Vec<FieldPath> {
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

fn is_constant(node: &Node, field: &FieldPath) -> bool {
    match node {
        Node::And(items) => items.iter().any(|n| is_constant(n, field)),
        Node::Field(path, Cond::Cmp(CmpOp::Eq, _)) => path == field,
        _ => false,
    }
}

fn collect_fields(node: &Node, out: &mut Vec<FieldPath>) {
    match node {
        Node::And(items) | Node::Or(items) | Node::Nor(items) => {
            items.iter().for_each(|n| collect_fields(n, out))
        }
        Node::Not(inner) => collect_fields(inner, out),
        Node::Field(path, _) if !path.segments().is_empty() => out.push(path.clone()),
        Node::Field(..) | Node::All => {}
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
        Selector::parse(&s).unwrap_err().reason().to_owned()
    }

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

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
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
