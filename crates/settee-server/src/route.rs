//! Routing as CouchDB does it: the path split at `/`, each segment percent-decoded (so a
//! database name or document id may hold an encoded `/`), then matched by position:
//! server endpoints, a database, its `_` endpoints, `_local/` and `_design/` documents,
//! documents, and attachments (the rest of the path, slashes and all).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use crate::auth::users;
use crate::auth::{Need, UserCtx};
use crate::error::HttpError;
use crate::location::{absolute_url, encode_segment};
use crate::registry::{OpenDb, USERS_DB};
use crate::request::{check, Request};
use crate::state::State;
use crate::{attachment, bulk, changes, db, document, find, root, sync_state, view};

fn segments(path: &str) -> Result<Vec<String>, HttpError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| HttpError::bad_request("the path is not valid UTF-8"))
        })
        .collect()
}

/// A document id in a path: `_design/x` and `_local/x` take two segments.
enum DocPath<'a> {
    Doc(String, &'a [String]),
    Local(String),
    /// `/{db}/_local/{id}/{name}`: local documents have no attachments.
    LocalAttachment,
}

fn doc_path(rest: &[String]) -> Option<DocPath<'_>> {
    match rest {
        [] => None,
        [prefix, name, tail @ ..] if prefix == "_design" => {
            Some(DocPath::Doc(format!("_design/{name}"), tail))
        }
        [prefix, name] if prefix == "_local" => Some(DocPath::Local(format!("_local/{name}"))),
        [prefix, _, _, ..] if prefix == "_local" => Some(DocPath::LocalAttachment),
        [id, tail @ ..] => Some(DocPath::Doc(id.clone(), tail)),
    }
}

pub(crate) async fn dispatch(state: &Arc<State>, req: Request) -> Result<Response, HttpError> {
    let segs = segments(req.uri.path())?;
    let users_write = state.peruser.is_some()
        && segs.first().map(String::as_str) == Some(USERS_DB)
        && !req.is_get();
    let res = route(state, segs, req).await;
    if users_write && res.as_ref().is_ok_and(|r| r.status().is_success()) {
        if let Some(peruser) = &state.peruser {
            // The write to `_users` is done: a failure here is the server's to report,
            // not the client's (the next write to `_users` tries again).
            if let Err(e) = peruser.catch_up(&state.registry).await {
                tracing::warn!(error = %e.reason, "creating or deleting per-user databases failed");
            }
        }
    }
    res
}

async fn route(state: &Arc<State>, segs: Vec<String>, req: Request) -> Result<Response, HttpError> {
    let Some((first, rest)) = segs.split_first() else {
        return root::welcome(state, &req);
    };
    match first.as_str() {
        "_up" => return root::up(&req),
        "_all_dbs" => return root::all_dbs(state, &req),
        "_uuids" => return root::uuids(&req),
        "_session" => return root::session(state, req).await,
        "_active_tasks" => return root::active_tasks(&req),
        _ => {}
    }
    if rest.is_empty() {
        return db::database(state, first, req).await;
    }
    let Some(open) = state.registry.get(first).await? else {
        return Err(HttpError::db_not_found());
    };
    if let [only] = rest {
        if req.is_get() && only.starts_with("_design/") {
            check(&open, &req.user, Need::Member)?;
            return Ok(design_redirect(first, only, &req.headers));
        }
    }
    let rest = split_encoded_prefix(rest);
    let rest = rest.as_slice();
    if open.name == USERS_DB {
        users_gate(&open, rest, &req.user, &req.method).await?;
    }
    let endpoint = rest[0].as_str();
    if endpoint.starts_with('_') && endpoint != "_design" && endpoint != "_local" {
        return db_endpoint(state, open, endpoint, &rest[1..], req).await;
    }
    match doc_path(rest) {
        Some(DocPath::Local(id)) => {
            check(&open, &req.user, Need::Member)?;
            document::local(state, &open, &id, req).await
        }
        Some(DocPath::LocalAttachment) => Err(HttpError::bad_request(
            "_local documents do not accept attachments.",
        )),
        Some(DocPath::Doc(id, [])) => {
            check(&open, &req.user, Need::Member)?;
            document::document(state, &open, &id, req).await
        }
        Some(DocPath::Doc(id, att)) => {
            check(&open, &req.user, Need::Member)?;
            if let (Some(ddoc), [endpoint, name]) = (id.strip_prefix("_design/"), att) {
                if endpoint == "_view" {
                    return view::view(state, &open, ddoc, name, req).await;
                }
            }
            if id.starts_with("_design/") && att[0].starts_with('_') {
                return Err(HttpError::new(
                    axum::http::StatusCode::NOT_IMPLEMENTED,
                    "not_implemented",
                    format!("{} of design documents is not supported by Settee", att[0]),
                ));
            }
            attachment::attachment(state, &open, &id, &att.join("/"), req).await
        }
        None => Err(HttpError::not_found("missing")),
    }
}

/// The segments with an encoded `_design/x` or `_local/x` (`_design%2Fx`, one segment)
/// split in two, as CouchDB takes `PUT /db/_design%2Fx` for the document `_design/x`.
fn split_encoded_prefix(rest: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(rest.len() + 1);
    if let Some((first, tail)) = rest.split_first() {
        match first.split_once('/') {
            Some((prefix @ ("_design" | "_local"), name)) if !name.is_empty() => {
                out.push(prefix.to_owned());
                out.push(name.to_owned());
            }
            _ => out.push(first.clone()),
        }
        out.extend(tail.iter().cloned());
    }
    out
}

/// CouchDB's answer to `GET /db/_design%2Fx`: 301 to `/db/_design/x` (the name's own
/// slashes stay encoded).
fn design_redirect(db: &str, id: &str, headers: &HeaderMap) -> Response {
    let name = id.strip_prefix("_design/").unwrap_or(id);
    let path = format!("/{}/_design/{}", encode_segment(db), encode_segment(name));
    let location = absolute_url(headers, &path);
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// What `_users` adds to the security object's rules, as CouchDB: only server admins list
/// it (`_all_docs`, `_changes`); a non-admin reads only their own user document (others
/// are 404, design documents 403) and uses no other endpoint but `_bulk_docs` (whose
/// writes, like every write, go through `users::before_doc_update`).
async fn users_gate(
    open: &Arc<OpenDb>,
    rest: &[String],
    user: &UserCtx,
    method: &Method,
) -> Result<(), HttpError> {
    let first = rest[0].as_str();
    if first == "_all_docs" || first == "_changes" {
        if user.is_admin() {
            return Ok(());
        }
        return Err(HttpError::unauthorized("You are not a server admin."));
    }
    if check(open, user, Need::Admin).is_ok() {
        return Ok(());
    }
    check(open, user, Need::Member)?;
    let id = match doc_path(rest) {
        Some(DocPath::Doc(id, _)) => id,
        Some(DocPath::Local(_)) | Some(DocPath::LocalAttachment) => return Ok(()),
        None => return Ok(()),
    };
    if id.starts_with('_') && !id.starts_with("_design/") {
        return match id.as_str() {
            "_bulk_docs" | "_security" => Ok(()),
            _ => Err(HttpError::forbidden(
                "Only administrators can use this endpoint of the users database.",
            )),
        };
    }
    if id.starts_with("_design/") {
        return users::after_doc_read(&serde_json::json!({"_id": id}), user, false);
    }
    if !(method == Method::GET || method == Method::HEAD || method.as_str() == "COPY") {
        return Ok(());
    }
    // The document as it is now: a user's document keeps its name (`Usernames can not be
    // changed`), so this answers for every revision of it.
    let doc = open
        .run(
            move |db| match db.get(&id, &settee_store::GetOptions::default()) {
                Ok(d) => Ok(Some(d)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            },
        )
        .await?;
    match doc {
        Some(doc) => users::after_doc_read(&doc, user, false),
        // Missing or deleted: 404 either way, and it tells nothing.
        None => Err(HttpError::not_found("missing")),
    }
}

async fn db_endpoint(
    state: &Arc<State>,
    open: Arc<OpenDb>,
    endpoint: &str,
    rest: &[String],
    req: Request,
) -> Result<Response, HttpError> {
    if endpoint == "_index" {
        return find::index(state, &open, rest, req).await;
    }
    if endpoint == "_settee" {
        return sync_state::settee(&open, rest, req).await;
    }
    if !rest.is_empty() {
        return Err(HttpError::not_found("missing"));
    }
    match endpoint {
        "_security" => db::security(state, &open, req).await,
        "_revs_limit" => db::revs_limit(state, &open, req).await,
        "_compact" | "_view_cleanup" => db::compact(&open, req).await,
        "_purge" => db::purge(state, &open, req).await,
        _ => {
            check(&open, &req.user, Need::Member)?;
            match endpoint {
                "_all_docs" => bulk::all_docs(state, &open, req, None).await,
                "_design_docs" => {
                    bulk::all_docs(state, &open, req, Some(("_design/", "_design0"))).await
                }
                "_local_docs" => bulk::local_docs(&open, req).await,
                "_bulk_docs" => bulk::bulk_docs(state, &open, req).await,
                "_bulk_get" => bulk::bulk_get(state, &open, req).await,
                "_revs_diff" | "_missing_revs" => {
                    bulk::revs_diff(state, &open, req, endpoint == "_missing_revs").await
                }
                "_changes" => changes::changes(state, open, req).await,
                "_ensure_full_commit" => db::ensure_full_commit(&open, req).await,
                "_find" => find::find(state, &open, req).await,
                "_explain" => find::explain(state, &open, req).await,
                _ => Err(HttpError::bad_request(format!(
                    "{endpoint} is not an endpoint of Settee's databases"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_slashes_stay_inside_their_segment() {
        let s = segments("/a%2Fb/_design/x/att/with/slash").unwrap();
        assert_eq!(s, ["a/b", "_design", "x", "att", "with", "slash"]);
        match doc_path(&s[1..]) {
            Some(DocPath::Doc(id, att)) => {
                assert_eq!(id, "_design/x");
                assert_eq!(att.join("/"), "att/with/slash");
            }
            _ => panic!("not a document path"),
        }
        match doc_path(&segments("/_local/c%2Fd").unwrap()) {
            Some(DocPath::Local(id)) => assert_eq!(id, "_local/c/d"),
            _ => panic!("not a local path"),
        }
        let split = split_encoded_prefix(&segments("/_design%2Fq%2Fr/att").unwrap());
        assert_eq!(split, ["_design", "q/r", "att"]);
        let split = split_encoded_prefix(&segments("/_local%2Fy").unwrap());
        assert_eq!(split, ["_local", "y"]);
    }
}
