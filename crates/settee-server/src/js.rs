//! Running design document JavaScript from request handlers: the server's [`Js`] (a
//! `settee_js::Pool` of worker processes, or none), the [`Cancel`] of the request being
//! served (set when its future is dropped, so that a client that goes away stops its
//! JavaScript), design documents read from the store, and the translation of JavaScript
//! errors into CouchDB's replies. JavaScript never runs in the server's own process.

use std::cell::RefCell;

use axum::http::StatusCode;
use serde_json::{Map, Value};
use settee_js::{Cancel, Lease, Pool, PoolLimits, Rejection, Scope, WorkerProgram};
use settee_store::{Database, GetOptions};

use crate::error::HttpError;

/// CouchDB's reason when a query server does not answer in time (`os_process_timeout`).
const TIMED_OUT: &str = "OS process timed out.";

/// The server's JavaScript: a pool of worker processes, or none (then every function
/// answers 500). Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Js {
    pool: Option<Pool>,
}

impl Js {
    pub(crate) fn new(program: Option<WorkerProgram>, limits: PoolLimits) -> Js {
        Js {
            pool: program.map(|p| Pool::new(p, limits)),
        }
    }

    /// Whether the server runs JavaScript at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.pool.is_some()
    }

    /// A worker for calls about `affinity`, cancelled with the request being served.
    pub(crate) fn lease(&self, affinity: &Scope) -> Result<Lease, HttpError> {
        let Some(pool) = &self.pool else {
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "os_process_error",
                "this server runs no JavaScript workers, so design document functions cannot run",
            ));
        };
        pool.lease(affinity, &current_cancel()).map_err(js_error)
    }
}

thread_local! {
    /// The cancel flag of the request whose store call runs on this thread.
    static CANCEL: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// Runs `f` (on a blocking-pool thread) with `cancel` as the flag its JavaScript calls
/// watch.
pub(crate) fn with_cancel<T>(cancel: Cancel, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Cancel>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CANCEL.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _reset = Reset(CANCEL.with(|c| c.borrow_mut().replace(cancel)));
    f()
}

fn current_cancel() -> Cancel {
    CANCEL.with(|c| c.borrow().clone()).unwrap_or_default()
}

/// Sets its flag when dropped: held by a request's future while its blocking work runs, so
/// that the work learns when the request is dropped (its client went away).
pub(crate) struct CancelOnDrop(pub(crate) Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `f` on the blocking pool; its JavaScript is cancelled if the returned future is
/// dropped before it finishes.
pub(crate) async fn spawn_cancellable<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let cancel = Cancel::new();
    let _guard = CancelOnDrop(cancel.clone());
    tokio::task::spawn_blocking(move || with_cancel(cancel, f)).await
}

/// The runtime a design document's functions run in: one per database incarnation
/// (name and uuid), design document and revision.
pub(crate) fn scope(db: &Database, db_name: &str, ddoc_id: &str, rev: &str) -> Scope {
    Scope::new(format!("{db_name}\u{0}{}", db.uuid()), ddoc_id, rev)
}

/// A JavaScript error as CouchDB's reply: compilation errors are the design document's
/// fault (400 `compilation_error`); a call that ran out of time is CouchDB's 500
/// `os_process_error` "OS process timed out."; no free worker is 503; the rest are 500s.
pub(crate) fn js_error(e: settee_js::Error) -> HttpError {
    use settee_js::Error as E;
    match e {
        E::Compile { .. } => {
            HttpError::new(StatusCode::BAD_REQUEST, "compilation_error", e.to_string())
        }
        E::Timeout { .. } | E::WorkerTimeout { .. } => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "os_process_error",
            TIMED_OUT,
        ),
        E::Arithmetic { .. } => {
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.name(), e.reason())
        }
        E::Busy { .. } => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("{e}; try again later"),
        ),
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
    Ok(db
        .design_docs()?
        .into_iter()
        .filter_map(|doc| match doc {
            Value::Object(m) => Some(m),
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

/// The source of a function member of a design document (`path` like `["filters",
/// "by_type"]`). 404s as CouchDB words them when the member is missing.
pub(crate) fn member_source(ddoc: &Value, path: &[&str]) -> Result<String, HttpError> {
    let mut at = ddoc;
    for key in path {
        at = at
            .get(key)
            .ok_or_else(|| HttpError::not_found(format!("missing json key: {key}")))?;
    }
    at.as_str().map(str::to_owned).ok_or_else(|| {
        HttpError::bad_request(format!("{} is not a function's source", path.join(".")))
    })
}
