//! Query-string parameters as CouchDB reads them: booleans `true`/`false`, integers, JSON
//! values (`startkey`, `open_revs`, `atts_since`), and plain strings, with CouchDB's 400
//! replies for values it cannot read.

use percent_encoding::percent_decode_str;
use serde_json::Value;
use settee_revtree::Rev;

use crate::error::HttpError;

/// The decoded parameters of one request, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

fn query_parse_error(reason: String) -> HttpError {
    HttpError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "query_parse_error",
        reason,
    )
}

impl Query {
    /// Parses a raw query string (`a=1&b=%22x%22`).
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    /// The last value given for `name` (CouchDB takes the last).
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter as a JSON object of strings (the last value of a repeated name), as
    /// design document functions get them in `req.query`.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.pairs {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    /// Adds a parameter after the others (so it wins over an earlier one of that name).
    pub(crate) fn push(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }

    /// Whether `name` is given at all.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.str(name).is_some()
    }

    /// A boolean parameter (`true`/`false`); absent is `false`.
    pub(crate) fn bool(&self, name: &str) -> Result<bool, HttpError> {
        self.bool_or(name, false)
    }

    /// A boolean parameter with a default for when it is absent.
    pub(crate) fn bool_or(&self, name: &str, default: bool) -> Result<bool, HttpError> {
        match self.str(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(query_parse_error(format!(
                "Invalid boolean parameter: \"{other}\""
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub(crate) fn u64(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| query_parse_error(format!("Invalid value for integer: \"{v}\""))),
        }
    }

    /// A JSON-valued parameter (`startkey="a"`, `keys=["a","b"]`).
    pub(crate) fn json(&self, name: &str) -> Result<Option<Value>, HttpError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v)
                .map(Some)
                .map_err(|_| HttpError::invalid_json()),
        }
    }

    /// A revision parameter (`rev=2-abc`).
    pub(crate) fn rev(&self, name: &str) -> Result<Option<Rev>, HttpError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => parse_rev(v).map(Some),
        }
    }

    /// A JSON array of revisions (`atts_since=["1-a"]`, `open_revs=[...]`).
    pub(crate) fn revs(&self, name: &str) -> Result<Option<Vec<Rev>>, HttpError> {
        match self.json(name)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => parse_rev(s),
                    _ => Err(HttpError::bad_request("Invalid rev format")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(HttpError::bad_request(format!(
                "`{name}` must be a JSON array of revisions"
            ))),
        }
    }
}

/// Parses a revision with CouchDB's 400 reply for a malformed one.
pub(crate) fn parse_rev(s: &str) -> Result<Rev, HttpError> {
    s.parse::<Rev>()
        .map_err(|_| HttpError::bad_request("Invalid rev format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_boolean_parameters_decode_like_couchdb() {
        let q = Query::parse(Some("startkey=%22a+b%22&descending=true&limit=5&x=1&x=2"));
        assert_eq!(q.json("startkey").unwrap(), Some(Value::from("a b")));
        assert!(q.bool("descending").unwrap());
        assert_eq!(q.u64("limit").unwrap(), Some(5));
        assert_eq!(q.str("x"), Some("2"));
        let bad = Query::parse(Some("descending=yes&limit=-1"));
        assert_eq!(
            bad.bool("descending").unwrap_err().error,
            "query_parse_error"
        );
        assert_eq!(bad.u64("limit").unwrap_err().error, "query_parse_error");
    }
}
