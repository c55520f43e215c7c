//! Mango over HTTP: `POST /{db}/_find`, `POST /{db}/_explain`, `GET`/`POST /{db}/_index`,
//! `DELETE /{db}/_index/{ddoc}/json/{name}` and `POST /{db}/_index/_bulk_delete`, on the
//! store's Mango API (`Database::find`, `explain`, `create_index`, `get_indexes`,
//! `delete_index`). This module checks what CouchDB's HTTP layer checks (method, content
//! type, a JSON object body, who may write design documents) and shapes the answers; the
//! request's own validation and CouchDB's error names are `settee_query`'s.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use settee_store::FindRequest;

use crate::auth::Need;
use crate::body;
use crate::error::HttpError;
use crate::registry::OpenDb;
use crate::request::{check, Request};
use crate::state::State;

/// Reads a Mango request body: `application/json`, a JSON object.
async fn read_body(state: &State, req: Request) -> Result<Value, HttpError> {
    body::require_json_type(&req.headers)?;
    let map = body::read_json_object(req.body, state.limits.max_body).await?;
    Ok(Value::Object(map))
}

/// Reads and parses a `_find`/`_explain` request: `POST` only, then the body. A
/// `partition` is CouchDB's `query_parse_error` on a database that is not partitioned (none
/// here is).
async fn read_find_request(state: &State, req: Request) -> Result<FindRequest, HttpError> {
    req.require_post()?;
    let asked = read_body(state, req).await?;
    FindRequest::parse(&asked).map_err(|e| {
        if e.name() == "invalid_partition" {
            HttpError::bad_request("`partition` parameter is not supported on this db")
                .named("query_parse_error")
        } else {
            settee_store::Error::from(e).into()
        }
    })
}

/// `POST /{db}/_find`: the matching documents, a bookmark for the next page, and CouchDB's
/// warning when no index served the query (or `use_index` was ignored).
pub(crate) async fn find(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    let parsed = read_find_request(state, req).await?;
    let found = open.run(move |db| Ok(db.find(&parsed)?)).await?;
    Ok(body::json(StatusCode::OK, &found))
}

/// `POST /{db}/_explain`: which index a query would use and with which options, in
/// CouchDB's shape, named after the database as served.
pub(crate) async fn explain(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    let parsed = read_find_request(state, req).await?;
    let mut explained = open.run(move |db| Ok(db.explain(&parsed)?)).await?;
    if let Some(m) = explained.as_object_mut() {
        m.insert("dbname".into(), Value::String(open.name.clone()));
    }
    Ok(body::json(StatusCode::OK, &explained))
}

/// `/{db}/_index` and below. `rest` is the path after `_index`.
pub(crate) async fn index(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    rest: &[String],
    req: Request,
) -> Result<Response, HttpError> {
    match rest {
        [] => match req.method {
            Method::GET | Method::HEAD => {
                check(open, &req.user, Need::Member)?;
                let list = open.run(|db| Ok(db.get_indexes()?)).await?;
                Ok(body::json(StatusCode::OK, &list))
            }
            Method::POST => create(state, open, req).await,
            _ => Err(HttpError::method_not_allowed("GET,POST")),
        },
        [one] if one == "_bulk_delete" => bulk_delete(state, open, req).await,
        [ddoc, kind, name] => delete(open, ddoc.clone(), kind, name.clone(), req).await,
        [prefix, ddoc, kind, name] if prefix == "_design" => {
            delete(open, format!("_design/{ddoc}"), kind, name.clone(), req).await
        }
        _ => Err(HttpError::not_found("missing")),
    }
}

/// `POST /{db}/_index`: creates a JSON index (a design document, so database admins only,
/// as for any design document) and builds it before answering.
async fn create(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    check(open, &req.user, Need::Admin)?;
    let asked = read_body(state, req).await?;
    let created = open.run(move |db| Ok(db.create_index(&asked)?)).await?;
    Ok(body::json(StatusCode::OK, &created))
}

/// `DELETE /{db}/_index/{ddoc}/json/{name}`: removes one index (and its design document
/// with its last view). Any other index type, or an index that is not there, is CouchDB's
/// `404 missing`.
async fn delete(
    open: &Arc<OpenDb>,
    ddoc: String,
    kind: &str,
    name: String,
    req: Request,
) -> Result<Response, HttpError> {
    if req.method != Method::DELETE {
        return Err(HttpError::method_not_allowed("DELETE"));
    }
    check(open, &req.user, Need::Admin)?;
    if kind != "json" {
        return Err(HttpError::not_found("missing"));
    }
    open.run(move |db| match db.delete_index(&ddoc, &name) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Err(HttpError::not_found("missing")),
        Err(e) => Err(e.into()),
    })
    .await?;
    Ok(body::ok())
}

/// `POST /{db}/_index/_bulk_delete` with `{"docids": [ddoc ids]}`: removes every JSON index
/// of each design document; answers `{"success": [{"id", "ok"}], "fail": [{"id", "error"}]}`.
async fn bulk_delete(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    req.require_post()?;
    check(open, &req.user, Need::Admin)?;
    let asked = read_body(state, req).await?;
    let not_ids = |v: &Value| {
        HttpError::bad_request(format!(
            "Bulk Delete requires an array of non-null docids. Docids: {v}"
        ))
        .named("invalid_bulk_docs")
    };
    let ids: Vec<String> = match asked.get("docids") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| not_ids(v)))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(not_ids(other)),
        None => {
            return Err(HttpError::bad_request("Missing required key: docids")
                .named("missing_required_key"))
        }
    };
    let answer = open
        .run(move |db| {
            let list = db.get_indexes()?;
            let mut success = Vec::new();
            let mut fail = Vec::new();
            for id in ids {
                let full = if id.starts_with("_design/") {
                    id.clone()
                } else {
                    format!("_design/{id}")
                };
                let names: Vec<String> = list
                    .indexes
                    .iter()
                    .filter(|i| i["ddoc"] == full.as_str())
                    .filter_map(|i| i["name"].as_str().map(str::to_owned))
                    .collect();
                if names.is_empty() {
                    fail.push(json!({"id": id, "error": "not_found"}));
                    continue;
                }
                let mut failed = None;
                for name in &names {
                    if let Err(e) = db.delete_index(&full, name) {
                        failed = Some(e.name().to_owned());
                        break;
                    }
                }
                match failed {
                    None => success.push(json!({"id": id, "ok": true})),
                    Some(error) => fail.push(json!({"id": id, "error": error})),
                }
            }
            let mut m = Map::new();
            m.insert("success".into(), Value::Array(success));
            m.insert("fail".into(), Value::Array(fail));
            Ok(Value::Object(m))
        })
        .await?;
    Ok(body::json(StatusCode::OK, &answer))
}
