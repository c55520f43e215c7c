//! `/{db}/_settee/...`: the sync-state questions about a store, answered by the process
//! that holds it. A store is open in one process at a time (sled's lock); another `settee`
//! process that finds it in use reaches the holder through its advertisement
//! (`settee_store::Advert`) and asks it here what the store knows offline about a remote: what
//! [`settee_replicate::status`], [`settee_replicate::unsynced`] and
//! [`settee_replicate::sync_state`] answer in the holder, computed by the same code.
//!
//! - `GET /{db}/_settee/sync_status?remote=R`: the counts, as `settee status` prints them
//!   (without `unpulled`, which needs the remote; the caller asks it).
//! - `GET /{db}/_settee/unsynced?remote=R[&after=ID][&limit=N]`: a page of the unsynced
//!   documents, `{"rows": [{"id", "state", ...}], "next": ID or null}` (a row is what
//!   `settee status --docs` prints; `next` is where the next page starts).
//! - `GET /{db}/_settee/sync_state?remote=R&id=ID`: `{"id", "state", ...}`, 404 when the
//!   store has no such document.
//! - `GET /{db}/_settee/pull_since?remote=R`: `{"since", "filter"}`, where counting what
//!   the remote has that the store lacks starts.
//!
//! `R` names the remote: its URL with the user but without a password (`Peer::address`),
//! which the store resolves to the identity it keeps the sync state under (its server's
//! uuid and the database name, learned by a sync with that URL or another spelling of it:
//! `settee_store::Database::resolve_remote`), or that identity itself. A URL the store
//! never learned an identity for answers `"never_synced": true` in `sync_status`. A
//! password given in it is dropped, so it is never used as a name nor returned. CouchDB has no `_settee` endpoint,
//! and no document id can start with `_` other than `_design/` and `_local/`, so the name
//! cannot collide with CouchDB's API. Only a server admin (which includes the advertised
//! owner credential) may ask: the answers name remotes and documents across the store,
//! whatever its `_security` says.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use settee_replicate::SyncState;

use crate::auth;
use crate::body;
use crate::error::HttpError;
use crate::registry::OpenDb;
use crate::request::Request;

/// Rows of an `unsynced` page when the request names no `limit`.
const DEFAULT_PAGE: usize = 256;
/// The most rows one `unsynced` page reads (a larger `limit` is cut to it).
const MAX_PAGE: usize = 10_000;

/// `/{db}/_settee/{what}`.
pub(crate) async fn settee(
    open: &Arc<OpenDb>,
    rest: &[String],
    req: Request,
) -> Result<Response, HttpError> {
    auth::require_server_admin(&req.user)?;
    let [what] = rest else {
        return Err(HttpError::not_found("missing"));
    };
    if !req.is_get() {
        return Err(HttpError::method_not_allowed("GET,HEAD"));
    }
    let q = req.query();
    let remote = remote_name(q.str("remote"))?;
    let db = &open.db;
    match what.as_str() {
        "sync_status" => {
            let st = settee_replicate::status_named(db, &remote)
                .await
                .map_err(replicate_error)?;
            Ok(body::json(StatusCode::OK, &st))
        }
        "unsynced" => {
            let limit = match q.u64("limit")? {
                None => DEFAULT_PAGE,
                Some(n) => usize::try_from(n).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            };
            let after = q.str("after").map(str::to_owned);
            let page = settee_replicate::unsynced_page(db, &remote, after, limit)
                .await
                .map_err(replicate_error)?;
            let rows: Vec<Value> = page
                .rows
                .into_iter()
                .map(|(id, state)| row(id, &state))
                .collect();
            Ok(body::json(
                StatusCode::OK,
                &json!({"rows": rows, "next": page.next}),
            ))
        }
        "sync_state" => {
            let id = q
                .str("id")
                .ok_or_else(|| HttpError::bad_request("sync_state needs the document's id"))?;
            match settee_replicate::sync_state_named(db, &remote, id)
                .await
                .map_err(replicate_error)?
            {
                Some(state) => Ok(body::json(StatusCode::OK, &row(id.to_owned(), &state))),
                None => Err(HttpError::not_found("missing")),
            }
        }
        "pull_since" => {
            let from = settee_replicate::pull_since_named(db, &remote)
                .await
                .map_err(replicate_error)?;
            Ok(body::json(StatusCode::OK, &from))
        }
        other => Err(HttpError::bad_request(format!(
            "_settee/{other} is not an endpoint of Settee's databases \
             (sync_status, unsynced, sync_state, pull_since)"
        ))),
    }
}

/// The remote's name from the `remote` parameter: an http(s) URL loses any password,
/// query and fragment, and a trailing `/`, as `Peer::identity` leaves it; other names (a
/// `local:` store identity) are taken as they are.
fn remote_name(given: Option<&str>) -> Result<String, HttpError> {
    let given = given
        .filter(|r| !r.is_empty())
        .ok_or_else(|| HttpError::bad_request("name the remote: ?remote=URL"))?;
    match url::Url::parse(given) {
        Ok(mut u) if u.scheme() == "http" || u.scheme() == "https" => {
            // Fails only for URLs that cannot have credentials, which http(s) ones can.
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            Ok(u.to_string().trim_end_matches('/').to_owned())
        }
        _ => Ok(given.to_owned()),
    }
}

/// `{"id": id, "state": ..., ...the state's fields}`: a line of `settee status --docs`.
fn row(id: String, state: &SyncState) -> Value {
    let mut line = Map::new();
    line.insert("id".into(), Value::String(id));
    if let Ok(Value::Object(fields)) = serde_json::to_value(state) {
        line.extend(fields);
    }
    Value::Object(line)
}

/// A replicator error of these calls: the store's (with its status), or a 500.
fn replicate_error(e: settee_replicate::Error) -> HttpError {
    match e {
        settee_replicate::Error::Store { source, .. } => HttpError::from(source),
        other => {
            tracing::error!(error = %other, "sync-state question failed");
            HttpError::internal(other.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_is_named_without_its_password() {
        assert_eq!(
            remote_name(Some("http://bob:secret@127.0.0.1:5984/notes/?x=1")).unwrap(),
            "http://bob@127.0.0.1:5984/notes"
        );
        assert_eq!(
            remote_name(Some("http://bob@127.0.0.1:5984/notes")).unwrap(),
            "http://bob@127.0.0.1:5984/notes"
        );
        assert_eq!(remote_name(Some("local:abc")).unwrap(), "local:abc");
        assert_eq!(
            remote_name(None).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            remote_name(Some("")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_row_is_the_id_then_the_state() {
        let state = SyncState::Rejected {
            rev: "1-a".parse().unwrap(),
            error: "forbidden".into(),
            reason: "no".into(),
        };
        let v = row("d".into(), &state);
        assert_eq!(
            v,
            json!({"id": "d", "state": "rejected", "rev": "1-a", "error": "forbidden", "reason": "no"})
        );
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "id");
    }
}
