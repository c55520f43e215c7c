//! The HTTP interface: the JSON API the page uses, its live updates as server-sent events,
//! and the page itself.
//!
//! | Method and path                | What                                                  |
//! |--------------------------------|-------------------------------------------------------|
//! | `GET /api/notes`               | list: `?notebook=&tag=&q=&limit=&bookmark=`, newest 1st |
//! | `POST /api/notes`              | create `{title, body, notebook, tags}`                |
//! | `GET /api/notes/{id}`          | one note, its badge, its versions and suggested merge |
//! | `PUT /api/notes/{id}`          | edit `{rev, title, body, notebook, tags}`             |
//! | `DELETE /api/notes/{id}?rev=`  | delete                                                |
//! | `POST /api/notes/{id}/resolve` | resolve a conflict `{revs, keep}` or `{revs, merged}` |
//! | `POST /api/notes/{id}/undelete`| undo a delete `{rev: the deletion's, from: the note's}` |
//! | `POST /api/notes/{id}/revert`  | take the server's version (after a refused edit)      |
//! | `PUT /api/notes/{id}/images/{name}?rev=` | add an image: the raw bytes, `image/*`, at most 20 MB |
//! | `GET /api/notes/{id}/images/{name}`      | an image (`?rev=`: a conflict's version's) |
//! | `DELETE /api/notes/{id}/images/{name}?rev=` | remove an image                     |
//! | `GET /api/notebooks`           | notebooks and tags with their counts                  |
//! | `GET /api/sync`                | the global sync state                                 |
//! | `PUT /api/sync`                | set the server `{url, user?, password?}`              |
//! | `DELETE /api/sync`             | stop syncing (local only)                             |
//! | `POST /api/sync/now`           | "Sync now": retry at once if offline or stopped       |
//! | `GET /api/events`              | server-sent events: `changes`, `sync`, `resync`       |
//!
//! Errors are `{"error", "reason"}` with CouchDB's names and statuses; a refused request
//! changes nothing. Requests that change something must come from the app's own page (a
//! web page elsewhere cannot use the API of the app running on this machine).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::images;
use crate::live::Update;
use crate::note::NoteInput;
use crate::notes::{self, ResolveInput};
use crate::queries::{self, ListQuery};
use crate::recover;
use crate::settings::Remote;
use crate::{web, App, Error, Result};

/// The app's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/js/{file}", get(web::script))
        .route("/style.css", get(web::style))
        .route("/api/notes", get(list).post(create))
        .route("/api/notes/{id}", get(read).put(update).delete(remove))
        .route("/api/notes/{id}/resolve", post(resolve))
        .route("/api/notes/{id}/undelete", post(undelete))
        .route("/api/notes/{id}/revert", post(revert))
        .route(
            "/api/notes/{id}/images/{name}",
            get(image).put(add_image).delete(remove_image),
        )
        .route("/api/notebooks", get(notebooks))
        .route("/api/sync", get(sync_state).put(set_sync).delete(stop_sync))
        .route("/api/sync/now", post(sync_now))
        .route("/api/events", get(events))
        .fallback(unknown)
        .layer(middleware::from_fn(same_origin))
        .with_state(app)
}

/// A JSON body, with a clear error for anything else.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(q)| q)
        .map_err(|e| Error::BadRequest(format!("invalid query: {}", e.body_text())))
}

async fn unknown(method: Method, uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no route {method} {}", uri.path()))
}

async fn list(
    State(app): State<App>,
    q: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let list = queries::list(app.db(), app.tracker(), app.facets(), &q).await?;
    Ok(Json(json!(list)))
}

async fn create(State(app): State<App>, bytes: Bytes) -> Result<Response> {
    let input: NoteInput = body(&bytes)?;
    let note = notes::create(app.db(), &input, app.device()).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"note": note, "state": state})),
    )
        .into_response())
}

async fn badge(app: &App, id: String) -> Result<Value> {
    Ok(json!(app.tracker().badge_of(&id).await?))
}

async fn read(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>> {
    let got = notes::get(app.db(), &id).await?;
    let state = badge(&app, got.note.id.clone()).await?;
    let suggested = got.suggested_body(app.device());
    Ok(Json(json!({
        "note": got.note,
        "state": state,
        "versions": got.versions,
        "suggested_body": suggested,
        "device": app.device(),
    })))
}

async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>> {
    let input: NoteInput = body(&bytes)?;
    let note = notes::update(app.db(), &id, &input, app.device()).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok(Json(json!({"note": note, "state": state})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevQuery {
    rev: Option<String>,
}

async fn remove(
    State(app): State<App>,
    Path(id): Path<String>,
    q: std::result::Result<Query<RevQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let rev = query(q)?.rev.ok_or_else(|| {
        Error::BadRequest("?rev= is required to delete a note (its current revision)".into())
    })?;
    let new = notes::delete(app.db(), &id, &rev).await?;
    Ok(Json(json!({"ok": true, "id": id, "rev": new})))
}

async fn resolve(
    State(app): State<App>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>> {
    let input: ResolveInput = body(&bytes)?;
    let note = notes::resolve(app.db(), &id, &input, app.device()).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok(Json(json!({"note": note, "state": state})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UndeleteInput {
    /// The deletion's revision.
    rev: String,
    /// The revision the deletion replaced, whose content comes back.
    from: String,
}

async fn undelete(
    State(app): State<App>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>> {
    let input: UndeleteInput = body(&bytes)?;
    let note = recover::undelete(app.db(), &id, &input.rev, &input.from, app.device()).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok(Json(json!({"note": note, "state": state})))
}

async fn revert(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>> {
    let remote = app.sync().remote().ok_or_else(|| {
        Error::BadRequest("no server is set: there is no server's version".into())
    })?;
    let note = recover::revert_to_server(app.db(), &remote.open()?, &id, app.device()).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok(Json(json!({"note": note, "state": state})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    /// The note's revision (the current one, to change it; a version's, to read it).
    rev: Option<String>,
    /// The image's digest: the page names it so that a URL always means the same bytes,
    /// which the browser may then keep.
    d: Option<String>,
}

fn required_rev(q: ImageQuery, what: &str) -> Result<String> {
    q.rev.ok_or_else(|| {
        Error::BadRequest(format!(
            "?rev= is required to {what} (the note's current revision)"
        ))
    })
}

/// An image, streamed from the store. It is served as an image only, in a sandbox: an
/// SVG opened by itself runs no script as this page.
async fn image(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    q: std::result::Result<Query<ImageQuery>, QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let att = images::read(app.db(), &id, &name, q.rev.as_deref()).await?;
    let cache = match q.d {
        Some(_) => "private, max-age=31536000, immutable",
        None => "no-cache",
    };
    let mut headers = HeaderMap::new();
    let content_type = att.content_type.unwrap_or_default();
    if let Ok(v) = header::HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(length) = att.length {
        headers.insert(header::CONTENT_LENGTH, length.into());
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok((headers, axum::body::Body::from_stream(att.body)).into_response())
}

/// Adds an image from the request's body, streamed into the store as it arrives.
async fn add_image(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    q: std::result::Result<Query<ImageQuery>, QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response> {
    let rev = required_rev(query(q)?, "add an image")?;
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let content_type = text(header::CONTENT_TYPE).unwrap_or("").to_owned();
    let length = match text(header::CONTENT_LENGTH) {
        Some(l) => Some(
            l.parse::<u64>()
                .map_err(|_| Error::BadRequest(format!("Content-Length {l:?} is no number")))?,
        ),
        None => None,
    };
    let up = images::Upload {
        name,
        content_type,
        length,
    };
    let stream = body
        .into_data_stream()
        .map(|c| c.map_err(std::io::Error::other));
    let (note, name) = images::add(app.db(), app.device(), &id, &rev, up, stream).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"note": note, "state": state, "name": name})),
    )
        .into_response())
}

async fn remove_image(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    q: std::result::Result<Query<ImageQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let rev = required_rev(query(q)?, "remove an image")?;
    let note = images::remove(app.db(), app.device(), &id, &rev, &name).await?;
    let state = badge(&app, note.id.clone()).await?;
    Ok(Json(json!({"note": note, "state": state})))
}

async fn notebooks(State(app): State<App>) -> Result<Json<Value>> {
    let (notebooks, tags) = app.facets().counts(app.db()).await?;
    Ok(Json(json!({"notebooks": notebooks, "tags": tags})))
}

async fn sync_state(State(app): State<App>) -> Result<Json<Value>> {
    Ok(Json(json!(app.sync().current().await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncInput {
    url: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

async fn set_sync(State(app): State<App>, bytes: Bytes) -> Result<Json<Value>> {
    let input: SyncInput = body(&bytes)?;
    let remote = Remote::parse(&input.url, input.user, input.password)?;
    tracing::info!(remote = %remote.shown(), "sync server set");
    app.set_remote(Some(remote)).await?;
    Ok(Json(json!(app.sync().current().await?)))
}

/// "Sync now": cuts short a wait before a retry (or before restarting a stopped sync), for a
/// user who knows the network is back. Answers whether something was waiting, and the state.
async fn sync_now(State(app): State<App>) -> Result<Json<Value>> {
    let retried = app.sync().sync_now();
    Ok(Json(
        json!({"retried": retried, "sync": app.sync().current().await?}),
    ))
}

async fn stop_sync(State(app): State<App>) -> Result<Json<Value>> {
    tracing::info!("sync stopped: local only");
    app.set_remote(None).await?;
    Ok(Json(json!(app.sync().current().await?)))
}

/// The live updates: first the sync state with every badge that is not "synced" (`full`),
/// then one server-sent event per update (`changes` or `sync`, JSON data), and `resync` when
/// this page fell behind and must start over. Badges reach a page only through this stream,
/// in the order they were published, so a page never shows an older badge over a newer one.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe before reading the snapshot: an update published in between comes after
    // the snapshot and repeats or advances it, never undoes it.
    let rx = app.hub().subscribe();
    let first = match app.sync().current().await {
        Ok(sync) => Some(Update::Sync {
            sync,
            badges: app.tracker().published(),
            full: true,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "reading the sync state for a new page");
            None
        }
    };
    let updates = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(update) => sse_event(&update),
            Err(RecvError::Lagged(_)) => SseEvent::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    let start = futures::stream::iter(first.map(|u| Ok(sse_event(&u))));
    let closing = app.closing().clone().cancelled_owned();
    Sse::new(start.chain(updates).take_until(closing)).keep_alive(KeepAlive::default())
}

fn sse_event(update: &Update) -> SseEvent {
    SseEvent::default()
        .event(update.event_name())
        .json_data(update)
        .unwrap_or_else(|_| SseEvent::default().event("resync").data("{}"))
}

/// Refuses requests that change something unless they come from the app's own page, and
/// any request that names the app by a host name other than `localhost` (a web page whose
/// name was pointed at this machine, "DNS rebinding").
async fn same_origin(headers: HeaderMap, req: Request, next: Next) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_local_host(host) {
        return Error::Forbidden(format!(
            "the app answers to localhost or an IP address, not {host:?}"
        ))
        .into_response();
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let own = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host);
            if !own {
                return Error::Forbidden(format!(
                    "requests from {origin} may not change notes; use the app's own page"
                ))
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Whether a `Host` header names this machine by `localhost` or an IP address.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_localhost_and_addresses_are_local_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "10.0.0.2",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "", "[nope]:1", "127.0.0.1.nip.io:80"] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
