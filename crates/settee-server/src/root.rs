//! Server-level endpoints: `/`, `/_up`, `/_all_dbs`, `/_uuids`, `/_session`,
//! `/_active_tasks`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::auth;
use crate::body;
use crate::error::HttpError;
use crate::request::Request;
use crate::state::State;
use crate::uuid::new_uuid;

fn only_get(req: &Request) -> Result<(), HttpError> {
    if req.is_get() {
        Ok(())
    } else {
        Err(HttpError::method_not_allowed("GET,HEAD"))
    }
}

/// `GET /`: the welcome object. `couchdb` and `version` are what clients look at to know
/// they talk to a CouchDB 3-compatible server; `vendor` says which.
pub(crate) fn welcome(state: &State, req: &Request) -> Result<Response, HttpError> {
    only_get(req)?;
    Ok(body::json(
        StatusCode::OK,
        &json!({
            "couchdb": "Welcome",
            "version": "3.5.0",
            "uuid": state.uuid,
            "features": [],
            "vendor": {"name": "Settee", "version": env!("CARGO_PKG_VERSION")},
        }),
    ))
}

/// `GET /_up`.
pub(crate) fn up(req: &Request) -> Result<Response, HttpError> {
    only_get(req)?;
    Ok(body::json(
        StatusCode::OK,
        &json!({"status": "ok", "seeds": {}}),
    ))
}

/// `GET /_all_dbs` (admins only, as CouchDB 3's `admin_only_all_dbs`), with `startkey`,
/// `endkey`, `limit`, `skip`, `descending`.
pub(crate) fn all_dbs(state: &State, req: &Request) -> Result<Response, HttpError> {
    only_get(req)?;
    auth::require_server_admin(&req.user)?;
    let q = req.query();
    let start = q
        .json("startkey")?
        .or(q.json("start_key")?)
        .and_then(|v| v.as_str().map(str::to_owned));
    let end = q
        .json("endkey")?
        .or(q.json("end_key")?)
        .and_then(|v| v.as_str().map(str::to_owned));
    let mut names = state.registry.names();
    if q.bool("descending")? {
        names.reverse();
    }
    let desc = q.bool("descending")?;
    let in_range = |n: &String| {
        let after_start = start
            .as_ref()
            .is_none_or(|s| if desc { n <= s } else { n >= s });
        let before_end = end
            .as_ref()
            .is_none_or(|e| if desc { n >= e } else { n <= e });
        after_start && before_end
    };
    let skip = q.u64("skip")?.unwrap_or(0) as usize;
    let limit = q.u64("limit")?.map_or(usize::MAX, |l| l as usize);
    let names: Vec<String> = names
        .into_iter()
        .filter(in_range)
        .skip(skip)
        .take(limit)
        .collect();
    Ok(body::json(StatusCode::OK, &names))
}

/// `GET /_uuids?count=N` (at most 1000, as CouchDB's `max_count`).
pub(crate) fn uuids(req: &Request) -> Result<Response, HttpError> {
    only_get(req)?;
    let count = req.query().u64("count")?.unwrap_or(1);
    if count > 1000 {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "count parameter too large",
        ));
    }
    let ids: Vec<String> = (0..count).map(|_| new_uuid()).collect();
    let mut res = body::json(StatusCode::OK, &json!({"uuids": ids}));
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate, no-cache"),
    );
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// `/_session`: GET who am I, POST log in (cookie), DELETE log out.
pub(crate) async fn session(state: &Arc<State>, req: Request) -> Result<Response, HttpError> {
    let query = req.query();
    match req.method {
        Method::GET | Method::HEAD => state.auth.session_info(&req.user, &query),
        Method::POST => {
            // Read before anyone is authenticated: a small bound, so that anonymous logins
            // cannot make the server hold large bodies (CouchDB's form/JSON logins are small).
            let bytes = body::read_bytes(req.body, state.limits.max_session_body).await?;
            Ok(state
                .auth
                .login_session(&state.registry, &req.headers, &query, &bytes, req.peer)
                .await)
        }
        Method::DELETE => Ok(state.auth.logout_session(&req.headers, &query)),
        _ => Err(HttpError::method_not_allowed("GET,HEAD,POST,DELETE")),
    }
}

/// `GET /_active_tasks`: Settee runs no background tasks a client could watch.
pub(crate) fn active_tasks(req: &Request) -> Result<Response, HttpError> {
    only_get(req)?;
    auth::require_server_admin(&req.user)?;
    Ok(body::json(StatusCode::OK, &json!([])))
}
