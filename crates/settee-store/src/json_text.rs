//! Splitting the text of a JSON object into its top-level members without parsing it: the
//! replicated-write path keeps document bodies as text, and the text has already been
//! checked to be valid JSON (it comes as a `serde_json::value::RawValue`), so finding where
//! each member starts and ends is all that is left to do.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// One top-level member of an object's text.
pub(crate) struct Member<'a> {
    /// The name, unescaped.
    pub(crate) name: Cow<'a, str>,
    /// The whole member as written: `"name" : value`.
    pub(crate) text: &'a str,
    /// The value's text.
    pub(crate) value: &'a str,
}

/// The members of `json` in order, or `None` if it is not an object.
pub(crate) fn members(json: &RawValue) -> Option<Vec<Member<'_>>> {
    members_of_text(json.get())
}

/// [`members`] of text already known to be valid JSON (a body the store wrote).
pub(crate) fn members_of_text(text: &str) -> Option<Vec<Member<'_>>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut out = Vec::with_capacity(16);
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return Some(out),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let start = i;
        let name_end = end_of_string(b, i)?;
        let raw_name = &text[start + 1..name_end - 1];
        let name = if raw_name.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(&text[start..name_end]).ok()?)
        } else {
            Cow::Borrowed(raw_name)
        };
        i = skip_ws(b, name_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(b, i + 1);
        let value_end = end_of_value(b, value_start)?;
        out.push(Member {
            name,
            text: &text[start..value_end],
            value: &text[value_start..value_end],
        });
        i = value_end;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string that starts (with its quote) at `i`.
fn end_of_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        // An escape: the next byte is never the closing quote. `get` and not `[..]`: text
        // read back from disk may end inside an escape.
        i += 2;
        if i > b.len() {
            return None;
        }
    }
}

/// The index just past the value that starts at `i`.
fn end_of_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i = end_of_string(b, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i); // a scalar ended at its object's end
                }
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn split(text: &str) -> Option<Vec<(String, String, String)>> {
        let raw = RawValue::from_string(text.to_owned()).unwrap_or_else(|e| panic!("{text}: {e}"));
        members(&raw).map(|m| {
            m.into_iter()
                .map(|m| (m.name.into_owned(), m.text.to_owned(), m.value.to_owned()))
                .collect()
        })
    }

    /// Issue 20 (found by fuzzing): text ending inside an escape (`{"a\`) made the scanner
    /// slice past the end of its input. The scanner reads bodies back from disk, which may
    /// be damaged: such text is "not an object", never a panic.
    #[test]
    fn issue_20_text_ending_in_an_escape_is_not_an_object() {
        for text in [
            r#"{"\"#,
            r#"{"a\"#,
            r#"{"a":"\"#,
            r#"{"a":["x\"#,
            r#"{"a":1,"\"#,
        ] {
            assert!(members_of_text(text).is_none(), "{text:?}");
        }
        assert_eq!(members_of_text(r#"{"a\\":1}"#).map(|m| m.len()), Some(1));
    }

    #[test]
    fn members_of_objects_of_every_shape() {
        assert_eq!(split("{}"), Some(vec![]));
        assert_eq!(split(" { } "), Some(vec![]));
        let source = r#" { "a" : 1 , "b\"\\" :"x,}\"y" ,"c":{"d":[1,{"e":"]"}]},"f":[] ,"g":true,"h":null,"i":-1.5e3} "#;
        let got = split(source).unwrap();
        let names: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["a", "b\"\\", "c", "f", "g", "h", "i"]);
        let values: Vec<&str> = got.iter().map(|m| m.2.as_str()).collect();
        assert_eq!(
            values,
            [
                "1",
                r#""x,}\"y""#,
                r#"{"d":[1,{"e":"]"}]}"#,
                "[]",
                "true",
                "null",
                "-1.5e3"
            ]
        );
        assert_eq!(got[0].1, r#""a" : 1"#);
        assert_eq!(got[1].1, r#""b\"\\" :"x,}\"y""#);
        // Each member's text, joined, is the same object again.
        let joined = format!(
            "{{{}}}",
            got.iter()
                .map(|m| m.1.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&joined).unwrap(),
            serde_json::from_str::<Value>(source).unwrap()
        );
    }

    #[test]
    fn escaped_names_are_unescaped() {
        let got = split(r#"{"\u005fid":"x","caf\u00e9":1}"#).unwrap();
        assert_eq!(got[0].0, "_id");
        assert_eq!(got[1].0, "café");
    }

    #[test]
    fn not_an_object() {
        for t in ["[]", "1", "\"{}\"", "null", " [{\"a\":1}]"] {
            assert!(split(t).is_none(), "{t}");
        }
    }
}
