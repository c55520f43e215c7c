//! Document endpoints: `GET`/`PUT`/`DELETE`/`COPY /{db}/{docid}` with CouchDB's query
//! options (`rev`, `revs`, `revs_info`, `open_revs`, `conflicts`, `deleted_conflicts`,
//! `latest`, `local_seq`, `meta`, `attachments`, `atts_since`, `new_edits`), `POST /{db}`,
//! and `_local` documents. Multipart bodies are `multipart.rs`'s, multipart answers
//! `multipart_answer.rs`'s.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use settee_store::{DocResult, GetOptions, OpenRevResult, OpenRevs};

use crate::auth::Need;
use crate::body;
use crate::error::{doc_error, HttpError};
use crate::inline_answer::Inliner;
use crate::location::encode_segment;
use crate::multipart_answer::{self, Follows, Marking, MixedPart};
use crate::multipart_put;
use crate::multipart_staged::{self, Staged};
use crate::query::{parse_rev, Query};
use crate::registry::OpenDb;
use crate::request::{check, Request};
use crate::state::State;
use crate::validate::{Validators, Writer};

/// The reply to a successful write: `{"ok": true, "id", "rev"}` with `ETag` and
/// `Location`.
fn written(open: &OpenDb, result: &DocResult, status: StatusCode) -> Response {
    let mut res = body::json(status, result);
    if let Some(rev) = &result.rev {
        res = body::with_etag(res, &rev.to_string());
    }
    let loc = format!(
        "/{}/{}",
        encode_segment(&open.name),
        encode_segment(&result.id)
    );
    if let Ok(v) = HeaderValue::from_str(&loc) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The `GetOptions` of a document read's query.
pub(crate) fn get_options(q: &Query) -> Result<GetOptions, HttpError> {
    Ok(GetOptions {
        rev: q.rev("rev")?,
        latest: q.bool("latest")?,
        revs: q.bool("revs")?,
        revs_info: q.bool("revs_info")?,
        conflicts: q.bool("conflicts")?,
        deleted_conflicts: q.bool("deleted_conflicts")?,
        meta: q.bool("meta")?,
        local_seq: q.bool("local_seq")?,
        attachments: q.bool("attachments")?,
        att_encoding_info: q.bool("att_encoding_info")?,
        atts_since: q.revs("atts_since")?.unwrap_or_default(),
    })
}

/// How a multipart answer to a document read asked with `asked` marks its attachments:
/// all sent, but those `atts_since` leaves out.
fn marking(asked: &GetOptions) -> Marking<'_> {
    Marking {
        send: true,
        atts_since: &asked.atts_since,
        keep_revisions: asked.revs,
        keep_encoding_info: asked.att_encoding_info,
    }
}

/// Whether the client asked for a multipart answer of `kind` (`mixed`, `related`).
pub(crate) fn accepts_multipart(headers: &HeaderMap, kind: &str) -> bool {
    let want = format!("multipart/{kind}");
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().to_ascii_lowercase().starts_with(&want))
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

/// The reply to a document written by `PUT` or `POST`: 201 [`written`], or with `batch=ok`
/// CouchDB's 202 `{"ok": true, "id"}` (no rev: the write was not promised yet).
fn written_or_accepted(open: &OpenDb, result: &DocResult, batch: bool) -> Response {
    if batch {
        return body::json(StatusCode::ACCEPTED, &json!({"ok": true, "id": result.id}));
    }
    written(open, result, StatusCode::CREATED)
}

/// `/{db}/{docid}`.
pub(crate) async fn document(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    id: &str,
    req: Request,
) -> Result<Response, HttpError> {
    match req.method {
        Method::GET | Method::HEAD => get(open, id, req).await,
        Method::PUT => put(state, open, id, req).await,
        Method::DELETE => delete(open, id, req).await,
        ref m if m.as_str() == "COPY" => copy(open, id, req).await,
        _ => Err(HttpError::method_not_allowed(
            "DELETE,GET,HEAD,POST,PUT,COPY",
        )),
    }
}

async fn get(open: &Arc<OpenDb>, id: &str, req: Request) -> Result<Response, HttpError> {
    let q = req.query();
    let mut opts = get_options(&q)?;
    if let Some(which) = q.str("open_revs") {
        // CouchDB's multipart answer carries attachment bodies whether or not
        // `attachments=true` was given (only `atts_since` turns them into stubs); its
        // replicator relies on that.
        let multipart = accepts_multipart(&req.headers, "mixed") || !accepts_json(&req.headers);
        opts.attachments |= multipart;
        let want_atts = opts.attachments || !opts.atts_since.is_empty();
        let revs = if which == "all" {
            OpenRevs::All
        } else {
            match body::parse_json(which.as_bytes())? {
                Value::Array(items) => OpenRevs::Revs(
                    items
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .ok_or_else(|| HttpError::bad_request("Invalid rev format"))
                                .and_then(parse_rev)
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(HttpError::bad_request("Invalid list of revisions")),
            }
        };
        let all = revs == OpenRevs::All;
        let id2 = id.to_owned();
        // An answer with attachments reads stubs (and `_revisions`, for the `atts_since`
        // rule) and streams their bytes from the store (`multipart_answer.rs`, or inline
        // in JSON: `inline_answer.rs`).
        let asked = opts.clone();
        if want_atts {
            opts.attachments = false;
            opts.atts_since = Vec::new();
            opts.revs = true;
            opts.att_encoding_info = true;
        }
        let results = open
            .run(move |db| Ok(db.open_revs(&id2, revs, &opts)?))
            .await?;
        if all && results.is_empty() {
            return Err(HttpError::not_found("missing"));
        }
        // CouchDB answers multipart unless the client asks for JSON (PouchDB does; its
        // replicator and curl's `*/*` get multipart).
        if multipart {
            let parts = results
                .into_iter()
                .map(|r| match r {
                    OpenRevResult::Ok(doc) => MixedPart::Doc(Follows::mark(doc, &marking(&asked))),
                    OpenRevResult::Missing(rev) => MixedPart::Error(json!({"missing": rev})),
                })
                .collect();
            return Ok(multipart_answer::mixed(open, parts));
        }
        if want_atts {
            let mut inliner = Inliner::new();
            let list: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    OpenRevResult::Ok(doc) => {
                        json!({"ok": inliner.doc(open, Follows::mark(doc, &marking(&asked)))})
                    }
                    OpenRevResult::Missing(rev) => json!({"missing": rev}),
                })
                .collect();
            return inliner.response(StatusCode::OK, &Value::Array(list));
        }
        let list: Vec<&OpenRevResult> = results.iter().collect();
        return Ok(body::json(StatusCode::OK, &list));
    }
    let id2 = id.to_owned();
    let want_atts = opts.attachments || !opts.atts_since.is_empty();
    let related = want_atts && accepts_multipart(&req.headers, "related");
    let asked = opts.clone();
    if want_atts {
        // Stubs, `_revisions` (for the `atts_since` rule) and the encoding info (encoded
        // attachments are sent encoded); the bytes are streamed.
        opts.attachments = false;
        opts.atts_since = Vec::new();
        opts.revs = true;
        opts.att_encoding_info = true;
    }
    let doc = open.run(move |db| Ok(db.get(&id2, &opts)?)).await?;
    let rev = doc
        .get("_rev")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH) {
        if inm.to_str().ok().map(|v| v.trim().trim_matches('"')) == Some(rev.as_str()) {
            let mut res = Response::new(axum::body::Body::empty());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(body::with_etag(res, &rev));
        }
    }
    if related {
        let doc = Follows::mark(doc, &marking(&asked));
        if doc.has_files() {
            return Ok(body::with_etag(
                multipart_answer::doc_related(open, doc),
                &rev,
            ));
        }
        return Ok(body::with_etag(body::json(StatusCode::OK, doc.doc()), &rev));
    }
    if want_atts {
        let mut inliner = Inliner::new();
        let doc = inliner.doc(open, Follows::mark(doc, &marking(&asked)));
        return Ok(body::with_etag(
            inliner.response(StatusCode::OK, &doc)?,
            &rev,
        ));
    }
    Ok(body::with_etag(body::json(StatusCode::OK, &doc), &rev))
}

/// The document of a PUT: JSON, or `multipart/related` (the document, then its
/// attachments' bytes), whose attachments are staged in the store when it is a replicated
/// revision (`new_edits=false`) and else put inline.
async fn read_doc(
    state: &State,
    open: &Arc<OpenDb>,
    req: Request,
    new_edits: bool,
) -> Result<(Map<String, Value>, Staged), HttpError> {
    let ctype = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(ct) = ctype.as_deref() {
        if ct.to_ascii_lowercase().starts_with("multipart/related") {
            if !new_edits {
                return multipart_staged::read_related_staged(open, ct, req.body, &state.limits)
                    .await;
            }
            let doc =
                multipart_put::read_related_inline(ct, req.body, state.limits.max_body).await?;
            return Ok((doc, Vec::new()));
        }
    }
    let bytes = body::read_bytes(req.body, state.limits.max_body).await?;
    match body::parse_json(&bytes)? {
        Value::Object(m) => Ok((m, Vec::new())),
        _ => Err(HttpError::bad_request("Document must be a JSON object")),
    }
}

async fn put(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    id: &str,
    req: Request,
) -> Result<Response, HttpError> {
    if id.starts_with("_design/") {
        check(open, &req.user, Need::Admin)?;
    }
    let q = req.query();
    let new_edits = q.bool_or("new_edits", true)?;
    let batch = q.str("batch") == Some("ok");
    let query_rev = req.rev()?;
    let writer = Writer::new(open, &req.user);
    let (mut doc, staged) = read_doc(state, open, req, new_edits).await?;
    doc.insert("_id".into(), Value::String(id.to_owned()));
    if let Some(r) = query_rev {
        match doc.get("_rev").and_then(Value::as_str) {
            Some(body_rev) if body_rev != r.to_string() => {
                multipart_staged::discard(open, staged).await;
                return Err(HttpError::bad_request(
                    "Document rev from request body and query string have different values",
                ));
            }
            _ => {
                doc.insert("_rev".into(), Value::String(r.to_string()));
            }
        }
    }
    let result = if staged.is_empty() {
        write_one(open, Value::Object(doc), new_edits, writer).await?
    } else {
        multipart_staged::write_staged(open, Value::Object(doc), staged, writer).await?
    };
    Ok(written_or_accepted(open, &result, batch))
}

/// Writes one document, turning a per-document error into the request's error.
/// The document goes through the database's `validate_doc_update` functions first.
pub(crate) async fn write_one(
    open: &Arc<OpenDb>,
    doc: Value,
    new_edits: bool,
    writer: Writer,
) -> Result<DocResult, HttpError> {
    let mut results = open
        .run(move |db| {
            let mut doc = doc;
            let validators = Validators::load(db)?;
            validators.assign_id(&mut doc, new_edits);
            validators.check(db, &writer, &mut doc, new_edits)?;
            Ok(db.bulk_docs_checked(vec![doc], new_edits)?)
        })
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| HttpError::internal("a write of one document returned no result"))?;
    match &result.error {
        Some(e) => Err(doc_error(e, result.reason.as_deref().unwrap_or(""))),
        None => Ok(result),
    }
}

/// `POST /{db}`: a new document (an id is generated when it has none).
pub(crate) async fn post(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    body::require_json_type(&req.headers)?;
    let batch = req.query().str("batch") == Some("ok");
    let user = req.user.clone();
    let doc = body::read_json_object(req.body, state.limits.max_body).await?;
    let id = doc.get("_id").and_then(Value::as_str).map(str::to_owned);
    if let Some(id) = &id {
        if id.starts_with("_design/") {
            check(open, &user, Need::Admin)?;
        }
        if id.starts_with("_local/") {
            let res = open
                .run(move |db| Ok(db.put_local(local_body(Value::Object(doc)))?))
                .await?;
            return Ok(body::json(StatusCode::CREATED, &res));
        }
    }
    let writer = Writer::new(open, &user);
    let result = write_one(open, Value::Object(doc), true, writer).await?;
    Ok(written_or_accepted(open, &result, batch))
}

async fn delete(open: &Arc<OpenDb>, id: &str, req: Request) -> Result<Response, HttpError> {
    if id.starts_with("_design/") {
        check(open, &req.user, Need::Admin)?;
    }
    let rev = req.rev()?;
    let id2 = id.to_owned();
    let writer = Writer::new(open, &req.user);
    let result = open
        .run(move |db| match rev {
            Some(rev) => {
                let mut tombstone = json!({"_id": id2, "_rev": rev.to_string(), "_deleted": true});
                Validators::load(db)?.check(db, &writer, &mut tombstone, true)?;
                Ok(db.delete(&id2, &rev)?)
            }
            None => {
                // CouchDB: 404 for a document that does not exist, else 409.
                match db.get(&id2, &GetOptions::default()) {
                    Err(e) if e.is_not_found() && e.reason() == "missing" => Err(e.into()),
                    _ => Err(HttpError::conflict()),
                }
            }
        })
        .await?;
    Ok(written(open, &result, StatusCode::OK))
}

/// `COPY /{db}/{docid}` with `Destination: newid` or `newid?rev=...`.
async fn copy(open: &Arc<OpenDb>, id: &str, req: Request) -> Result<Response, HttpError> {
    let q = req.query();
    let dest = req
        .headers
        .get("destination")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HttpError::bad_request("Destination header is mandatory for COPY."))?;
    let (dest_id, dest_rev) = match dest.split_once("?rev=") {
        Some((i, r)) => (i.to_owned(), Some(parse_rev(r)?)),
        None => (dest.to_owned(), None),
    };
    let dest_id = percent_encoding::percent_decode_str(&dest_id)
        .decode_utf8_lossy()
        .into_owned();
    if dest_id.starts_with("_design/") {
        check(open, &req.user, Need::Admin)?;
    }
    let opts = GetOptions {
        rev: q.rev("rev")?,
        attachments: true,
        ..Default::default()
    };
    let id2 = id.to_owned();
    let src = open.run(move |db| Ok(db.get(&id2, &opts)?)).await?;
    let Value::Object(mut doc) = src else {
        return Err(HttpError::internal("the source document is not an object"));
    };
    doc.insert("_id".into(), Value::String(dest_id));
    match dest_rev {
        Some(r) => doc.insert("_rev".into(), Value::String(r.to_string())),
        None => doc.remove("_rev"),
    };
    let writer = Writer::new(open, &req.user);
    let result = write_one(open, Value::Object(doc), true, writer).await?;
    Ok(written(open, &result, StatusCode::CREATED))
}

/// A `_local` document as CouchDB stores it: special members other than `_id`, `_rev` and
/// `_deleted` (`_revisions`, `_attachments`, ...) are dropped, since local documents have
/// neither history nor attachments.
pub(crate) fn local_body(doc: Value) -> Value {
    match doc {
        Value::Object(mut m) => {
            m.retain(|k, _| {
                !k.starts_with('_') || matches!(k.as_str(), "_id" | "_rev" | "_deleted")
            });
            Value::Object(m)
        }
        other => other,
    }
}

/// `/{db}/_local/{id}`: GET, PUT, DELETE of a local (non-replicated) document.
pub(crate) async fn local(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    id: &str,
    req: Request,
) -> Result<Response, HttpError> {
    let id = id.to_owned();
    match req.method {
        Method::GET | Method::HEAD => {
            let doc = open.run(move |db| Ok(db.get_local(&id)?)).await?;
            Ok(body::json(StatusCode::OK, &doc))
        }
        Method::PUT => {
            let q = req.query();
            let query_rev = q.str("rev").map(str::to_owned);
            let mut doc = body::read_json_object(req.body, state.limits.max_body).await?;
            doc.insert("_id".into(), Value::String(id));
            if let Some(r) = query_rev {
                doc.insert("_rev".into(), Value::String(r));
            }
            let res = open
                .run(move |db| Ok(db.put_local(local_body(Value::Object(doc)))?))
                .await?;
            Ok(body::json(StatusCode::CREATED, &res))
        }
        Method::DELETE => {
            let rev = req
                .query()
                .str("rev")
                .map(str::to_owned)
                .ok_or_else(HttpError::conflict)?;
            let res = open.run(move |db| Ok(db.delete_local(&id, &rev)?)).await?;
            Ok(body::json(StatusCode::OK, &res))
        }
        _ => Err(HttpError::method_not_allowed("GET,PUT,DELETE")),
    }
}
