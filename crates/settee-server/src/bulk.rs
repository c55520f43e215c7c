//! Many documents per request: `_all_docs` (GET and POST `keys`), `_design_docs`,
//! `_local_docs`, `_bulk_docs`, `_bulk_get` and `_revs_diff`.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use settee_store::{
    AllDocsOptions, AllDocsRow, BulkGetOptions, BulkGetRequest, DocResult, GetOptions,
};

use crate::auth::{self, Need};
use crate::body;
use crate::error::HttpError;
use crate::inline_answer::Inliner;
use crate::multipart_answer::{Follows, Marking, MixedPart};
use crate::query::{parse_rev, Query};
use crate::registry::OpenDb;
use crate::request::Request;
use crate::state::State;
use crate::validate::{Validators, Writer};

/// Where a JSON key falls among string ids in CouchDB's collation: `null`, booleans and
/// numbers sort before every string, arrays and objects after.
enum KeyBound {
    Id(String),
    BeforeAll,
    AfterAll,
}

fn key_bound(v: Value) -> KeyBound {
    match v {
        Value::String(s) => KeyBound::Id(s),
        Value::Array(_) | Value::Object(_) => KeyBound::AfterAll,
        _ => KeyBound::BeforeAll,
    }
}

/// `/{db}/_all_docs` (and `_design_docs`, which is `_all_docs` within `range`).
pub(crate) async fn all_docs(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
    range: Option<(&'static str, &'static str)>,
) -> Result<Response, HttpError> {
    let q = req.query();
    let mut keys: Option<Vec<Value>> = match q.json("keys")? {
        Some(Value::Array(k)) => Some(k),
        Some(_) => return Err(HttpError::bad_request("`keys` must be an array")),
        None => None,
    };
    if req.method == Method::POST {
        body::require_json_type(&req.headers)?;
        let b = body::read_json_object(req.body, state.limits.max_body).await?;
        match b.get("keys") {
            Some(Value::Array(k)) => keys = Some(k.clone()),
            Some(_) => {
                return Err(HttpError::bad_request(
                    "`keys` body member must be an array",
                ))
            }
            None => {}
        }
    } else if !req.is_get() {
        return Err(HttpError::method_not_allowed("GET,HEAD,POST"));
    }
    let key = q.json("key")?;
    if key.is_some() && keys.is_some() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "query_parse_error",
            "`keys` is incompatible with `key`, `start_key` and `end_key`",
        ));
    }
    let descending = q.bool("descending")?;
    let mut opts = AllDocsOptions {
        limit: q.u64("limit")?.map(|l| l as usize),
        skip: q.u64("skip")?.unwrap_or(0) as usize,
        descending,
        include_docs: q.bool("include_docs")?,
        conflicts: q.bool("conflicts")?,
        inclusive_end: q.bool_or("inclusive_end", true)?,
        attachments: q.bool("attachments")?,
        ..Default::default()
    };
    let mut empty = false;
    // `key` is the range from it to it (so a deleted document has no row, unlike `keys`).
    let start = key.clone().or(q.json("startkey")?).or(q.json("start_key")?);
    let end = key.or(q.json("endkey")?).or(q.json("end_key")?);
    // Ascending, a key before all ids starts at the first one; descending, it ends there.
    match start.map(key_bound) {
        Some(KeyBound::Id(s)) => opts.startkey = Some(s),
        Some(KeyBound::BeforeAll) => empty |= descending,
        Some(KeyBound::AfterAll) => empty |= !descending,
        None => {}
    }
    match end.map(key_bound) {
        Some(KeyBound::Id(s)) => opts.endkey = Some(s),
        Some(KeyBound::BeforeAll) => empty |= !descending,
        Some(KeyBound::AfterAll) => empty |= descending,
        None => {}
    }
    if let Some((lo, hi)) = range {
        let (first, last) = if descending { (hi, lo) } else { (lo, hi) };
        let clamp_start =
            opts.startkey
                .as_deref()
                .is_none_or(|s| if descending { s > first } else { s < first });
        if clamp_start {
            opts.startkey = Some(first.to_owned());
        }
        let clamp_end =
            opts.endkey
                .as_deref()
                .is_none_or(|e| if descending { e < last } else { e > last });
        if clamp_end {
            opts.endkey = Some(last.to_owned());
            opts.inclusive_end = false;
        }
    }
    let update_seq = q.bool("update_seq")?;
    let value = open
        .run(move |db| {
            let total = db.info()?.doc_count;
            let mut out = if empty && keys.is_none() {
                json!({"total_rows": total, "offset": 0, "rows": []})
            } else {
                match keys {
                    Some(keys) => rows_for_keys(db, keys, opts)?,
                    None => serde_json::to_value(db.all_docs(&opts)?)
                        .map_err(|e| HttpError::internal(format!("_all_docs: {e}")))?,
                }
            };
            if update_seq {
                out["update_seq"] = Value::from(db.info()?.update_seq);
            }
            Ok(out)
        })
        .await?;
    Ok(body::json(StatusCode::OK, &value))
}

/// `_all_docs` with `keys`: a row per key in order; keys that are not strings name no
/// document (`not_found`).
fn rows_for_keys(
    db: &settee_store::Database,
    keys: Vec<Value>,
    opts: AllDocsOptions,
) -> Result<Value, HttpError> {
    let ids: Vec<String> = keys
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let found = db.all_docs(&AllDocsOptions {
        keys: Some(ids),
        limit: None,
        skip: 0,
        descending: false,
        ..opts.clone()
    })?;
    let mut by_string = found.rows.into_iter();
    let mut rows: Vec<Value> = Vec::with_capacity(keys.len());
    for k in keys {
        if k.is_string() {
            match by_string.next() {
                Some(row) => rows.push(row_json(row)?),
                None => return Err(HttpError::internal("_all_docs returned too few rows")),
            }
        } else {
            rows.push(json!({"key": k, "error": "not_found"}));
        }
    }
    if opts.descending {
        rows.reverse();
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .skip(opts.skip)
        .take(opts.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(json!({"total_rows": found.total_rows, "offset": found.offset, "rows": rows}))
}

fn row_json(row: AllDocsRow) -> Result<Value, HttpError> {
    serde_json::to_value(row).map_err(|e| HttpError::internal(format!("_all_docs row: {e}")))
}

/// `/{db}/_local_docs`: the `_local` documents are not listed (Settee keeps them for
/// checkpoints only), so the answer is always empty.
pub(crate) async fn local_docs(open: &Arc<OpenDb>, req: Request) -> Result<Response, HttpError> {
    let _ = open;
    if !req.is_get() && req.method != Method::POST {
        return Err(HttpError::method_not_allowed("GET,HEAD,POST"));
    }
    Ok(body::json(
        StatusCode::OK,
        &json!({"total_rows": null, "offset": null, "rows": []}),
    ))
}

/// `POST /{db}/_bulk_docs` with `docs` and `new_edits`.
pub(crate) async fn bulk_docs(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    req.require_json_post()?;
    let user = req.user.clone();
    let mut b = body::read_json_object(req.body, state.limits.max_body).await?;
    let docs = match b.remove("docs") {
        Some(Value::Array(d)) => d,
        Some(_) => return Err(HttpError::bad_request("`docs` parameter must be an array.")),
        None => {
            return Err(HttpError::bad_request(
                "POST body must include `docs` parameter.",
            ))
        }
    };
    if docs.iter().any(|d| !d.is_object()) {
        return Err(HttpError::bad_request("Document must be a JSON object"));
    }
    let new_edits = match b.get("new_edits") {
        None => true,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err(HttpError::bad_request("`new_edits` must be a boolean")),
    };
    let is_db_admin = auth::check(&open.security(), &user, Need::Admin).is_ok();
    let denied = if user.name.is_none() {
        "unauthorized"
    } else {
        "forbidden"
    };
    let writer = Writer::new(open, &user);
    let results = open
        .run(move |db| {
            let validators = Validators::load(db)?;
            // Documents go to the store in one call, except `_local` ones (no revision
            // tree) and design documents a non-admin may not write: their results are
            // put back in their places.
            let mut slots: Vec<Option<Value>> = Vec::with_capacity(docs.len());
            let mut tree_docs = Vec::new();
            for mut d in docs {
                validators.assign_id(&mut d, new_edits);
                let id = d
                    .get("_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if id.starts_with("_local/") {
                    let id = id.to_owned();
                    slots.push(Some(match db.put_local(crate::document::local_body(d)) {
                        Ok(r) => json!({"ok": true, "id": r.id, "rev": r.rev}),
                        Err(e) => json!({"id": id, "error": e.name(), "reason": e.reason()}),
                    }));
                } else if id.starts_with("_design/") && !is_db_admin {
                    slots.push(Some(json!({"id": id, "error": denied,
                        "reason": "You are not a db or server admin."})));
                } else if let Err(e) = validators.check(db, &writer, &mut d, new_edits) {
                    // A refused document is that document's error; the others are written.
                    let mut row = json!({"id": id, "error": e.error, "reason": e.reason});
                    // A replicated revision's error row names it, as CouchDB's does.
                    if let (false, Some(rev)) = (new_edits, d.get("_rev")) {
                        row["rev"] = rev.clone();
                    }
                    slots.push(Some(row));
                } else {
                    slots.push(None);
                    tree_docs.push(d);
                }
            }
            let mut written = db.bulk_docs_checked(tree_docs, new_edits)?.into_iter();
            let mut out = Vec::with_capacity(slots.len());
            for slot in slots {
                let v = match slot {
                    Some(v) => v,
                    None => {
                        let r: DocResult = written.next().ok_or_else(|| {
                            HttpError::internal("_bulk_docs returned too few results")
                        })?;
                        // CouchDB answers a `new_edits=false` request with its failures only.
                        if !new_edits && r.is_ok() {
                            continue;
                        }
                        // CouchDB's error rows have no `rev`.
                        let r = if r.is_ok() {
                            r
                        } else {
                            DocResult { rev: None, ..r }
                        };
                        serde_json::to_value(&r)
                            .map_err(|e| HttpError::internal(format!("_bulk_docs: {e}")))?
                    }
                };
                if !new_edits && v.get("error").is_none() {
                    continue;
                }
                out.push(v);
            }
            Ok(out)
        })
        .await?;
    Ok(body::json(StatusCode::CREATED, &results))
}

/// `POST /{db}/_bulk_get?revs=&attachments=&latest=`.
pub(crate) async fn bulk_get(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    req.require_json_post()?;
    let q: Query = req.query();
    let asked = BulkGetOptions {
        revs: q.bool("revs")?,
        latest: q.bool("latest")?,
        attachments: q.bool("attachments")?,
    };
    let encoding_info = q.bool("att_encoding_info")?;
    let multipart = crate::document::accepts_multipart(&req.headers, "mixed");
    // The answer reads stubs (with `_revisions`, for the `atts_since` rule, and the
    // encoding info: a multipart answer sends encoded attachments encoded) and streams the
    // attachments' bytes from the store (`multipart_answer.rs`, or inline in JSON:
    // `inline_answer.rs`).
    let opts = GetOptions {
        revs: true,
        latest: asked.latest,
        attachments: false,
        att_encoding_info: true,
        ..Default::default()
    };
    let b = body::read_json_object(req.body, state.limits.max_body).await?;
    let Some(Value::Array(items)) = b.get("docs") else {
        return Err(HttpError::bad_request("Missing JSON list of 'docs'."));
    };
    // Each item is checked on its own: a bad one is that item's error, as in CouchDB.
    let mut slots: Vec<Result<BulkGetRequest, Value>> = Vec::with_capacity(items.len());
    for item in items {
        slots.push(bulk_get_item(item));
    }
    // Each result's `atts_since`, in order (a bad item has none).
    let since: Vec<Vec<settee_revtree::Rev>> = slots
        .iter()
        .map(|s| s.as_ref().map(|r| r.atts_since.clone()).unwrap_or_default())
        .collect();
    let results = open
        .run(move |db| {
            // Stubs only: each item's `atts_since` (kept in `since`) is applied when the
            // answer is written.
            let reqs: Vec<BulkGetRequest> = slots
                .iter()
                .filter_map(|s| s.as_ref().ok().cloned())
                .map(|r| BulkGetRequest {
                    atts_since: Vec::new(),
                    ..r
                })
                .collect();
            let mut found = db.bulk_get_with(&reqs, &opts)?.into_iter();
            let mut out = Vec::with_capacity(slots.len());
            for s in slots {
                match s {
                    Ok(_) => {
                        let r = found.next().ok_or_else(|| {
                            HttpError::internal("_bulk_get returned too few results")
                        })?;
                        out.push(
                            serde_json::to_value(r)
                                .map_err(|e| HttpError::internal(format!("_bulk_get: {e}")))?,
                        );
                    }
                    Err(v) => out.push(v),
                }
            }
            Ok(out)
        })
        .await?;
    let how = |since: &[settee_revtree::Rev]| {
        // A copy per document: `since` is that item's.
        (
            asked.attachments || !since.is_empty(),
            asked.revs,
            encoding_info,
        )
    };
    if !multipart {
        // Each `ok` document with its attachments inline (or stubs), streamed.
        let mut inliner = Inliner::new();
        let mut results = results;
        for (r, since) in results.iter_mut().zip(&since) {
            let Some(Value::Array(docs)) = r.get_mut("docs") else {
                continue;
            };
            for d in docs {
                let Some(doc) = d.get_mut("ok").map(Value::take) else {
                    continue;
                };
                let (send, keep_revisions, keep_encoding_info) = how(since);
                let marking = Marking {
                    send,
                    atts_since: since,
                    keep_revisions,
                    keep_encoding_info,
                };
                d["ok"] = inliner.doc(open, Follows::mark(doc, &marking));
            }
        }
        return inliner.response(StatusCode::OK, &json!({"results": results}));
    }
    {
        // One part per document or error, in order (CouchDB's multipart `_bulk_get`).
        let parts = results
            .into_iter()
            .zip(since)
            .flat_map(|(r, since)| match r.get("docs") {
                Some(Value::Array(docs)) => {
                    docs.iter().map(|d| (d.clone(), since.clone())).collect()
                }
                _ => Vec::new(),
            })
            .map(|(d, since)| match d {
                Value::Object(mut m) => match (m.remove("ok"), m.remove("error")) {
                    (Some(doc), _) => {
                        let (send, keep_revisions, keep_encoding_info) = how(&since);
                        let marking = Marking {
                            send,
                            atts_since: &since,
                            keep_revisions,
                            keep_encoding_info,
                        };
                        MixedPart::Doc(Follows::mark(doc, &marking))
                    }
                    (None, Some(e)) => MixedPart::Error(e),
                    (None, None) => MixedPart::Error(Value::Object(m)),
                },
                other => MixedPart::Error(other),
            })
            .collect();
        Ok(crate::multipart_answer::mixed(open, parts))
    }
}

fn bulk_get_item(item: &Value) -> Result<BulkGetRequest, Value> {
    let id = item.get("id").and_then(Value::as_str);
    let rev = item.get("rev").and_then(Value::as_str);
    let error = |reason: &str| json!({"id": id, "docs": [{"error": {"id": id, "rev": rev, "error": "bad_request", "reason": reason}}]});
    let Some(id) = id else {
        return Err(error("document id missed"));
    };
    let rev = match rev {
        Some(r) => Some(parse_rev(r).map_err(|_| error("Invalid rev format"))?),
        None => None,
    };
    let atts_since = match item.get("atts_since") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(parse_rev)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| error("Invalid rev format"))?,
        Some(_) => return Err(error("atts_since must be a list of revisions")),
    };
    Ok(BulkGetRequest {
        id: id.to_owned(),
        rev,
        atts_since,
    })
}

/// `POST /{db}/_revs_diff` (and the older `_missing_revs`, which answers
/// `{"missing_revs": {id: [revs]}}`).
pub(crate) async fn revs_diff(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    req: Request,
    missing_revs: bool,
) -> Result<Response, HttpError> {
    req.require_json_post()?;
    let revs = body::read_revs_by_id(req.body, state.limits.max_body).await?;
    let diff = open.run(move |db| Ok(db.revs_diff(revs)?)).await?;
    let mut out = Map::new();
    for (id, d) in diff {
        if missing_revs {
            out.insert(id, json!(d.missing));
            continue;
        }
        let mut entry = json!({"missing": d.missing});
        if !d.possible_ancestors.is_empty() {
            entry["possible_ancestors"] = json!(d.possible_ancestors);
        }
        out.insert(id, entry);
    }
    let v = if missing_revs {
        json!({"missing_revs": out})
    } else {
        Value::Object(out)
    };
    Ok(body::json(StatusCode::OK, &v))
}
