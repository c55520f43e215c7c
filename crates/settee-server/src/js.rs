//! Running design document JavaScript from request handlers: one [`Sandbox`] per thread of
//! the blocking pool (QuickJS runtimes cannot move between threads), compiled functions
//! cached in it by source text, design documents read from the store, and the translation
//! of the sandbox's errors into CouchDB's replies. Everything here runs inside
//! [`crate::registry::OpenDb::run`].

use std::cell::RefCell;

use axum::http::StatusCode;
use serde_json::{Map, Value};
use settee_js::{Compiled, Limits, Rejection, Sandbox};
use settee_store::{AllDocsOptions, Database, GetOptions};

use crate::error::HttpError;

/// A sandbox holding more compiled functions than this is replaced by a fresh one (design
/// documents change; their old functions would otherwise stay compiled for ever).
const MAX_FUNCTIONS: usize = 512;

thread_local! {
    static SANDBOX: RefCell<Option<Sandbox>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's sandbox (made on first use), replacing the sandbox afterwards
/// if it ran out of memory or holds too many functions.
pub(crate) fn with_sandbox<T>(
    f: impl FnOnce(&Sandbox) -> Result<T, HttpError>,
) -> Result<T, HttpError> {
    SANDBOX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Sandbox::new(Limits::default()).map_err(js_error)?);
        }
        let sandbox = slot
            .as_ref()
            .ok_or_else(|| HttpError::internal("no JavaScript sandbox"))?;
        let out = f(sandbox);
        // What the functions passed to `log()` goes to the server's log, as in CouchDB.
        for line in sandbox.take_log() {
            tracing::info!(target: "settee::js", "{line}");
        }
        if sandbox.is_broken() || sandbox.function_count() > MAX_FUNCTIONS {
            *slot = None;
        }
        out
    })
}

/// A sandbox error as CouchDB's reply: compilation errors are the design document's fault
/// (400 `compilation_error`), the rest are 500s.
pub(crate) fn js_error(e: settee_js::Error) -> HttpError {
    match e {
        settee_js::Error::Compile { .. } => {
            HttpError::new(StatusCode::BAD_REQUEST, "compilation_error", e.to_string())
        }
        e => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.name(), e.to_string()),
    }
}

/// A `validate_doc_update` refusal as the request's error.
pub(crate) fn rejection_error(r: Rejection) -> HttpError {
    let text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    match r {
        Rejection::Forbidden(v) => HttpError::forbidden(text(v)),
        Rejection::Unauthorized(v) => HttpError::unauthorized(text(v)),
        Rejection::Other(v) => {
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "unknown_error", text(v))
        }
        Rejection::Failed(settee_js::Error::Thrown { reason, .. }) => {
            // `TypeError: x is null` is CouchDB's `{"error": "TypeError", "reason": ...}`.
            match reason.split_once(": ") {
                Some((name, msg)) if !name.is_empty() && !name.contains(' ') => {
                    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, name, msg)
                }
                _ => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "js_error", reason),
            }
        }
        Rejection::Failed(e) => js_error(e),
        _ => HttpError::internal("validate_doc_update failed"),
    }
}

/// A design document by its name (`ddoc` without `_design/`); `None` when it does not exist
/// or is deleted.
pub(crate) fn design_doc(db: &Database, ddoc: &str) -> Result<Option<Value>, HttpError> {
    match db.get(&format!("_design/{ddoc}"), &GetOptions::default()) {
        Ok(doc) => Ok(Some(doc)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every design document of the database.
pub(crate) fn design_docs(db: &Database) -> Result<Vec<Map<String, Value>>, HttpError> {
    let all = db.all_docs(&AllDocsOptions {
        startkey: Some("_design/".into()),
        endkey: Some("_design0".into()),
        inclusive_end: false,
        include_docs: true,
        ..Default::default()
    })?;
    Ok(all
        .rows
        .into_iter()
        .filter_map(|r| match r.doc {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect())
}

/// What `require` may load in a map function: the design document's `views.lib` (as
/// CouchDB allows); `null` when there is none.
pub(crate) fn view_modules(ddoc: &Value) -> Value {
    match ddoc.get("views").and_then(|v| v.get("lib")) {
        Some(lib) => serde_json::json!({"views": {"lib": lib}}),
        None => Value::Null,
    }
}

/// A function member of a design document (`path` like `["filters", "by_type"]`), compiled
/// with `require` loading from `modules`. 404s as CouchDB words them when the member is
/// missing.
pub(crate) fn compile_member(
    sandbox: &Sandbox,
    ddoc: &Value,
    path: &[&str],
    modules: &Value,
) -> Result<Compiled, HttpError> {
    let mut at = ddoc;
    for key in path {
        at = at
            .get(key)
            .ok_or_else(|| HttpError::not_found(format!("missing json key: {key}")))?;
    }
    let source = at.as_str().ok_or_else(|| {
        HttpError::bad_request(format!("{} is not a function's source", path.join(".")))
    })?;
    let id = ddoc
        .get("_id")
        .and_then(Value::as_str)
        .unwrap_or("_design/?");
    sandbox
        .compile_with_modules(&format!("{id} {}", path.join(".")), source, modules)
        .map_err(js_error)
}
