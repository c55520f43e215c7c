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
//! Values are compared with CouchDB's view collation ([`crate::collate()`]), except the
//! top-level `_id`, which CouchDB compares raw (bytewise for strings). `$regex` uses the
//! `regex` crate (an unanchored search, like Erlang's `re:run`) rather than PCRE, so
//! PCRE-only syntax such as look-around is rejected as invalid.
//!
//! This module holds the selector's types and its public calls; the work is in
//! `parse` (parsing and validation), `normal` (negations pushed down, the JSON form),
//! `eval` (matching a document) and `ranges` (what the planner reads).

use regex::Regex;
use serde_json::Value;

use crate::field::FieldPath;
use crate::Error;

mod eval;
mod normal;
mod parse;
mod ranges;

use eval::match_node;
use normal::{node_to_json, normalize_negations, sort_keys};
use parse::parse_node;
use ranges::{collect_fields, indexable_paths, is_constant, range_in, required_remainder};
pub(crate) use ranges::{Bound, Range};

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

#[cfg(test)]
pub(crate) mod tests {
    //! Expected answers come from CouchDB's Mango documentation and the
    //! behaviour pinned down by `mango_selector`'s own tests. The helpers here serve the
    //! tests of every selector module.
    use super::*;
    use serde_json::json;

    pub(crate) fn sel(s: Value) -> Selector {
        Selector::parse(&s).unwrap()
    }

    pub(crate) fn m(s: Value, doc: Value) -> bool {
        sel(s).matches(&doc)
    }

    /// `{"x": cond}` must give `expected` on `{"x": value}`, and
    /// `{"x": {"$not": cond}}` the opposite (CouchDB's `check_selector`).
    pub(crate) fn check(cond: Value, cases: &[(bool, Value)]) {
        let pos = sel(json!({ "x": cond.clone() }));
        let neg = sel(json!({ "x": { "$not": cond } }));
        for (expected, value) in cases {
            let doc = json!({ "x": value });
            assert_eq!(pos.matches(&doc), *expected, "{pos:?} on {doc}");
            assert_eq!(neg.matches(&doc), !*expected, "{neg:?} on {doc}");
        }
    }

    pub(crate) fn reason(s: Value) -> String {
        Selector::parse(&s).unwrap_err().reason().to_owned()
    }

    pub(crate) fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }
}
