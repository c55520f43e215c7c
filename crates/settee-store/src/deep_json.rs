//! JSON nested deeper than serde_json's default recursion limit (128): CouchDB stores
//! documents nested to any depth, and a document Settee cannot parse cannot be served or
//! replicated. Parsing here grows the stack on the heap as it descends (`serde_stacker`), so
//! no depth aborts the process; values nested up to [`MAX_DEPTH`] levels are accepted, which
//! keeps every later walk of the value (serializing, cloning, comparing, dropping: all
//! recursive in serde_json) within a thread's default 2 MiB stack, even in a debug build.
//! Deeper text is refused with an error that says so, before anything is built.
//!
//! Bodies that stay text (the replicated-write path keeps a pulled document's JSON as it
//! came) are not limited: such a document is stored and pushed on whatever its depth, and
//! only opening it as a value reports its depth.

use serde::de::{DeserializeOwned, Error as _};

/// The deepest nesting of arrays and objects that is parsed into values.
pub const MAX_DEPTH: usize = 1000;

/// How deeply `text` nests arrays and objects (0 for a scalar), reading it once without
/// recursion. Brackets inside strings do not count. Meant for valid JSON; on anything else
/// it still ends and returns a number.
pub fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses JSON nested up to [`MAX_DEPTH`] levels (serde_json alone stops at 128); deeper
/// text is an error naming the limit.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let depth = nesting_depth(bytes);
    if depth > MAX_DEPTH {
        return Err(serde_json::Error::custom(format!(
            "the JSON is nested {depth} levels deep; Settee opens at most {MAX_DEPTH}"
        )));
    }
    if depth < 120 {
        return serde_json::from_slice(bytes);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// [`from_slice`] of a string.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;

    use super::*;

    fn nested(depth: usize) -> String {
        format!(
            "{{\"a\":{}{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a":"[[[[\"[["}"#), 1);
        assert_eq!(nesting_depth(nested(5000).as_bytes()), 5000);
    }

    #[test]
    fn parses_up_to_the_limit_and_refuses_past_it() {
        let deepest = nested(MAX_DEPTH);
        // serde_json alone refuses this.
        assert!(serde_json::from_str::<Value>(&deepest).is_err());
        // On a thread with the default stack of a spawned thread (2 MiB), as tokio's are.
        std::thread::spawn(move || {
            let v: Value = from_str(&deepest).unwrap();
            assert_eq!(v.to_string(), deepest);
            let copy = v.clone();
            assert_eq!(copy, v);
        })
        .join()
        .unwrap();
        let e = from_str::<Value>(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.to_string().contains("nested 1001 levels deep"), "{e}");
        // Far deeper text is refused as fast, without a stack overflow.
        assert!(from_str::<Value>(&nested(1_000_000)).is_err());
    }

    #[test]
    fn trailing_text_and_bad_json_are_errors() {
        assert!(from_str::<Value>(&format!("{} x", nested(300))).is_err());
        assert!(from_str::<Value>("{\"a\":").is_err());
        assert_eq!(from_str::<Value>("[1]").unwrap(), serde_json::json!([1]));
    }
}
