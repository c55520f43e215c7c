//! Database endpoints: `PUT`/`GET`/`DELETE`/`POST /{db}`, `_security`, `_revs_limit`,
//! `_compact`, `_purge`, `_ensure_full_commit`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::{self, Need, UserCtx};
use crate::body;
use crate::document;
use crate::error::HttpError;
use crate::location::encode_segment;
use crate::registry::{OpenDb, USERS_DB};
use crate::request::{check, Request};
use crate::state::State;

/// `/{db}`.
pub(crate) async fn database(
    state: &Arc<State>,
    name: &str,
    req: Request,
) -> Result<Response, HttpError> {
    match req.method {
        Method::PUT => {
            auth::require_server_admin(&req.user)?;
            state.registry.create(name).await?;
            let mut res = body::json(StatusCode::CREATED, &json!({"ok": true}));
            if let Ok(v) = HeaderValue::from_str(&format!("/{}", encode_segment(name))) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        Method::DELETE => {
            if req.query().has("rev") {
                return Err(HttpError::bad_request(
                    "You tried to DELETE a database with a ?rev= parameter. Did you mean to DELETE a document instead?",
                ));
            }
            auth::require_server_admin(&req.user)?;
            state.registry.delete(name).await?;
            Ok(body::ok())
        }
        Method::GET | Method::HEAD => {
            let open = member_db(state, name, &req.user).await?;
            let info = open.run(|db| Ok(db.info()?)).await?;
            let mut v = serde_json::to_value(&info)
                .map_err(|e| HttpError::internal(format!("database info: {e}")))?;
            v["db_name"] = Value::from(open.name.clone());
            v["compact_running"] = Value::Bool(false);
            v["props"] = json!({});
            Ok(body::json(StatusCode::OK, &v))
        }
        Method::POST => {
            let open = member_db(state, name, &req.user).await?;
            document::post(state, &open, req).await
        }
        _ => Err(HttpError::method_not_allowed("DELETE,GET,HEAD,POST,PUT")),
    }
}

/// The database `name`, for a member of it (404 when there is none).
async fn member_db(state: &State, name: &str, user: &UserCtx) -> Result<Arc<OpenDb>, HttpError> {
    let open = state
        .registry
        .get(name)
        .await?
        .ok_or_else(HttpError::db_not_found)?;
    check(&open, user, Need::Member)?;
    Ok(open)
}

/// What a request does with a database setting (`_security`, `_revs_limit`).
enum Setting {
    Read,
    Write,
}

/// A database setting's rule: members read it (GET), admins write it (PUT).
fn setting_access(open: &OpenDb, req: &Request) -> Result<Setting, HttpError> {
    if req.is_get() {
        check(open, &req.user, Need::Member)?;
        return Ok(Setting::Read);
    }
    if req.method == Method::PUT {
        check(open, &req.user, Need::Admin)?;
        return Ok(Setting::Write);
    }
    Err(HttpError::method_not_allowed("GET,PUT"))
}

/// `/{db}/_security`: GET for members, PUT for admins.
pub(crate) async fn security(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    match setting_access(open, &req)? {
        Setting::Read => Ok(body::json(StatusCode::OK, &open.security())),
        Setting::Write => {
            if open.name == USERS_DB && !state.users_db_security_editable {
                return Err(HttpError::forbidden(
                    "You can't edit the security object of the user database.",
                ));
            }
            let sec = body::read_json_object(req.body, state.limits.max_body).await?;
            validate_security(&sec)?;
            let stored = sec.clone();
            open.run(move |db| Ok(db.set_security(stored)?)).await?;
            open.cache_security(sec);
            Ok(body::ok())
        }
    }
}

/// CouchDB's shape rules for a security object: `admins`/`members` (and the legacy
/// `readers`, which stand for `members` when those are absent) are objects whose `names` and
/// `roles` are lists of strings. CouchDB 3.5.0 refuses the others with a 500; a `readers`
/// whose lists were not read would leave the database open to anyone.
fn validate_security(sec: &serde_json::Map<String, Value>) -> Result<(), HttpError> {
    for part in ["admins", "members", "readers"] {
        let Some(p) = sec.get(part) else { continue };
        let Some(p) = p.as_object() else {
            return Err(HttpError::bad_request(format!(
                "{part} must be a JSON object"
            )));
        };
        for list in ["names", "roles"] {
            match p.get(list) {
                None => {}
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                Some(_) => {
                    return Err(HttpError::bad_request(format!(
                        "{part}.{list} must be a JSON array of strings"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// `/{db}/_revs_limit`: GET the number, PUT a new one (admins).
pub(crate) async fn revs_limit(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    match setting_access(open, &req)? {
        Setting::Read => Ok(body::json(StatusCode::OK, &open.db.revs_limit())),
        Setting::Write => {
            let bytes = body::read_bytes(req.body, state.limits.max_body).await?;
            let limit = match body::parse_json(&bytes)? {
                Value::Number(n) if n.as_u64().is_some_and(|n| n > 0) => n.as_u64().unwrap_or(1),
                _ => {
                    return Err(HttpError::bad_request(
                        "The revs limit must be a positive integer",
                    ))
                }
            };
            open.run(move |db| Ok(db.set_revs_limit(limit)?)).await?;
            Ok(body::ok())
        }
    }
}

/// `POST /{db}/_compact` (admins): compacts now and answers when done (CouchDB answers
/// 202 at once and compacts in the background; clients poll `compact_running`, which is
/// then already false). In place: it gives no disk space back, since replacing the store's
/// files (`Database::rewrite`, what `settee compact` runs) needs the only handle, and a
/// served database has one per request.
pub(crate) async fn compact(open: &Arc<OpenDb>, req: Request) -> Result<Response, HttpError> {
    req.require_post()?;
    crate::auth::require_db_admin_to_maintain(&open.security(), &req.user)?;
    body::require_json_type(&req.headers)?;
    open.run(|db| Ok(db.compact()?)).await?;
    Ok(body::json(StatusCode::ACCEPTED, &json!({"ok": true})))
}

/// `POST /{db}/_purge` (admins): `{id: [revs]}` → `{"purge_seq", "purged": {id: [revs]}}`.
pub(crate) async fn purge(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    req.require_post()?;
    // CouchDB 3.5.0 lets only server admins purge (database admins get 401 too).
    crate::auth::require_server_admin(&req.user)?;
    body::require_json_type(&req.headers)?;
    let revs = body::read_revs_by_id(req.body, state.limits.max_body).await?;
    let result = open.run(move |db| Ok(db.purge(revs)?)).await?;
    Ok(body::json(StatusCode::CREATED, &result))
}

/// `POST /{db}/_ensure_full_commit`: everything written is made durable.
pub(crate) async fn ensure_full_commit(
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    req.require_post()?;
    open.run(|db| Ok(db.flush()?)).await?;
    Ok(body::json(
        StatusCode::CREATED,
        &json!({"ok": true, "instance_start_time": "0"}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_object_shape_is_checked() {
        let ok = json!({"admins": {"names": ["a"]}, "members": {"roles": []}});
        assert!(validate_security(ok.as_object().unwrap()).is_ok());
        for bad in [
            json!({"members": {"names": "a"}}),
            json!({"admins": "x"}),
            json!({"readers": {"names": "joe"}}),
            json!({"members": {"roles": ["a", {"t": "x"}]}}),
        ] {
            assert!(
                validate_security(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
