//! A view's rows: the map function run over every live document, sorted by CouchDB's view
//! collation (key, then document id, then value), cached per database, design document
//! revision and view while the update sequence stays; and the reduction of a query's rows
//! by group (built-in reduces natively, JavaScript ones in chunks then a rereduce).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use serde_json::{json, Value};
use settee_js::{Builtin, Function, Lease};
use settee_query::collate;
use settee_store::{AllDocsOptions, Database};

use crate::error::HttpError;
use crate::js;

/// Rows a JavaScript reduce function gets in one call before the results are rereduced.
const REDUCE_CHUNK: usize = 100;
/// Documents sent to a worker in one map request, at most: few enough that a batch is
/// answered while the next is read from the store, many enough that the per-request cost
/// (a pipe round trip) disappears.
const MAP_BATCH_DOCS: usize = 500;
/// Bytes of documents in one map request, at most (a batch of large documents is cut
/// short of `MAP_BATCH_DOCS`).
const MAP_BATCH_BYTES: usize = 4 << 20;
/// Views kept in the cache (all databases together); past this the cache starts afresh.
const CACHE_CAPACITY: usize = 64;

/// What a view's design document says about it.
pub(crate) struct ViewDef {
    pub(crate) ddoc_id: String,
    pub(crate) ddoc_rev: String,
    pub(crate) map: String,
    pub(crate) reduce: Option<String>,
    /// What `require` in the map function loads from (`views.lib`).
    pub(crate) modules: Value,
    /// The runtime its functions run in.
    pub(crate) scope: settee_js::Scope,
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
    let ddoc_id = format!("_design/{ddoc}");
    let ddoc_rev = doc
        .get("_rev")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(ViewDef {
        scope: js::scope(db, db_name, &ddoc_id, &ddoc_rev),
        ddoc_id,
        ddoc_rev,
        map,
        reduce: def.get("reduce").and_then(Value::as_str).map(str::to_owned),
        modules: js::view_modules(&doc),
    })
}

/// CouchDB's view collation of two document ids (the tie-breaker between equal keys).
pub(crate) fn collate_ids(a: &str, b: &str) -> Ordering {
    collate(&Value::String(a.to_owned()), &Value::String(b.to_owned()))
}

/// One row of a view's map output.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: Value,
    pub(crate) id: String,
    pub(crate) value: Value,
}

/// A computed view: the sorted rows for one design document revision at one update seq.
struct Computed {
    ddoc_rev: String,
    update_seq: u64,
    rows: Arc<Vec<Row>>,
}

type CacheKey = (String, String, String);

fn cache() -> &'static Mutex<HashMap<CacheKey, Computed>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Computed>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn row_order(a: &Row, b: &Row) -> Ordering {
    collate(&a.key, &b.key)
        .then_with(|| collate_ids(&a.id, &b.id))
        .then_with(|| collate(&a.value, &b.value))
}

fn cache_key(db: &Database, db_name: &str, view: &str, def: &ViewDef) -> CacheKey {
    (
        format!("{db_name}\u{0}{}", db.uuid()),
        def.ddoc_id.clone(),
        view.to_owned(),
    )
}

/// The cached rows of this design document revision's view, however old.
pub(crate) fn cached_rows(
    db: &Database,
    db_name: &str,
    view: &str,
    def: &ViewDef,
) -> Option<Arc<Vec<Row>>> {
    let cached = cache().lock().unwrap_or_else(|p| p.into_inner());
    cached
        .get(&cache_key(db, db_name, view, def))
        .filter(|c| c.ddoc_rev == def.ddoc_rev)
        .map(|c| c.rows.clone())
}

/// The view's sorted rows, from the cache when the database has not changed.
pub(crate) fn rows_of(
    db: &Database,
    js: &js::Js,
    db_name: &str,
    view: &str,
    def: &ViewDef,
    update_seq: u64,
) -> Result<Arc<Vec<Row>>, HttpError> {
    let key = cache_key(db, db_name, view, def);
    {
        let cached = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.get(&key) {
            if c.ddoc_rev == def.ddoc_rev && c.update_seq == update_seq {
                return Ok(c.rows.clone());
            }
        }
    }
    let rows = Arc::new(compute(db, js, view, def)?);
    let mut cached = cache().lock().unwrap_or_else(|p| p.into_inner());
    if cached.len() >= CACHE_CAPACITY && !cached.contains_key(&key) {
        cached.clear();
    }
    cached.insert(
        key,
        Computed {
            ddoc_rev: def.ddoc_rev.clone(),
            update_seq,
            rows: rows.clone(),
        },
    );
    Ok(rows)
}

/// Runs the map function over every live document that is not a design document (with
/// `_conflicts`, as CouchDB's indexer reads them), in batches on one worker. A document
/// the function throws on is left out (logged); running out of time or memory, a value
/// too deep, or a failed worker fails the view (CouchDB's `os_process_error`).
fn compute(db: &Database, js: &js::Js, view: &str, def: &ViewDef) -> Result<Vec<Row>, HttpError> {
    let docs = db.all_docs(&AllDocsOptions {
        include_docs: true,
        conflicts: true,
        ..Default::default()
    })?;
    let function = Function::new(
        format!("{} views.{view}.map", def.ddoc_id),
        def.map.as_str(),
        &def.modules,
    );
    let mut lease = js.lease(&def.scope)?;
    let mut rows = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0;
    for r in docs.rows {
        let (Some(id), Some(doc)) = (r.id, r.doc) else {
            continue;
        };
        if id.starts_with("_design/") || doc.is_null() {
            continue;
        }
        bytes += json_len(&doc);
        ids.push(id);
        batch.push(doc);
        if batch.len() >= MAP_BATCH_DOCS || bytes >= MAP_BATCH_BYTES {
            map_batch(&mut lease, def, &function, &mut ids, &mut batch, &mut rows)?;
            bytes = 0;
        }
    }
    map_batch(&mut lease, def, &function, &mut ids, &mut batch, &mut rows)?;
    rows.sort_by(row_order);
    Ok(rows)
}

/// The length of a value's JSON text (without keeping the text).
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, nor can serialising a `Value`.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// Maps one batch (emptying it) and adds its rows.
fn map_batch(
    lease: &mut Lease,
    def: &ViewDef,
    function: &Function,
    ids: &mut Vec<String>,
    batch: &mut Vec<Value>,
    rows: &mut Vec<Row>,
) -> Result<(), HttpError> {
    if batch.is_empty() {
        return Ok(());
    }
    let results = lease
        .map(&def.scope, function, batch)
        .map_err(js::js_error)?;
    for (id, result) in ids.drain(..).zip(results) {
        match result {
            Ok(emitted) => rows.extend(emitted.into_iter().map(|(key, value)| Row {
                key,
                id: id.clone(),
                value,
            })),
            Err(e) => {
                tracing::warn!(doc = %id, error = %e, "a map function failed on a document; it has no rows in the view");
            }
        }
    }
    batch.clear();
    Ok(())
}

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
