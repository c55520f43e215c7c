//! What a design document says about a view ([`ViewDef`], with the signature that names its
//! on-disk index), and the reduction of a query's rows by group (built-in reduces natively,
//! JavaScript ones in chunks then a rereduce). Keeping the index up to date is
//! `view_update.rs`'s; the rows themselves are the store's (`settee_store::ViewIndex`).

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{json, Value};
use settee_js::{Builtin, Function, Lease};
use settee_query::collate;
use settee_store::Database;

use crate::error::HttpError;
use crate::js;

/// Rows a JavaScript reduce function gets in one call before the results are rereduced.
const REDUCE_CHUNK: usize = 100;

/// What a view's design document says about it.
pub(crate) struct ViewDef {
    pub(crate) ddoc_id: String,
    pub(crate) map: String,
    pub(crate) reduce: Option<String>,
    /// What `require` in the map function loads from (`views.lib`).
    pub(crate) modules: Value,
    /// The runtime its functions run in.
    pub(crate) scope: settee_js::Scope,
    /// The name of its index ([`settee_store::view_signature`]).
    pub(crate) signature: String,
}

pub(crate) fn view_def(
    db: &Database,
    db_name: &str,
    ddoc: &str,
    view: &str,
) -> Result<ViewDef, HttpError> {
    let doc = js::design_doc(db, ddoc)?.ok_or_else(|| HttpError::not_found("missing"))?;
    let def = doc
        .get("views")
        .and_then(|v| v.get(view))
        .ok_or_else(|| HttpError::not_found("missing_named_view"))?;
    if let Some(lang) = doc.get("language").and_then(Value::as_str) {
        if lang != "javascript" {
            return Err(HttpError::bad_request(format!(
                "Settee runs views in javascript only, not {lang}"
            )));
        }
    }
    let map = def
        .get("map")
        .and_then(Value::as_str)
        .ok_or_else(|| HttpError::not_found("missing_named_view"))?
        .to_owned();
    let signature = settee_store::view_signature(&doc, view)
        .ok_or_else(|| HttpError::not_found("missing_named_view"))?;
    let ddoc_id = format!("_design/{ddoc}");
    let ddoc_rev = doc
        .get("_rev")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(ViewDef {
        scope: js::scope(db, db_name, &ddoc_id, &ddoc_rev),
        ddoc_id,
        map,
        reduce: def.get("reduce").and_then(Value::as_str).map(str::to_owned),
        modules: js::view_modules(&doc),
        signature,
    })
}

/// CouchDB's view collation of two document ids (the tie-breaker between equal keys).
pub(crate) fn collate_ids(a: &str, b: &str) -> Ordering {
    collate(&Value::String(a.to_owned()), &Value::String(b.to_owned()))
}

/// One row of a view's map output, as the index holds it.
pub(crate) type Row = settee_store::ViewRow;

/// The key a row is grouped under at `level` (`None`: the whole key).
fn group_key(key: &Value, level: Option<usize>) -> Value {
    match (level, key) {
        (None, k) => k.clone(),
        (Some(0), _) => Value::Null,
        (Some(n), Value::Array(items)) => Value::Array(items.iter().take(n).cloned().collect()),
        (Some(_), k) => k.clone(),
    }
}

/// Groups consecutive rows by their group key and reduces each group.
pub(crate) fn reduce_rows(
    js: &js::Js,
    def: &ViewDef,
    rows: &[&Row],
    level: Option<usize>,
) -> Result<Vec<(Value, Value)>, HttpError> {
    let source = def.reduce.as_deref().unwrap_or_default();
    let builtin = Builtin::parse(source);
    let mut groups: Vec<(Value, Vec<&Row>)> = Vec::new();
    for row in rows {
        let k = group_key(&row.key, level);
        match groups.last_mut() {
            Some((last, members)) if collate(last, &k) == Ordering::Equal => members.push(row),
            _ => groups.push((k, vec![row])),
        }
    }
    if groups.is_empty() && level == Some(0) {
        return Ok(Vec::new());
    }
    let origin = format!("{} views reduce", def.ddoc_id);
    match builtin {
        Some(b) => groups
            .into_iter()
            .map(|(k, members)| {
                let keys: Vec<Value> = members.iter().map(|r| r.key.clone()).collect();
                let values: Vec<Value> = members.iter().map(|r| r.value.clone()).collect();
                // CouchDB puts a built-in's complaint in the row's value.
                let v = match b.reduce(&keys, &values, false) {
                    Ok(v) => v,
                    Err(settee_js::Error::BuiltinReduce {
                        reason, caused_by, ..
                    }) => {
                        json!({"error": "builtin_reduce_error", "reason": reason, "caused_by": caused_by})
                    }
                    Err(e) => return Err(reduce_error(e)),
                };
                Ok((k, v))
            })
            .collect(),
        None if source.trim_start().starts_with('_') => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "query_parse_error",
            format!("unknown built-in reduce function {}", source.trim()),
        )),
        None => {
            let f = Function::new(origin, source, &Value::Null);
            let mut lease = js.lease(&def.scope)?;
            groups
                .into_iter()
                .map(|(k, members)| Ok((k, js_reduce(&mut lease, def, &f, &members)?)))
                .collect()
        }
    }
}

/// A JavaScript reduction of one group: chunks reduced, then their results rereduced.
fn js_reduce(
    lease: &mut Lease,
    def: &ViewDef,
    f: &Function,
    rows: &[&Row],
) -> Result<Value, HttpError> {
    let scope = &def.scope;
    let mut partial = Vec::new();
    for chunk in rows.chunks(REDUCE_CHUNK) {
        let keys: Vec<(Value, String)> = chunk
            .iter()
            .map(|r| (r.key.clone(), r.id.clone()))
            .collect();
        let values: Vec<Value> = chunk.iter().map(|r| r.value.clone()).collect();
        partial.push(forgiving(lease.reduce(scope, f, &keys, &values, false))?);
    }
    match partial.len() {
        0 => forgiving(lease.reduce(scope, f, &[], &[], false)),
        1 => Ok(partial.pop().unwrap_or(Value::Null)),
        _ => forgiving(lease.reduce(scope, f, &[], &partial, true)),
    }
}

/// A reduce function that throws gives `null` (logged), as in CouchDB; running out of time
/// or memory fails the query.
fn forgiving(r: settee_js::Result<Value>) -> Result<Value, HttpError> {
    match r {
        Ok(v) => Ok(v),
        Err(e @ settee_js::Error::Thrown { .. }) => {
            tracing::warn!(error = %e, "a reduce function failed; its result is null");
            Ok(Value::Null)
        }
        Err(e) => Err(reduce_error(e)),
    }
}

fn reduce_error(e: settee_js::Error) -> HttpError {
    js::js_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_truncate_arrays_only() {
        assert_eq!(group_key(&json!([1, 2, 3]), Some(2)), json!([1, 2]));
        assert_eq!(group_key(&json!("x"), Some(2)), json!("x"));
        assert_eq!(group_key(&json!([1]), Some(0)), Value::Null);
        assert_eq!(group_key(&json!([1, 2]), None), json!([1, 2]));
    }
}
