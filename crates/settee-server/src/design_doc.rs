//! The shape of a design document, checked before it is written, as CouchDB 3.5 checks it:
//! each known member has its type (`views` an object of objects with a `map`, `filters`
//! an object of strings or objects, `validate_doc_update` a string, ...), else 400
//! `invalid_design_doc` with CouchDB's reason. Compiling the functions is `validate.rs`'s.

use serde_json::{Map, Value};

use crate::error::HttpError;

/// What a member must be.
#[derive(Clone, Copy)]
enum Kind {
    Object,
    String,
    Boolean,
    /// `rewrites`: a list of rules or a function.
    ArrayOrString,
    /// A named function: its source, or an object (CouchDB lets either through).
    StringOrObject,
}

impl Kind {
    fn admits(self, v: &Value) -> bool {
        match self {
            Kind::Object => v.is_object(),
            Kind::String => v.is_string(),
            Kind::Boolean => v.is_boolean(),
            Kind::ArrayOrString => v.is_array() || v.is_string(),
            Kind::StringOrObject => v.is_string() || v.is_object(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::ArrayOrString => "array or string",
            Kind::StringOrObject => "string or object",
        }
    }
}

fn invalid(reason: String) -> HttpError {
    HttpError::bad_request(reason).named("invalid_design_doc")
}

/// `Err` unless `v` (the member at `path`) is of `kind`.
fn expect(path: &str, v: &Value, kind: Kind) -> Result<(), HttpError> {
    if kind.admits(v) {
        return Ok(());
    }
    Err(invalid(format!(
        "`{path}` field must have {} type",
        kind.name()
    )))
}

/// Checks the members of design document `doc` (a `_design/` id) in CouchDB's order
/// (alphabetical), so that a document with two faults gets CouchDB's reason.
pub(crate) fn check_fields(doc: &Map<String, Value>) -> Result<(), HttpError> {
    // Object members whose values are named functions.
    let named = |member: &str| -> Result<(), HttpError> {
        let Some(v) = doc.get(member) else {
            return Ok(());
        };
        expect(member, v, Kind::Object)?;
        for (name, f) in v.as_object().into_iter().flatten() {
            expect(&format!("{member}.{name}"), f, Kind::StringOrObject)?;
        }
        Ok(())
    };
    named("filters")?;
    if let Some(v) = doc.get("language") {
        expect("language", v, Kind::String)?;
    }
    named("lists")?;
    if let Some(v) = doc.get("options") {
        expect("options", v, Kind::Object)?;
        for key in ["include_design", "local_seq"] {
            if let Some(o) = v.get(key) {
                expect(&format!("options.{key}"), o, Kind::Boolean)?;
            }
        }
    }
    if let Some(v) = doc.get("rewrites") {
        expect("rewrites", v, Kind::ArrayOrString)?;
    }
    named("shows")?;
    named("updates")?;
    if let Some(v) = doc.get("validate_doc_update") {
        expect("validate_doc_update", v, Kind::String)?;
    }
    if let Some(v) = doc.get("views") {
        check_views(doc, v)?;
    }
    Ok(())
}

/// `views`: an object of views (and CommonJS `lib`, an object), each an object whose
/// `map` is a string (an object for Mango's `language: "query"`) and `reduce` a string.
/// Every member's type is checked before any view is found to lack its `map`, as CouchDB
/// does.
fn check_views(doc: &Map<String, Value>, views: &Value) -> Result<(), HttpError> {
    expect("views", views, Kind::Object)?;
    let map_kind = match doc.get("language").and_then(Value::as_str) {
        Some("query") => Kind::Object,
        _ => Kind::String,
    };
    let views = views.as_object().into_iter().flatten();
    for (name, view) in views.clone() {
        expect(&format!("views.{name}"), view, Kind::Object)?;
        if name == "lib" {
            continue;
        }
        if let Some(map) = view.get("map") {
            expect(&format!("views.{name}.map"), map, map_kind)?;
        }
        if let Some(reduce) = view.get("reduce") {
            expect(&format!("views.{name}.reduce"), reduce, Kind::String)?;
        }
    }
    for (name, view) in views {
        if name != "lib" && view.get("map").is_none() {
            return Err(invalid(format!("View `{name}` must contain map function")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(doc: Value) -> Option<String> {
        check_fields(doc.as_object().unwrap())
            .err()
            .map(|e| format!("{} {}", e.error, e.reason))
    }

    #[test]
    fn faults_get_couchdbs_reasons() {
        // Each answer checked against CouchDB 3.5.0.
        let cases = [
            (json!({"views": 5}), "`views` field must have object type"),
            (
                json!({"views": {"v": {}}}),
                "View `v` must contain map function",
            ),
            (
                json!({"views": {"v": {"map": 5}}}),
                "`views.v.map` field must have string type",
            ),
            (
                json!({"views": {"v": {"reduce": 5}}}),
                "`views.v.reduce` field must have string type",
            ),
            (
                json!({"filters": {"f": 5}}),
                "`filters.f` field must have string or object type",
            ),
            (
                json!({"validate_doc_update": 5}),
                "`validate_doc_update` field must have string type",
            ),
            (
                json!({"language": 5}),
                "`language` field must have string type",
            ),
            (
                json!({"views": 5, "filters": 5}),
                "`filters` field must have object type",
            ),
            (
                json!({"rewrites": 5}),
                "`rewrites` field must have array or string type",
            ),
            (
                json!({"options": {"local_seq": 5}}),
                "`options.local_seq` field must have boolean type",
            ),
            (
                json!({"language": "query", "views": {"v": {"map": "x"}}}),
                "`views.v.map` field must have object type",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(
                reason(doc.clone()),
                Some(format!("invalid_design_doc {want}")),
                "{doc}"
            );
        }
    }

    #[test]
    fn good_design_documents_pass() {
        for doc in [
            json!({"views": {"lib": {"a": "x"}, "v": {"map": "function(doc){}", "reduce": "_sum"}}}),
            json!({"filters": {"f": "function(){}", "g": {}}, "language": "python"}),
            json!({"language": "query", "views": {"v": {"map": {"fields": {"a": "asc"}}}}}),
            json!({"rewrites": [], "autoupdate": 5}),
        ] {
            assert_eq!(reason(doc.clone()), None, "{doc}");
        }
    }
}
