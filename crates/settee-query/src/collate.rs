//! CouchDB's view collation of JSON values, and an order-preserving byte encoding of it for
//! index keys.
//!
//! The order is `null < false < true < numbers < strings < arrays < objects`; numbers
//! compare by value (as IEEE-754 doubles, as JavaScript and PouchDB do: CouchDB compares
//! integers beyond 2^53 exactly, Settee does not), strings with the ICU approximation of
//! `icu.rs`, arrays element by element (a prefix first), objects member by member in their
//! order (key, then value; fewer members first).
//!
//! [`encode_key`] turns a value into bytes whose bytewise order is that collation, so that a
//! sorted key-value store (sled) keeps an index in collation order. Each value's encoding is
//! self-delimiting: [`skip_key`] finds where it ends, so that an index entry can hold several
//! values followed by a document id.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::icu;

// Type tags of the key encoding, in collation order. END closes arrays and objects; MAX is
// above every value and only appears in range bounds.
const END: u8 = 0x00;
const NULL: u8 = 0x10;
const FALSE: u8 = 0x20;
const TRUE: u8 = 0x30;
const NUMBER: u8 = 0x40;
const STRING: u8 = 0x50;
const ARRAY: u8 = 0x60;
const OBJECT: u8 = 0x70;
/// A bound above every encoded value (CouchDB's `<MAX>` in range end keys).
pub const MAX_KEY_BYTE: u8 = 0xFF;

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

/// A number as the double it collates as (`-0` as `0`).
fn as_f64(n: &Number) -> f64 {
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        0.0
    } else {
        f
    }
}

fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    as_f64(a).total_cmp(&as_f64(b))
}

/// Compares two JSON values with CouchDB's view collation (see the module doc).
///
/// ```
/// use serde_json::json;
/// use settee_query::collate;
/// use std::cmp::Ordering::*;
/// assert_eq!(collate(&json!(null), &json!(false)), Less);
/// assert_eq!(collate(&json!(1), &json!(1.0)), Equal);
/// assert_eq!(collate(&json!(100), &json!("1")), Less);
/// assert_eq!(collate(&json!("a"), &json!("B")), Less); // ICU: letters before case
/// assert_eq!(collate(&json!([1, 2]), &json!([1, 2, 0])), Less);
/// assert_eq!(collate(&json!("z"), &json!([])), Less);
/// ```
pub fn collate(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => icu::compare(x, y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| collate(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => cmp_objects(x, y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn cmp_objects(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    x.iter()
        .zip(y)
        .map(|((ka, va), (kb, vb))| icu::compare(ka, kb).then_with(|| collate(va, vb)))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| x.len().cmp(&y.len()))
}

/// Erlang's term order, which CouchDB uses for the `_id` field (`mango_json:cmp_raw`):
/// strings bytewise, and across types number < atom (`false < null < true`) < object <
/// array < string.
pub(crate) fn cmp_raw(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::Bool(false) => 1,
            Value::Null => 2,
            Value::Bool(true) => 3,
            Value::Object(_) => 4,
            Value::Array(_) => 5,
            Value::String(_) => 6,
        }
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| cmp_raw(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .zip(y)
            .map(|((ka, va), (kb, vb))| {
                ka.as_bytes()
                    .cmp(kb.as_bytes())
                    .then_with(|| cmp_raw(va, vb))
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Appends the order-preserving encoding of `value` to `out`: for any values `a` and `b`,
/// the encodings compare bytewise as [`collate`] compares the values, and no encoding is a
/// prefix of another's.
///
/// ```
/// use serde_json::json;
/// let key = |v| { let mut k = Vec::new(); settee_query::encode_key(&v, &mut k); k };
/// assert!(key(json!(2)) < key(json!(10)));
/// assert!(key(json!("apple")) < key(json!("Banana")));
/// assert!(key(json!(["a", null])) < key(json!(["a", false])));
/// ```
pub fn encode_key(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            out.push(NUMBER);
            let bits = as_f64(n).to_bits();
            // Flip so that unsigned byte order is numeric order: negative numbers have every
            // bit inverted, positive ones only the sign bit.
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            icu::push_sort_key(s, out);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            for item in items {
                encode_key(item, out);
            }
            out.push(END);
        }
        Value::Object(map) => {
            out.push(OBJECT);
            for (k, v) in map {
                out.push(STRING);
                icu::push_sort_key(k, out);
                encode_key(v, out);
            }
            out.push(END);
        }
    }
}

/// The length of the encoded value at the start of `bytes`, or `None` if `bytes` does not
/// start with a whole encoded value.
pub fn skip_key(bytes: &[u8]) -> Option<usize> {
    let tag = *bytes.first()?;
    match tag {
        NULL | FALSE | TRUE => Some(1),
        NUMBER => (bytes.len() >= 9).then_some(9),
        STRING => skip_string(&bytes[1..]).map(|n| n + 1),
        ARRAY => {
            let mut at = 1;
            while *bytes.get(at)? != END {
                at += skip_key(&bytes[at..])?;
            }
            Some(at + 1)
        }
        OBJECT => {
            let mut at = 1;
            while *bytes.get(at)? != END {
                if bytes[at] != STRING {
                    return None;
                }
                at += 1 + skip_string(&bytes[at + 1..])?;
                at += skip_key(&bytes[at..])?;
            }
            Some(at + 1)
        }
        _ => None,
    }
}

/// A string sort key is three zero-terminated levels.
fn skip_string(bytes: &[u8]) -> Option<usize> {
    let mut zeros = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == 0 {
            zeros += 1;
            if zeros == 3 {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(v: &Value) -> Vec<u8> {
        let mut k = Vec::new();
        encode_key(v, &mut k);
        k
    }

    #[test]
    fn types_collate_in_couchdb_order() {
        let order = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1e300),
            json!(-3),
            json!(-0.5),
            json!(0),
            json!(1.5),
            json!(2),
            json!(1e300),
            json!(""),
            json!("a"),
            json!("A"),
            json!("b"),
            json!([]),
            json!([null]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"a": 2, "b": 0}),
            json!({"b": 0}),
        ];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(collate(a, b), i.cmp(&j), "{a} vs {b}");
                assert_eq!(key(a).cmp(&key(b)), i.cmp(&j), "keys of {a} vs {b}");
            }
        }
        assert_eq!(collate(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(key(&json!(-0.0)), key(&json!(0)));
    }

    #[test]
    fn skip_key_finds_each_value() {
        let values = [
            json!(null),
            json!(true),
            json!(3.5),
            json!("héllo"),
            json!(["x", [1, {"k": "v"}], {}]),
            json!({"a": [], "": null}),
        ];
        let mut all = Vec::new();
        for v in &values {
            encode_key(v, &mut all);
        }
        all.extend_from_slice(b"doc-id");
        let mut at = 0;
        for v in &values {
            let n = skip_key(&all[at..]).unwrap();
            assert_eq!(&all[at..at + n], key(v).as_slice());
            at += n;
        }
        assert_eq!(&all[at..], b"doc-id");
        assert_eq!(skip_key(&[NUMBER, 1, 2]), None);
        assert_eq!(skip_key(&[ARRAY, NULL]), None);
        assert_eq!(skip_key(&[MAX_KEY_BYTE]), None);
    }

    #[test]
    fn raw_order_is_erlang_term_order() {
        assert_eq!(cmp_raw(&json!("B"), &json!("a")), Ordering::Less);
        assert_eq!(cmp_raw(&json!("a"), &json!(null)), Ordering::Greater);
        assert_eq!(cmp_raw(&json!("a"), &json!({})), Ordering::Greater);
        assert_eq!(cmp_raw(&json!(false), &json!(null)), Ordering::Less);
        assert_eq!(cmp_raw(&json!(5), &json!(false)), Ordering::Less);
    }
}
