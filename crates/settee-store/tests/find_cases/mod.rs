//! Random Mango cases for the differential tests (`find_differential.rs` against
//! pouchdb-find, and the root package's `find_couchdb.rs` against CouchDB): datasets of
//! documents with nested fields, arrays, mixed types and missing fields, random JSON
//! indexes, and random queries (selectors, sorts, limits, skips).
//!
//! The generator stays where CouchDB's rules and pouchdb-find's agree. Where they differ,
//! Settee follows CouchDB, and `find_couchdb.rs` checks each difference against CouchDB's
//! `_find` and pouchdb-find; the generator avoids them:
//!
//! - strings use lowercase letters, digits and spaces only (PouchDB compares UTF-16 code
//!   units, CouchDB uses ICU: `"B" < "a"` there, `"a" < "B"` here);
//! - `$ne`, `$nin`, `$not` and `$nor` only test fields every document has, never null
//!   (pouchdb-find matches documents missing the field, CouchDB does not; `$nin` matches
//!   null in CouchDB only);
//! - equality with `null`, arrays and objects is written `$eq` (pouchdb-find reads
//!   `{"a": [1, 2]}` as conditions on `a.0` and `a.1`, and `{"a": {}}` as "match nothing");
//!   `$in` lists hold no null; `$all` is never empty and holds no arrays (CouchDB: `$all: []`
//!   matches nothing, `$all: [[1, 2]]` matches the array itself); floats have a fraction
//!   (`$mod` matches `4.0` in pouchdb-find only); no `$beginsWith` or `$keyMapMatch`
//!   (pouchdb-find has neither) and no `$not` inside a field's condition (pouchdb-find has
//!   it only at the top);
//! - an explicit `$and` is the whole selector (pouchdb-find drops the fields beside it), and
//!   does not combine `$eq` with another comparison of the same field (pouchdb-find keeps
//!   only the `$eq`);
//! - indexes are on fields every document has, or start with a nested field (pouchdb-find's
//!   indexes on a top-level field hold documents without it under `null`, and it uses an
//!   index whose later columns the selector does not require, where CouchDB scans), and
//!   always end with `_id`; `$exists: false` tests neither an indexed field nor a nested one
//!   (through a scalar, `{"c": 7}`, CouchDB's path is "bad" and matches nothing, where
//!   pouchdb-find finds the field missing);
//! - a sort is exactly an index's columns (ending with `_id`, so the order is total and does
//!   not depend on which index serves it); its selector requires each column and names
//!   `_id` with `$exists: true` (pouchdb-find matches an index only when the selector's
//!   fields line up with its columns, and with a range on `_id` it drops the exclusive bound
//!   of a `$gt` on the column before); a column has a range only when the ones before it
//!   have `$eq` (pouchdb-find loses the exclusive bound of a range after a range), two
//!   bounds are a lower and an upper one (it drops one of two on the same side), and a
//!   descending sort's columns have no `$gt` (read backwards, it keeps the bound); in a
//!   query without a sort, the first ranged column of an index has only inclusive bounds
//!   when a later column of that index has a range too (pouchdb-find uses the index and
//!   loses the exclusive bound);
//! - queries without a sort are compared as sets, without limit or skip: their order is the
//!   order of whichever index each planner picks.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

/// How a query's answers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Same documents in the same order.
    Ordered,
    /// Same documents.
    Set,
    /// Both fail.
    Error,
}

/// One `_find` request and how to compare its answers.
#[derive(Debug, Clone)]
pub struct Query {
    pub body: Value,
    pub compare: Compare,
}

/// Documents, the indexes to create on them, and queries.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub docs: Vec<Value>,
    pub indexes: Vec<Value>,
    pub queries: Vec<Query>,
}

/// The indexes a dataset may have: columns, and the nested or always-present field each
/// column is.
const INDEXES: &[&[&str]] = &[
    &["k", "_id"],
    &["s", "_id"],
    &["c.d", "_id"],
    &["k", "s", "_id"],
    &["c.d", "k", "_id"],
];

fn word(rng: &mut StdRng) -> String {
    const CHARS: &[u8] = b"abcde012 ";
    let len = rng.gen_range(1..4);
    let mut s: String = (0..len)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len() - 1)]))
        .collect();
    if rng.gen_ratio(1, 8) {
        s.insert(s.len() / 2, ' ');
    }
    s
}

fn number(rng: &mut StdRng) -> Value {
    if rng.gen_bool(0.75) {
        json!(rng.gen_range(-3..10))
    } else {
        json!(f64::from(rng.gen_range(-6..20)) + 0.5)
    }
}

/// A scalar of any type (no null).
fn scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..6) {
        0 => json!(rng.gen_bool(0.5)),
        1 | 2 => number(rng),
        _ => json!(word(rng)),
    }
}

const TAGS: &[&str] = &["red", "green", "blue", "red green"];

fn doc(rng: &mut StdRng, id: usize) -> Value {
    let mut d = Map::new();
    d.insert("_id".into(), json!(format!("d{id:03}")));
    d.insert("k".into(), json!(rng.gen_range(0..5)));
    d.insert("s".into(), json!(word(rng)));
    match rng.gen_range(0..10) {
        0 | 1 => {}
        2 => {
            d.insert("a".into(), Value::Null);
        }
        3 => {
            let n = rng.gen_range(0..4);
            d.insert(
                "a".into(),
                json!((0..n).map(|_| rng.gen_range(0..6)).collect::<Vec<_>>()),
            );
        }
        4 => {
            d.insert("a".into(), json!({"x": rng.gen_range(0..3)}));
        }
        _ => {
            d.insert("a".into(), scalar(rng));
        }
    }
    if rng.gen_bool(0.75) {
        d.insert("n".into(), number(rng));
    }
    match rng.gen_range(0..10) {
        0 => {}
        1 => {
            d.insert("c".into(), json!(7));
        }
        2 => {
            d.insert("c".into(), json!({"e": rng.gen_bool(0.5)}));
        }
        _ => {
            let dv = if rng.gen_bool(0.7) {
                json!(rng.gen_range(0..5))
            } else {
                json!(["x", "y", "z"][rng.gen_range(0..3)])
            };
            d.insert("c".into(), json!({"d": dv, "e": rng.gen_bool(0.5)}));
        }
    }
    if rng.gen_bool(0.6) {
        let n = rng.gen_range(0..4);
        let tags: Vec<&str> = (0..n).map(|_| TAGS[rng.gen_range(0..TAGS.len())]).collect();
        d.insert("tags".into(), json!(tags));
    }
    Value::Object(d)
}

/// A value to compare field `f` with: of the field's usual type most of the time.
fn operand(rng: &mut StdRng, f: &str) -> Value {
    match (f, rng.gen_range(0..5)) {
        (_, 0) => scalar(rng),
        ("k", _) => json!(rng.gen_range(-1..6)),
        ("s", _) => json!(word(rng)),
        ("c.d", _) if rng.gen_bool(0.5) => json!(["x", "y", "z"][rng.gen_range(0..3)]),
        ("c.d", _) => json!(rng.gen_range(0..5)),
        ("c.e", _) => json!(rng.gen_bool(0.5)),
        _ => number(rng),
    }
}

fn pick(rng: &mut StdRng, from: &[&'static str]) -> &'static str {
    from[rng.gen_range(0..from.len())]
}

fn cmp_op(rng: &mut StdRng) -> &'static str {
    ["$gt", "$gte", "$lt", "$lte"][rng.gen_range(0..4)]
}

/// A condition that requires `f` to exist (what a sorted column needs).
fn requiring(rng: &mut StdRng, f: &str) -> Value {
    match rng.gen_range(0..6) {
        0 => json!({"$exists": true}),
        1 => json!({"$eq": operand(rng, f)}),
        2 => {
            // A lower and an upper bound (pouchdb-find keeps one of two bounds on the same
            // side of an indexed field and drops the other).
            let lo = pick(rng, &["$gt", "$gte"]);
            let hi = pick(rng, &["$lt", "$lte"]);
            json!({lo: operand(rng, f), hi: operand(rng, f)})
        }
        _ => json!({cmp_op(rng): operand(rng, f)}),
    }
}

/// A condition on a field every document has, never null: any operator.
fn on_present(rng: &mut StdRng, f: &str) -> Value {
    match rng.gen_range(0..11) {
        0 => json!({"$ne": operand(rng, f)}),
        1 => json!({"$in": (0..rng.gen_range(0..4)).map(|_| operand(rng, f)).collect::<Vec<_>>()}),
        2 => json!({"$nin": (0..rng.gen_range(0..4)).map(|_| operand(rng, f)).collect::<Vec<_>>()}),
        3 => json!({"$type": pick(rng, &["number", "string"])}),
        4 if f == "k" => json!({"$mod": [rng.gen_range(2..4), rng.gen_range(0..2)]}),
        4 => json!({"$regex": pick(rng, &["^a", "b", "[0-2]", "^.$", " "])}),
        5 => operand(rng, f),
        _ => requiring(rng, f),
    }
}

/// A condition on a field that may be missing (or null, or of any type): only operators
/// that agree on missing fields.
fn on_sparse(rng: &mut StdRng, f: &str, indexed: bool) -> Value {
    match (f, rng.gen_range(0..11)) {
        (_, 0) if !indexed && !f.contains('.') => json!({"$exists": false}),
        (_, 1) => json!({"$exists": true}),
        (_, 2) => {
            json!({"$type": pick(rng, &["null", "boolean", "number", "string", "array", "object"])})
        }
        (_, 3) => {
            json!({"$in": (0..rng.gen_range(1..4)).map(|_| operand(rng, f)).collect::<Vec<_>>()})
        }
        ("tags", 4) => {
            json!({"$all": (0..rng.gen_range(1..3)).map(|_| TAGS[rng.gen_range(0..TAGS.len())]).collect::<Vec<_>>()})
        }
        ("tags", 5) => json!({"$elemMatch": {"$eq": TAGS[rng.gen_range(0..TAGS.len())]}}),
        ("tags", 6) => json!({"$allMatch": {"$regex": pick(rng, &["e", "^r", "^.{3,4}$"])}}),
        ("tags" | "a", 7) => json!({"$size": rng.gen_range(0..4)}),
        ("a", 4) => json!({"$elemMatch": {"$gt": rng.gen_range(0..5)}}),
        ("a", 5) => {
            let v = [json!([1, 2]), json!([]), json!({"x": 1}), Value::Null][rng.gen_range(0..4)]
                .clone();
            json!({"$eq": v})
        }
        ("a" | "n", 6) => json!({"$mod": [rng.gen_range(2..4), rng.gen_range(-1..2)]}),
        ("a" | "c.d", 8) => json!({"$regex": pick(rng, &["^a", "[0-2]", "x|y"])}),
        (_, 9) => {
            let v = operand(rng, f);
            json!({"$eq": v})
        }
        _ => requiring(rng, f),
    }
}

/// One field condition, `(field, condition)`, on any field.
fn condition(rng: &mut StdRng, indexed: &[&str]) -> (String, Value) {
    let f = ["k", "s", "a", "n", "c.d", "c.e", "tags"][rng.gen_range(0..7)];
    let c = match f {
        "k" | "s" => on_present(rng, f),
        _ => on_sparse(rng, f, indexed.contains(&f)),
    };
    (f.to_owned(), c)
}

/// A selector: a few field conditions, sometimes an `$or`, `$nor`, `$not` or explicit `$and`.
fn selector(rng: &mut StdRng, indexed: &[&str]) -> Map<String, Value> {
    let mut sel = Map::new();
    for _ in 0..rng.gen_range(1..4) {
        let (f, c) = condition(rng, indexed);
        sel.entry(f).or_insert(c);
    }
    match rng.gen_range(0..10) {
        0 => {
            let alts: Vec<Value> = (0..rng.gen_range(1..3))
                .map(|_| {
                    let (f, c) = condition(rng, indexed);
                    json!({ f: c })
                })
                .collect();
            sel.insert("$or".into(), json!(alts));
        }
        1 => {
            let f = ["k", "s"][rng.gen_range(0..2)];
            let c = on_present(rng, f);
            sel.insert("$nor".into(), json!([{ f: c }]));
        }
        2 => {
            let f = ["k", "s"][rng.gen_range(0..2)];
            let c = on_present(rng, f);
            sel.insert("$not".into(), json!({ f: c }));
        }
        3 => {
            // An explicit $and holds everything (pouchdb-find drops the fields beside one).
            let lo = rng.gen_range(-1..3);
            sel.remove("k");
            let mut all = vec![
                json!({"k": {"$gte": lo}}),
                json!({"k": {"$lte": lo + rng.gen_range(0..3)}}),
            ];
            all.extend(sel.iter().map(|(f, c)| json!({ f: c })));
            sel = Map::new();
            sel.insert("$and".into(), json!(all));
        }
        _ => {}
    }
    sel
}

/// Whether a top-level condition is a range (what pouchdb-find turns into key bounds).
fn is_range(cond: Option<&Value>) -> bool {
    cond.and_then(Value::as_object).is_some_and(|m| {
        ["$gt", "$gte", "$lt", "$lte"]
            .iter()
            .any(|op| m.contains_key(*op))
    })
}

/// Makes inclusive the exclusive bounds of the first ranged column of an index when a later
/// column of the same index has a range too: pouchdb-find then uses the index and loses the
/// exclusive bound (it returned `c.d = "x"` for `{"c.d": {"$gt": "x"}, "k": {"$gt": 0}}`
/// over `[c.d, k, _id]`), where CouchDB keeps it. The same rule as the sorted queries' "a
/// range on a later column only after an `$eq`", for queries without a sort.
fn inclusive_before_a_later_range(sel: &mut Map<String, Value>, indexes: &[&[&str]]) {
    for cols in indexes {
        let cols: Vec<&str> = cols.iter().copied().filter(|c| *c != "_id").collect();
        let Some(first) = cols.iter().position(|c| is_range(sel.get(*c))) else {
            continue;
        };
        if !cols[first + 1..].iter().any(|c| is_range(sel.get(*c))) {
            continue;
        }
        if let Some(m) = sel.get_mut(cols[first]).and_then(Value::as_object_mut) {
            for (from, to) in [("$gt", "$gte"), ("$lt", "$lte")] {
                if let Some(v) = m.remove(from) {
                    m.insert(to.into(), v);
                }
            }
        }
    }
}

/// A dataset from `seed`, with `queries` queries.
pub fn dataset(seed: u64, queries: usize) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids: Vec<usize> = (0..100).collect();
    ids.shuffle(&mut rng);
    let n = rng.gen_range(8..40);
    let docs: Vec<Value> = ids[..n].iter().map(|&i| doc(&mut rng, i)).collect();
    let mut chosen: Vec<&[&str]> = INDEXES.to_vec();
    chosen.shuffle(&mut rng);
    chosen.truncate(rng.gen_range(0..4));
    let indexes: Vec<Value> = chosen
        .iter()
        .map(|cols| {
            let name = cols.join("-").replace('.', "");
            json!({"index": {"fields": cols}, "ddoc": format!("i-{name}"), "name": name})
        })
        .collect();
    let indexed: Vec<&str> = chosen.iter().flat_map(|c| c.iter().copied()).collect();
    let mut out = Vec::with_capacity(queries);
    for _ in 0..queries {
        let pick = rng.gen_range(0..20);
        let q = if pick < 1 {
            // Errors: a sort no index serves; an unknown operator.
            if rng.gen_bool(0.5) {
                Query {
                    body: json!({"selector": {"n": {"$gt": 0}}, "sort": ["n"]}),
                    compare: Compare::Error,
                }
            } else {
                Query {
                    body: json!({"selector": {"k": {"$bogus": 1}}}),
                    compare: Compare::Error,
                }
            }
        } else if pick < 11 && !chosen.is_empty() {
            let cols = chosen[rng.gen_range(0..chosen.len())];
            let desc = rng.gen_bool(0.5);
            let mut sel = Map::new();
            let mut previous_eq = true;
            for col in cols.iter().filter(|c| **c != "_id") {
                // A range on a later column only after an `$eq` (pouchdb-find loses the
                // exclusive bound of a range that follows another range).
                let mut cond = if previous_eq {
                    requiring(&mut rng, col)
                } else {
                    json!({"$exists": true})
                };
                previous_eq = cond.get("$eq").is_some();
                if desc {
                    // pouchdb-find keeps the bound of a `$gt` read backwards.
                    if let Some(v) = cond.as_object_mut().and_then(|m| m.remove("$gt")) {
                        cond["$gte"] = v;
                    }
                }
                sel.insert((*col).into(), cond);
            }
            sel.insert("_id".into(), json!({"$exists": true}));
            for _ in 0..rng.gen_range(0..3) {
                let (f, c) = condition(&mut rng, &indexed);
                sel.entry(f).or_insert(c);
            }
            let dir = if desc { "desc" } else { "asc" };
            let sort: Vec<Value> = cols.iter().map(|c| json!({ *c: dir })).collect();
            Query {
                body: json!({"selector": sel, "sort": sort, "limit": rng.gen_range(1..13), "skip": rng.gen_range(0..5)}),
                compare: Compare::Ordered,
            }
        } else {
            let mut sel = selector(&mut rng, &indexed);
            inclusive_before_a_later_range(&mut sel, &chosen);
            Query {
                body: json!({"selector": sel, "limit": 10_000}),
                compare: Compare::Set,
            }
        };
        out.push(q);
    }
    Dataset {
        docs,
        indexes,
        queries: out,
    }
}
