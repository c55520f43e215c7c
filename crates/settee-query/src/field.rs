//! Field paths: `"a.b.0"` names member `b` of member `a`, then element 0 of an array (or
//! member `"0"` of an object); `"a\.b"` names the member `"a.b"`. CouchDB's rules
//! (`mango_util:parse_field`, `mango_doc:get_field`/`set_field`).

use std::fmt;

use serde_json::{Map, Value};

use crate::Error;

/// A parsed field path: the member names (or array positions) from the document's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<String>);

/// What a path finds in a document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lookup<'a> {
    Found(&'a Value),
    /// A member is missing on the way.
    NotFound,
    /// The path goes through a scalar, or an array position that is not there.
    BadPath,
}

impl FieldPath {
    /// Parses a field name: dots not preceded by a backslash separate members, and the
    /// backslashes are then dropped.
    ///
    /// ```
    /// use settee_query::FieldPath;
    /// assert_eq!(FieldPath::parse("a.b")?.segments(), ["a", "b"]);
    /// assert_eq!(FieldPath::parse(r"a\.b")?.segments(), ["a.b"]);
    /// assert!(FieldPath::parse("a..b").is_err());
    /// # Ok::<(), settee_query::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Selector`] (`invalid_field_name`) for an empty name or an empty segment.
    pub fn parse(field: &str) -> Result<FieldPath, Error> {
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
            return Err(Error::selector(
                "invalid_field_name",
                format!("invalid field name {field:?}: it has an empty segment"),
            ));
        }
        Ok(FieldPath(
            parts.into_iter().map(|p| p.replace('\\', "")).collect(),
        ))
    }

    /// A path from segments taken as they are (no escaping).
    pub fn from_segments(segments: Vec<String>) -> FieldPath {
        FieldPath(segments)
    }

    /// The member names along the path.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether this is the top-level `_id` field.
    pub fn is_id(&self) -> bool {
        matches!(self.0.as_slice(), [one] if one == "_id")
    }

    pub(crate) fn extend(&mut self, more: FieldPath) {
        self.0.extend(more.0);
    }

    /// The value at this path in `doc`, if there is one.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        match self.lookup(doc) {
            Lookup::Found(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn lookup<'a>(&self, value: &'a Value) -> Lookup<'a> {
        let mut current = value;
        for name in &self.0 {
            current = match current {
                Value::Object(map) => match map.get(name) {
                    Some(v) => v,
                    None => return Lookup::NotFound,
                },
                Value::Array(items) => {
                    match name.parse::<usize>().ok().and_then(|i| items.get(i)) {
                        Some(v) => v,
                        None => return Lookup::BadPath,
                    }
                }
                _ => return Lookup::BadPath,
            };
        }
        Lookup::Found(current)
    }

    /// Sets the value at this path in `doc`, creating objects on the way (how `fields`
    /// builds the projected documents). A scalar on the way is replaced by an object.
    pub(crate) fn set(&self, doc: &mut Map<String, Value>, value: Value) {
        let Some((last, init)) = self.0.split_last() else {
            return;
        };
        let mut current = doc;
        for name in init {
            let slot = current
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            current = match slot {
                Value::Object(m) => m,
                // INVARIANT: the slot was made an object just above.
                _ => return,
            };
        }
        current.insert(last.clone(), value);
    }
}

/// Joins the segments with dots, escaping dots inside them (the inverse of
/// [`FieldPath::parse`] for names without backslashes).
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&seg.replace('.', "\\."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_follows_members_and_positions() {
        let doc = json!({"a": {"b": [10, {"c": 1}]}, "d.e": 2, "n": 5});
        let p = |s: &str| FieldPath::parse(s).unwrap();
        assert_eq!(p("a.b.1.c").get(&doc), Some(&json!(1)));
        assert_eq!(p("a.b.0").get(&doc), Some(&json!(10)));
        assert_eq!(p(r"d\.e").get(&doc), Some(&json!(2)));
        assert_eq!(p("a.x").lookup(&doc), Lookup::NotFound);
        assert_eq!(p("a.b.5").lookup(&doc), Lookup::BadPath);
        assert_eq!(p("n.x").lookup(&doc), Lookup::BadPath);
        assert_eq!(p(r"d\.e").to_string(), r"d\.e");
    }

    #[test]
    fn set_builds_nested_objects() {
        let mut doc = Map::new();
        FieldPath::parse("a.b").unwrap().set(&mut doc, json!(1));
        FieldPath::parse("a.c").unwrap().set(&mut doc, json!(2));
        FieldPath::parse("x").unwrap().set(&mut doc, json!(3));
        assert_eq!(Value::Object(doc), json!({"a": {"b": 1, "c": 2}, "x": 3}));
    }
}
