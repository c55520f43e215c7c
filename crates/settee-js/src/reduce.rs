//! CouchDB's built-in reduce functions (`_count`, `_sum`, `_stats`,
//! `_approx_count_distinct`), computed in Rust, and the `keys` argument a JavaScript reduce
//! function gets (in-process or in a worker).

use std::collections::HashSet;

use serde_json::{json, Map, Number, Value};

use crate::error::{Error, Result};

/// The `keys` a JavaScript reduce function gets: the rows' `[key, doc id]` pairs, or `null`
/// on a rereduce (CouchDB's `reduce(keys, values, rereduce)`).
pub(crate) fn reduce_keys(keys: &[(Value, String)], rereduce: bool) -> Value {
    if rereduce {
        return Value::Null;
    }
    Value::Array(
        keys.iter()
            .map(|(k, id)| Value::Array(vec![k.clone(), Value::String(id.clone())]))
            .collect(),
    )
}

/// A built-in reduce function, named in a view's `reduce` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `_count`: the number of rows.
    Count,
    /// `_sum`: the sum of the values (numbers, arrays of numbers summed element by element,
    /// or objects summed member by member).
    Sum,
    /// `_stats`: `{sum, count, min, max, sumsqr}` of numeric values.
    Stats,
    /// `_approx_count_distinct`: how many distinct keys. Settee counts exactly, and only
    /// without rereduce (on rereduce it adds the counts, which may count a key twice).
    ApproxCountDistinct,
}

impl Builtin {
    /// The built-in a view's `reduce` source names, if it names one. CouchDB matches the
    /// start of the source, so `_sum\n` is `_sum` too.
    pub fn parse(source: &str) -> Option<Builtin> {
        let s = source.trim();
        [
            ("_approx_count_distinct", Builtin::ApproxCountDistinct),
            ("_count", Builtin::Count),
            ("_sum", Builtin::Sum),
            ("_stats", Builtin::Stats),
        ]
        .into_iter()
        .find(|(name, _)| s.starts_with(name))
        .map(|(_, b)| b)
    }

    /// The function's name (`_sum`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Count => "_count",
            Builtin::Sum => "_sum",
            Builtin::Stats => "_stats",
            Builtin::ApproxCountDistinct => "_approx_count_distinct",
        }
    }

    /// Reduces rows (`keys` and `values` side by side) or, with `rereduce`, earlier
    /// reductions (`values`; `keys` ignored).
    pub fn reduce(self, keys: &[Value], values: &[Value], rereduce: bool) -> Result<Value> {
        match (self, rereduce) {
            (Builtin::Count, false) => Ok(Value::from(values.len() as u64)),
            (Builtin::Count, true) | (Builtin::ApproxCountDistinct, true) | (Builtin::Sum, _) => {
                let mut total = Value::from(0);
                for v in values {
                    total = match add(&total, v) {
                        Ok(sum) => sum,
                        Err(Unsummable::Mismatch) => return Err(self.error(v)),
                        Err(Unsummable::Overflow) => return Err(self.overflow()),
                    };
                }
                Ok(total)
            }
            (Builtin::Stats, _) => {
                let mut acc: Option<Stats> = None;
                for v in values {
                    let s = Stats::of(v).ok_or_else(|| self.error(v))?;
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.merge(s),
                    });
                }
                let acc = acc.unwrap_or_else(Stats::empty);
                if !acc.is_finite() {
                    return Err(self.overflow());
                }
                Ok(acc.to_json())
            }
            (Builtin::ApproxCountDistinct, false) => {
                let distinct: HashSet<String> = keys.iter().map(Value::to_string).collect();
                Ok(Value::from(distinct.len() as u64))
            }
        }
    }

    /// CouchDB's `badarith`: a sum past the largest double (Erlang's float arithmetic
    /// fails there, where JavaScript would give Infinity, which JSON cannot hold).
    fn overflow(self) -> Error {
        Error::Arithmetic {
            origin: self.name().to_owned(),
            reason: format!(
                "{} overflowed: the values add up past the largest number JSON can hold",
                self.name()
            ),
        }
    }

    fn error(self, value: &Value) -> Error {
        let wants = match self {
            Builtin::Stats => "numbers or objects with sum, count, min, max and sumsqr",
            _ => "numbers, arrays of numbers, or objects of those (not mixed)",
        };
        Error::BuiltinReduce {
            origin: self.name().to_owned(),
            reason: format!("{} needs the view's values to be {wants}", self.name()),
            caused_by: value.clone(),
        }
    }
}

/// Why `_sum` cannot add two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsummable {
    /// Not numbers, arrays or objects of numbers (or mixed).
    Mismatch,
    /// The sum is past the largest double.
    Overflow,
}

/// Exact integer arithmetic while it fits, floating point otherwise.
fn add_numbers(a: &Number, b: &Number) -> Result<Number, Unsummable> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return Ok(Number::from(s));
        }
    }
    let s = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    Number::from_f64(s).ok_or(Unsummable::Overflow)
}

/// `_sum` of two values.
fn add(a: &Value, b: &Value) -> Result<Value, Unsummable> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => add_numbers(x, y).map(Value::Number),
        (Value::Array(x), Value::Array(y)) => {
            let n = x.len().max(y.len());
            let zero = Value::from(0);
            (0..n)
                .map(|i| {
                    let l = x.get(i).unwrap_or(&zero);
                    let r = y.get(i).unwrap_or(&zero);
                    match (l, r) {
                        (Value::Number(_), Value::Number(_)) => add(l, r),
                        _ => Err(Unsummable::Mismatch),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        (Value::Number(_), Value::Array(_)) if is_zero(a) => Ok(b.clone()),
        (Value::Number(_), Value::Array(_)) => add(&Value::Array(vec![a.clone()]), b),
        (Value::Array(_), Value::Number(_)) => add(a, &Value::Array(vec![b.clone()])),
        (Value::Number(_), Value::Object(_)) if is_zero(a) => add(&Value::Object(Map::new()), b),
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let sum = match out.get(k) {
                    Some(old) => add(old, v)?,
                    None => match v {
                        Value::Number(_) | Value::Array(_) | Value::Object(_) => v.clone(),
                        _ => return Err(Unsummable::Mismatch),
                    },
                };
                out.insert(k.clone(), sum);
            }
            Ok(Value::Object(out))
        }
        _ => Err(Unsummable::Mismatch),
    }
}

fn is_zero(v: &Value) -> bool {
    v.as_i64() == Some(0)
}

/// `_stats`'s accumulator.
#[derive(Debug, Clone, Copy)]
struct Stats {
    sum: f64,
    count: f64,
    min: f64,
    max: f64,
    sumsqr: f64,
}

impl Stats {
    fn empty() -> Stats {
        Stats {
            sum: 0.0,
            count: 0.0,
            min: 0.0,
            max: 0.0,
            sumsqr: 0.0,
        }
    }

    fn of(v: &Value) -> Option<Stats> {
        if let Some(x) = v.as_f64() {
            return Some(Stats {
                sum: x,
                count: 1.0,
                min: x,
                max: x,
                sumsqr: x * x,
            });
        }
        let m = v.as_object()?;
        let field = |name: &str| m.get(name).and_then(Value::as_f64);
        Some(Stats {
            sum: field("sum")?,
            count: field("count")?,
            min: field("min")?,
            max: field("max")?,
            sumsqr: field("sumsqr")?,
        })
    }

    fn is_finite(&self) -> bool {
        [self.sum, self.count, self.min, self.max, self.sumsqr]
            .iter()
            .all(|x| x.is_finite())
    }

    fn merge(self, o: Stats) -> Stats {
        Stats {
            sum: self.sum + o.sum,
            count: self.count + o.count,
            min: self.min.min(o.min),
            max: self.max.max(o.max),
            sumsqr: self.sumsqr + o.sumsqr,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "sum": number(self.sum),
            "count": number(self.count),
            "min": number(self.min),
            "max": number(self.max),
            "sumsqr": number(self.sumsqr),
        })
    }
}

/// An integral float as a JSON integer (as CouchDB prints sums of integers).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_recognised_by_their_prefix() {
        assert_eq!(Builtin::parse("_sum"), Some(Builtin::Sum));
        assert_eq!(Builtin::parse(" _count\n"), Some(Builtin::Count));
        assert_eq!(
            Builtin::parse("_approx_count_distinct"),
            Some(Builtin::ApproxCountDistinct)
        );
        assert_eq!(Builtin::parse("function (k, v) {}"), None);
    }

    #[test]
    fn count_counts_rows_and_adds_counts_on_rereduce() {
        let v = [json!("a"), json!(null), json!(3)];
        assert_eq!(Builtin::Count.reduce(&[], &v, false).unwrap(), json!(3));
        assert_eq!(
            Builtin::Count
                .reduce(&[], &[json!(3), json!(4)], true)
                .unwrap(),
            json!(7)
        );
    }

    #[test]
    fn sum_adds_numbers_arrays_and_objects() {
        let s = |v: &[Value]| Builtin::Sum.reduce(&[], v, false);
        assert_eq!(s(&[json!(1), json!(2), json!(3)]).unwrap(), json!(6));
        assert_eq!(s(&[json!(1.5), json!(2)]).unwrap(), json!(3.5));
        assert_eq!(s(&[json!([1, 2]), json!([3])]).unwrap(), json!([4, 2]));
        assert_eq!(
            s(&[json!({"a": 1}), json!({"a": 2, "b": [1]})]).unwrap(),
            json!({"a": 3, "b": [1]})
        );
        assert_eq!(s(&[]).unwrap(), json!(0));
        match s(&[json!(1), json!("x")]).unwrap_err() {
            Error::BuiltinReduce { caused_by, .. } => assert_eq!(caused_by, json!("x")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sums_past_the_largest_double_fail_as_couchdbs_badarith() {
        for values in [
            vec![json!(1e308), json!(1e308)],
            vec![json!([1e308, 1]), json!([1e308, 1])],
            vec![json!({"a": 1e308}), json!({"a": 1e308})],
        ] {
            let e = Builtin::Sum.reduce(&[], &values, false).unwrap_err();
            assert_eq!(e.name(), "badarith", "{values:?}");
        }
        let e = Builtin::Stats
            .reduce(&[], &[json!(1e308)], false)
            .unwrap_err();
        assert_eq!(e.name(), "badarith");
        // Integers past i64 are summed as doubles, which still fit.
        let big = Builtin::Sum
            .reduce(&[], &[json!(i64::MAX), json!(i64::MAX)], false)
            .unwrap();
        assert_eq!(big.as_f64(), Some(2.0 * i64::MAX as f64));
    }

    #[test]
    fn stats_summarise_numbers_and_merge_on_rereduce() {
        let r = Builtin::Stats
            .reduce(&[], &[json!(1), json!(2), json!(3)], false)
            .unwrap();
        assert_eq!(
            r,
            json!({"sum": 6, "count": 3, "min": 1, "max": 3, "sumsqr": 14})
        );
        let again = Builtin::Stats.reduce(&[], &[r.clone(), r], true).unwrap();
        assert_eq!(
            again,
            json!({"sum": 12, "count": 6, "min": 1, "max": 3, "sumsqr": 28})
        );
        assert!(Builtin::Stats.reduce(&[], &[json!("x")], false).is_err());
    }

    #[test]
    fn approx_count_distinct_counts_distinct_keys() {
        let keys = [json!("a"), json!("b"), json!("a"), json!(["a"])];
        let values = vec![Value::Null; 4];
        assert_eq!(
            Builtin::ApproxCountDistinct
                .reduce(&keys, &values, false)
                .unwrap(),
            json!(3)
        );
    }
}
