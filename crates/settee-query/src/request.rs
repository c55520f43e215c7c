//! A `_find` request, checked as CouchDB checks it (`mango_opts:validate_find`): the
//! selector, `fields`, `sort`, `limit` (default 25), `skip`, `bookmark`, `use_index`,
//! `conflicts`, `execution_stats`, `allow_fallback`, and the cluster options CouchDB
//! accepts and Settee ignores (`r`, `stale`, `update`, `stable`, `partition`).

use serde_json::{json, Map, Value};

use crate::field::FieldPath;
use crate::{Error, Result, Selector};

/// CouchDB's default `limit`.
pub const DEFAULT_LIMIT: usize = 25;

/// The sort of a query: fields, all in one direction (CouchDB supports no mixed sorts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sort {
    fields: Vec<(String, FieldPath)>,
    descending: bool,
}

impl Sort {
    /// Ascending on `fields`.
    ///
    /// # Errors
    /// [`Error::Request`] (`invalid_sort_field`) for an empty or malformed field name.
    pub fn asc<I, S>(fields: I) -> Result<Sort>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Sort::new(fields, false)
    }

    /// Descending on `fields`.
    ///
    /// # Errors
    /// As [`Sort::asc`].
    pub fn desc<I, S>(fields: I) -> Result<Sort>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Sort::new(fields, true)
    }

    fn new<I, S>(fields: I, descending: bool) -> Result<Sort>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let fields = fields
            .into_iter()
            .map(|f| {
                let name = f.into();
                let path = sort_path(&name)?;
                Ok((name, path))
            })
            .collect::<Result<_>>()?;
        Ok(Sort { fields, descending })
    }

    /// Parses CouchDB's `sort` member: an array of field names or `{"field": "asc"|"desc"}`.
    ///
    /// # Errors
    /// [`Error::Request`]: `invalid_sort_json`, `invalid_sort_field`, `invalid_sort_dir`,
    /// `unsupported_mixed_sort`.
    pub fn parse(value: &Value) -> Result<Sort> {
        let parsed = parse_sort_fields(value)?;
        let descending = parsed.first().is_some_and(|(_, _, d)| *d);
        Ok(Sort {
            fields: parsed.into_iter().map(|(n, p, _)| (n, p)).collect(),
            descending,
        })
    }

    /// Whether there is no sort.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether the sort is descending.
    pub fn is_descending(&self) -> bool {
        self.descending
    }

    /// The sorted fields' paths.
    pub fn paths(&self) -> impl Iterator<Item = &FieldPath> {
        self.fields.iter().map(|(_, p)| p)
    }

    /// CouchDB's JSON: `[{"field": "asc"}, ...]`.
    pub fn to_json(&self) -> Value {
        let dir = if self.descending { "desc" } else { "asc" };
        Value::Array(self.fields.iter().map(|(n, _)| json!({ n: dir })).collect())
    }
}

fn sort_path(name: &str) -> Result<FieldPath> {
    if name.is_empty() {
        return Err(Error::request(
            "invalid_sort_field",
            "Invalid sort field: \"\"",
        ));
    }
    FieldPath::parse(name).map_err(|e| Error::request("invalid_sort_field", e.reason().to_owned()))
}

/// Parses a list of fields with directions (index `fields` and `sort` share the format):
/// `(name, path, descending)` per field, all in one direction.
pub(crate) fn parse_sort_fields(value: &Value) -> Result<Vec<(String, FieldPath, bool)>> {
    let Value::Array(items) = value else {
        return Err(Error::request(
            "invalid_sort_json",
            format!("Sort must be an array of field names or {{\"field\": \"asc\"|\"desc\"}} objects, got {value}"),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (name, desc) = match item {
            Value::String(s) => (s.clone(), false),
            Value::Object(m) if m.len() == 1 => {
                let Some((name, dir)) = m.iter().next() else {
                    continue;
                };
                match dir.as_str() {
                    Some("asc") => (name.clone(), false),
                    Some("desc") => (name.clone(), true),
                    _ => {
                        return Err(Error::request(
                            "invalid_sort_dir",
                            format!(
                            "Invalid sort direction {dir} for {name:?}: use \"asc\" or \"desc\""
                        ),
                        ))
                    }
                }
            }
            other => {
                return Err(Error::request(
                    "invalid_sort_field",
                    format!("Invalid sort field: {other}"),
                ))
            }
        };
        let path = sort_path(&name)?;
        out.push((name, path, desc));
    }
    if out.windows(2).any(|w| w[0].2 != w[1].2) {
        return Err(Error::request(
            "unsupported_mixed_sort",
            "Sorts currently only support a single direction for all fields.",
        ));
    }
    Ok(out)
}

/// `use_index`: a design document, or a design document and an index name in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UseIndex {
    /// Let the planner choose.
    #[default]
    Any,
    /// Any index of this design document (`_design/` prefix optional).
    Ddoc(String),
    /// This index.
    Index(String, String),
}

impl UseIndex {
    fn parse(value: &Value) -> Result<UseIndex> {
        let bad = || Error::request("invalid_index_name", format!("Invalid index name: {value}"));
        let strip = |s: &str| s.strip_prefix("_design/").unwrap_or(s).to_owned();
        match value {
            Value::Null => Ok(UseIndex::Any),
            Value::String(s) => {
                let parts: Vec<&str> = s.split('/').collect();
                match parts.as_slice() {
                    [d] | ["_design", d] => Ok(UseIndex::Ddoc((*d).to_owned())),
                    [d, n] | ["_design", d, n] => {
                        Ok(UseIndex::Index((*d).to_owned(), (*n).to_owned()))
                    }
                    _ => Err(bad()),
                }
            }
            Value::Array(items) => match items.as_slice() {
                [] => Ok(UseIndex::Any),
                [Value::String(d)] => Ok(UseIndex::Ddoc(strip(d))),
                [Value::String(d), Value::String(n)] => Ok(UseIndex::Index(strip(d), n.clone())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// The design document id it names, `_design/...`.
    pub fn ddoc_id(&self) -> Option<String> {
        match self {
            UseIndex::Any => None,
            UseIndex::Ddoc(d) | UseIndex::Index(d, _) => Some(format!("_design/{d}")),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            UseIndex::Any => json!([]),
            UseIndex::Ddoc(d) => json!([d]),
            UseIndex::Index(d, n) => json!([d, n]),
        }
    }
}

/// A `_find` request.
///
/// ```
/// use serde_json::json;
/// use settee_query::{FindRequest, Selector, Sort};
/// let parsed = FindRequest::parse(&json!({"selector": {"type": "note"}, "sort": [{"t": "desc"}], "limit": 5}))?;
/// let built = FindRequest {
///     selector: Selector::parse(&json!({"type": "note"}))?,
///     sort: Sort::desc(["t"])?,
///     limit: 5,
///     ..Default::default()
/// };
/// assert_eq!(parsed.to_json(), built.to_json());
/// # Ok::<(), settee_query::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FindRequest {
    /// Which documents.
    pub selector: Selector,
    /// Which fields of them (`None`: whole documents).
    pub fields: Option<Vec<String>>,
    /// In which order (needs an index that serves it).
    pub sort: Sort,
    /// At most this many (CouchDB's default 25).
    pub limit: usize,
    /// After skipping this many matches.
    pub skip: usize,
    /// Continue after the last document of a previous page.
    pub bookmark: Option<String>,
    /// Which index to use.
    pub use_index: UseIndex,
    /// With `_conflicts` on documents that have them.
    pub conflicts: bool,
    /// With `execution_stats` in the answer.
    pub execution_stats: bool,
    /// Whether a query whose `use_index` cannot be used runs on another index (true, as in
    /// CouchDB) or fails.
    pub allow_fallback: bool,
}

impl Default for FindRequest {
    fn default() -> FindRequest {
        FindRequest {
            selector: Selector::all(),
            fields: None,
            sort: Sort::default(),
            limit: DEFAULT_LIMIT,
            skip: 0,
            bookmark: None,
            use_index: UseIndex::Any,
            conflicts: false,
            execution_stats: false,
            allow_fallback: true,
        }
    }
}

/// Rejects members not in `allowed` (`invalid_key`).
pub(crate) fn check_keys(map: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(bad) => Err(Error::request(
            "invalid_key",
            format!("Invalid key {bad} for this request."),
        )),
        None => Ok(()),
    }
}

fn non_neg(key: &str, v: &Value) -> Result<usize> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Error::request(
                "invalid_non_neg_integer",
                format!("{key}: {v} is not an integer greater than or equal to zero"),
            )
        })
}

fn boolean(key: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::request("invalid_boolean", format!("{key}: {v} is not a boolean")))
}

impl FindRequest {
    /// Parses and checks the body of a `POST /{db}/_find` (or `_explain`) request.
    ///
    /// # Errors
    /// [`Error::Request`] naming the bad member (`missing_required_key` for a missing
    /// selector, `invalid_key`, `invalid_non_neg_integer`, `invalid_boolean`,
    /// `invalid_fields`, `invalid_bookmark`, `invalid_index_name`, the sort errors of
    /// [`Sort::parse`]); [`Error::Selector`] for a bad selector.
    pub fn parse(body: &Value) -> Result<FindRequest> {
        let Value::Object(map) = body else {
            return Err(Error::request(
                "invalid_ejson",
                format!("the request must be a JSON object, got {body}"),
            ));
        };
        check_keys(
            map,
            &[
                "selector",
                "use_index",
                "bookmark",
                "limit",
                "skip",
                "sort",
                "fields",
                "partition",
                "r",
                "conflicts",
                "stale",
                "update",
                "stable",
                "execution_stats",
                "allow_fallback",
            ],
        )?;
        let selector = map.get("selector").ok_or_else(|| {
            Error::request("missing_required_key", "Missing required key: selector")
        })?;
        let mut req = FindRequest {
            selector: Selector::parse(selector)?,
            ..Default::default()
        };
        for (key, v) in map {
            match key.as_str() {
                "use_index" => req.use_index = UseIndex::parse(v)?,
                "bookmark" => {
                    req.bookmark = match v {
                        Value::Null => None,
                        Value::String(s) if s.is_empty() || s == "nil" => None,
                        Value::String(s) => Some(s.clone()),
                        other => {
                            return Err(Error::request(
                                "invalid_bookmark",
                                format!("Invalid bookmark value: {other}"),
                            ))
                        }
                    }
                }
                "limit" => req.limit = non_neg(key, v)?,
                "skip" => req.skip = non_neg(key, v)?,
                "sort" => req.sort = Sort::parse(v)?,
                "fields" => {
                    let Value::Array(items) = v else {
                        return Err(Error::request(
                            "invalid_fields",
                            format!("Fields must be an array of field names, got {v}"),
                        ));
                    };
                    let names = items
                        .iter()
                        .map(|f| match f {
                            Value::String(s) => FieldPath::parse(s).map(|_| s.clone()),
                            other => Err(Error::request(
                                "invalid_field",
                                format!("Invalid JSON for field spec: {other}"),
                            )),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    req.fields = (!names.is_empty()).then_some(names);
                }
                "conflicts" => req.conflicts = boolean(key, v)?,
                "execution_stats" => req.execution_stats = boolean(key, v)?,
                "allow_fallback" => req.allow_fallback = boolean(key, v)?,
                "update" | "stable" => {
                    boolean(key, v)?;
                }
                "r" if v.as_u64().is_none_or(|n| n == 0) => {
                    return Err(Error::request(
                        "invalid_pos_integer",
                        format!("r: {v} is not an integer greater than zero"),
                    ));
                }
                "stale" if !matches!(v, Value::Bool(false)) && v != "ok" && v != "false" => {
                    return Err(Error::request(
                        "invalid_ok_or_false_value",
                        format!("stale: {v} is not \"ok\" or false"),
                    ));
                }
                "partition" if v != "" => {
                    return Err(Error::request(
                        "invalid_partition",
                        "Settee databases are not partitioned",
                    ));
                }
                _ => {}
            }
        }
        Ok(req)
    }

    /// The fields to return, parsed (`None`: whole documents).
    pub fn field_paths(&self) -> Option<Vec<FieldPath>> {
        self.fields.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|n| FieldPath::parse(n).ok())
                .collect()
        })
    }

    /// The document as the answer shows it: whole, or only the requested `fields` (those it
    /// has), CouchDB's `mango_fields:extract`.
    ///
    /// ```
    /// use serde_json::json;
    /// let req = settee_query::FindRequest::parse(&json!({"selector": {}, "fields": ["_id", "a.b", "z"]}))?;
    /// assert_eq!(req.project(json!({"_id": "x", "a": {"b": 1, "c": 2}})), json!({"_id": "x", "a": {"b": 1}}));
    /// # Ok::<(), settee_query::Error>(())
    /// ```
    pub fn project(&self, doc: Value) -> Value {
        let Some(paths) = self.field_paths() else {
            return doc;
        };
        let mut out = Map::new();
        for p in &paths {
            if let Some(v) = p.get(&doc) {
                p.set(&mut out, v.clone());
            }
        }
        Value::Object(out)
    }

    /// The request as JSON, what CouchDB's `_find` takes.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("selector".into(), self.selector.to_json());
        if let Some(f) = &self.fields {
            m.insert("fields".into(), json!(f));
        }
        if !self.sort.is_empty() {
            m.insert("sort".into(), self.sort.to_json());
        }
        m.insert("limit".into(), json!(self.limit));
        if self.skip > 0 {
            m.insert("skip".into(), json!(self.skip));
        }
        if let Some(b) = &self.bookmark {
            m.insert("bookmark".into(), json!(b));
        }
        if self.use_index != UseIndex::Any {
            m.insert("use_index".into(), self.use_index.to_json());
        }
        if self.conflicts {
            m.insert("conflicts".into(), json!(true));
        }
        if self.execution_stats {
            m.insert("execution_stats".into(), json!(true));
        }
        if !self.allow_fallback {
            m.insert("allow_fallback".into(), json!(false));
        }
        Value::Object(m)
    }

    /// CouchDB's `opts` member of `_explain`.
    pub(crate) fn opts_json(&self) -> Value {
        let sort: Map<String, Value> = self
            .sort
            .fields
            .iter()
            .map(|(n, _)| {
                let dir = if self.sort.descending { "desc" } else { "asc" };
                (n.clone(), json!(dir))
            })
            .collect();
        json!({
            "use_index": self.use_index.to_json(),
            "bookmark": self.bookmark.clone().unwrap_or_else(|| "nil".into()),
            "limit": self.limit,
            "skip": self.skip,
            "sort": sort,
            "fields": self.fields.clone().unwrap_or_default(),
            "partition": "",
            "r": 1,
            "conflicts": self.conflicts,
            "stale": false,
            "update": true,
            "stable": false,
            "execution_stats": self.execution_stats,
            "allow_fallback": self.allow_fallback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: Value) -> Error {
        FindRequest::parse(&body).unwrap_err()
    }

    #[test]
    fn errors_use_couchdb_names() {
        assert_eq!(err(json!({})).name(), "missing_required_key");
        assert_eq!(
            err(json!({"selector": {}, "foo": 1})).to_string(),
            "invalid_key: Invalid key foo for this request."
        );
        assert_eq!(
            err(json!({"selector": {}, "limit": -1})).name(),
            "invalid_non_neg_integer"
        );
        assert_eq!(
            err(json!({"selector": {}, "skip": 1.5})).name(),
            "invalid_non_neg_integer"
        );
        assert_eq!(
            err(json!({"selector": {}, "sort": "a"})).name(),
            "invalid_sort_json"
        );
        assert_eq!(
            err(json!({"selector": {}, "sort": ["a", {"b": "desc"}]})).name(),
            "unsupported_mixed_sort"
        );
        assert_eq!(
            err(json!({"selector": {}, "sort": [{"b": "down"}]})).name(),
            "invalid_sort_dir"
        );
        assert_eq!(
            err(json!({"selector": {}, "sort": [""]})).name(),
            "invalid_sort_field"
        );
        assert_eq!(
            err(json!({"selector": {}, "fields": "a"})).name(),
            "invalid_fields"
        );
        assert_eq!(
            err(json!({"selector": {}, "use_index": 3})).name(),
            "invalid_index_name"
        );
        assert_eq!(
            err(json!({"selector": {}, "conflicts": "yes"})).name(),
            "invalid_boolean"
        );
        assert_eq!(
            err(json!({"selector": {"a": {"$bad": 1}}})).name(),
            "invalid_operator"
        );
        assert_eq!(err(json!({"selector": []})).name(), "invalid_selector_json");
    }

    #[test]
    fn options_parse_with_couchdb_defaults() {
        let r = FindRequest::parse(&json!({"selector": {"a": 1}})).unwrap();
        assert_eq!(
            (r.limit, r.skip, r.allow_fallback),
            (DEFAULT_LIMIT, 0, true)
        );
        let r = FindRequest::parse(&json!({
            "selector": {}, "sort": [{"a": "desc"}, {"b": "desc"}], "use_index": "_design/d/i",
            "bookmark": "nil", "fields": ["a", "b.c"], "r": 1, "stale": "ok", "limit": 0
        }))
        .unwrap();
        assert!(r.sort.is_descending());
        assert_eq!(r.use_index, UseIndex::Index("d".into(), "i".into()));
        assert_eq!(r.bookmark, None);
        assert_eq!(r.limit, 0);
        assert_eq!(r.field_paths().unwrap()[1].segments(), ["b", "c"]);
        assert_eq!(
            UseIndex::parse(&json!(["_design/d"]))
                .unwrap()
                .ddoc_id()
                .as_deref(),
            Some("_design/d")
        );
    }
}
