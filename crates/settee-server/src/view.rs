//! `GET`/`POST /{db}/_design/{ddoc}/_view/{view}`: JavaScript views, answered from an index
//! kept on disk and brought up to date incrementally, as CouchDB's are.
//!
//! A view's index (`settee_store::ViewIndex`, named by the view's signature, so a design
//! document revision that leaves the view alone keeps it) holds the rows its map function
//! emitted for every live document (winning revisions; design documents excluded) in
//! CouchDB's view order: key, then document id, then value. A query first brings it up to
//! date (`view_update.rs`: only the documents changed since the index's seq are mapped
//! again), then reads the range it asks for from the index. The query parameters are
//! CouchDB's (`key`, `keys`, `startkey`/`endkey` with `_docid` tie-breakers,
//! `inclusive_end`, `descending`, `skip`, `limit`, `include_docs`, `conflicts`, `reduce`,
//! `group`, `group_level`, `update_seq`, `stale`/`update`). `stale=ok` / `update=false`
//! answer from the index as it is (empty when it was never built, like CouchDB's unbuilt
//! index); `stale=update_after` / `update=lazy` do too and then bring it up to date.
//!
//! Costs: a map query reads its range (`skip` rows are read and dropped); `offset` counts
//! the rows before the range, and reduce reads every row of the range and reduces them
//! (built-in reduces ([`settee_js::Builtin`]) natively, JavaScript ones in chunks and then a
//! rereduce of the chunks' results): CouchDB keeps reductions in its B-tree's inner nodes
//! and answers both in logarithmic time, Settee's index does not, so both grow with the
//! rows involved. A map function that throws on a document is logged and the document
//! left out, and a JavaScript reduce that throws gives `null`, as in CouchDB.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use settee_query::collate;
use settee_store::{Database, GetOptions, ViewIndex, ViewKey, ViewRange};

use crate::body;
use crate::error::HttpError;
use crate::js;
use crate::query::Query;
use crate::registry::OpenDb;
use crate::request::Request;
use crate::state::State;
use crate::view_rows::{collate_ids, reduce_rows, view_def, Row};
use crate::view_update;

/// The parameters whose values are JSON keys.
const KEY_PARAMS: &[&str] = &["key", "startkey", "start_key", "endkey", "end_key"];

fn query_parse_error(reason: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "query_parse_error", reason)
}

/// The parameters of one view query.
#[derive(Debug, Default)]
struct Args {
    keys: Option<Vec<Value>>,
    start: Option<Value>,
    end: Option<Value>,
    start_docid: Option<String>,
    end_docid: Option<String>,
    inclusive_end: bool,
    descending: bool,
    skip: usize,
    limit: Option<usize>,
    include_docs: bool,
    conflicts: bool,
    attachments: bool,
    reduce: Option<bool>,
    group: Option<bool>,
    group_level: Option<usize>,
    update_seq: bool,
    staleness: Staleness,
}

/// How current the rows must be (`stale` / `update`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Staleness {
    /// Computed for the current update sequence (the default).
    #[default]
    Current,
    /// Whatever is cached (`stale=ok`, `update=false`).
    Cached,
    /// Whatever is cached, then the cache is brought up to date (`stale=update_after`,
    /// `update=lazy`).
    CachedThenUpdate,
}

fn positive(q: &Query, name: &str) -> Result<Option<u64>, HttpError> {
    match q.str(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n as u64)),
            Ok(_) => Err(query_parse_error(format!(
                "Invalid value for positive integer: \"{v}\""
            ))),
            Err(_) => Err(query_parse_error(format!(
                "Invalid value for integer: \"{v}\""
            ))),
        },
    }
}

fn opt_bool(q: &Query, name: &str) -> Result<Option<bool>, HttpError> {
    Ok(if q.has(name) {
        Some(q.bool(name)?)
    } else {
        None
    })
}

impl Args {
    fn parse(q: &Query, body_keys: Option<Vec<Value>>) -> Result<Args, HttpError> {
        let keys = match body_keys {
            Some(k) => Some(k),
            None => match q.json("keys")? {
                None => None,
                Some(Value::Array(k)) => Some(k),
                Some(_) => return Err(query_parse_error("`keys` must be an array of strings.")),
            },
        };
        let key = q.json("key")?;
        let start = match &key {
            Some(k) => Some(k.clone()),
            None => q.json("startkey")?.or(q.json("start_key")?),
        };
        let end = match key {
            Some(k) => Some(k),
            None => q.json("endkey")?.or(q.json("end_key")?),
        };
        let docid = |a: &str, b: &str| {
            q.str(a)
                .or(q.str(b))
                .map(|s| serde_json::from_str::<String>(s).unwrap_or_else(|_| s.to_owned()))
        };
        let mut staleness = match q.str("stale") {
            None | Some("false") => Staleness::Current,
            Some("ok") => Staleness::Cached,
            Some("update_after") => Staleness::CachedThenUpdate,
            Some(_) => return Err(query_parse_error("Invalid value for `stale`.")),
        };
        match q.str("update") {
            None | Some("true") => {}
            Some("false") => staleness = Staleness::Cached,
            Some("lazy") => staleness = Staleness::CachedThenUpdate,
            Some(_) => return Err(query_parse_error("Invalid value for `update`.")),
        }
        let group_level = positive(q, "group_level")?.map(|n| n as usize);
        Ok(Args {
            keys,
            start,
            end,
            start_docid: docid("startkey_docid", "start_key_doc_id"),
            end_docid: docid("endkey_docid", "end_key_doc_id"),
            inclusive_end: q.bool_or("inclusive_end", true)?,
            descending: q.bool("descending")?,
            skip: positive(q, "skip")?.unwrap_or(0) as usize,
            limit: positive(q, "limit")?.map(|n| n as usize),
            include_docs: q.bool("include_docs")?,
            conflicts: q.bool("conflicts")?,
            attachments: q.bool("attachments")?,
            reduce: opt_bool(q, "reduce")?,
            group: opt_bool(q, "group")?,
            group_level,
            update_seq: q.bool("update_seq")?,
            staleness,
        })
    }

    /// CouchDB's refusal of a range that is empty because it is backwards.
    fn check_range(&self) -> Result<(), HttpError> {
        let (Some(start), Some(end)) = (&self.start, &self.end) else {
            return Ok(());
        };
        if self.keys.is_some() {
            return Ok(());
        }
        let mut ord = collate(start, end);
        if ord == Ordering::Equal {
            if let (Some(a), Some(b)) = (&self.start_docid, &self.end_docid) {
                ord = collate_ids(a, b);
            }
        }
        match (self.descending, ord) {
            (false, Ordering::Greater) => Err(query_parse_error(
                "No rows can match your key range, reverse your start_key and end_key or set descending=true",
            )),
            (true, Ordering::Less) => Err(query_parse_error(
                "No rows can match your key range, reverse your start_key and end_key or set descending=false",
            )),
            _ => Ok(()),
        }
    }

    /// The range of the index the query reads (without `keys`).
    fn range(&self) -> ViewRange<'_> {
        ViewRange {
            start: self.start.as_ref().map(|key| ViewKey {
                key,
                doc_id: self.start_docid.as_deref(),
            }),
            end: self.end.as_ref().map(|key| ViewKey {
                key,
                doc_id: self.end_docid.as_deref(),
            }),
            inclusive_end: self.inclusive_end,
            descending: self.descending,
        }
    }
}

/// `/{db}/_design/{ddoc}/_view/{view}`.
pub(crate) async fn view(
    state: &Arc<State>,
    open: &Arc<OpenDb>,
    ddoc: &str,
    view: &str,
    req: Request,
) -> Result<Response, HttpError> {
    let mut q = req.query();
    let mut body_keys = None;
    if req.method == Method::POST {
        body::require_json_type(&req.headers)?;
        let b = body::read_json_object(req.body, state.limits.max_body).await?;
        for (name, value) in b {
            match (name.as_str(), value) {
                ("keys", Value::Array(k)) => body_keys = Some(k),
                ("keys", _) => {
                    return Err(HttpError::bad_request("`keys` member must be an array."))
                }
                // Body members are JSON; the query string holds keys as JSON text and
                // the other parameters as plain text.
                (_, Value::String(s)) if !KEY_PARAMS.contains(&name.as_str()) => q.push(name, s),
                (_, v) => q.push(name, v.to_string()),
            }
        }
    } else if !req.is_get() {
        return Err(HttpError::method_not_allowed("GET,POST,HEAD"));
    }
    let args = Args::parse(&q, body_keys)?;
    let lazy = args.staleness == Staleness::CachedThenUpdate;
    let (ddoc, view) = (ddoc.to_owned(), view.to_owned());
    let (db_name, js) = (open.name.clone(), open.js.clone());
    let answer = {
        let (ddoc, view) = (ddoc.clone(), view.clone());
        open.run(move |db| query(db, &js, &db_name, &ddoc, &view, &args))
            .await?
    };
    if lazy {
        // `update=lazy`: the answer goes out now and the index is brought up to date after
        // it, on its own task (nobody waits for it; a failure is logged).
        let open = open.clone();
        tokio::spawn(async move {
            let (db_name, js) = (open.name.clone(), open.js.clone());
            let done = open
                .run(move |db| {
                    let def = view_def(db, &db_name, &ddoc, &view)?;
                    let index = db.view_index(&def.signature)?;
                    view_update::update(db, &js, &view, &def, &index)
                })
                .await;
            if let Err(e) = done {
                tracing::warn!(error = ?e, "updating a view after a lazy query failed");
            }
        });
    }
    Ok(body::json(StatusCode::OK, &answer))
}

fn query(
    db: &Database,
    js: &js::Js,
    db_name: &str,
    ddoc: &str,
    view: &str,
    args: &Args,
) -> Result<Value, HttpError> {
    let def = view_def(db, db_name, ddoc, view)?;
    let reducing = match (&def.reduce, args.reduce) {
        (None, Some(true)) => {
            return Err(query_parse_error("Reduce is invalid for map-only views."))
        }
        (None, _) | (Some(_), Some(false)) => false,
        (Some(_), _) => true,
    };
    let grouping = args.group == Some(true) || args.group_level.is_some();
    if grouping && !reducing {
        return Err(query_parse_error("Invalid use of grouping on a map view."));
    }
    if reducing && args.include_docs {
        return Err(query_parse_error("`include_docs` is invalid for reduce"));
    }
    let multi_key = args.keys.as_ref().is_some_and(|k| k.len() > 1);
    if reducing && multi_key && args.group != Some(true) && args.group_level.is_none() {
        return Err(query_parse_error(
            "Multi-key fetches for reduce views must use `group=true`",
        ));
    }
    args.check_range()?;
    let index = db.view_index(&def.signature)?;
    if args.staleness == Staleness::Current {
        view_update::update(db, js, view, &def, &index)?;
    }
    let state = index.state()?;
    let mut out = if reducing {
        let level = match (args.group, args.group_level) {
            (_, Some(l)) => Some(l),
            (Some(true), None) => None,
            _ => Some(0),
        };
        // No stored reductions: the rows of the range are read and reduced (see the module
        // documentation).
        let mut selected = Vec::new();
        for_each_row(&index, args, |row| {
            selected.push(row);
            Ok(true)
        })?;
        let refs: Vec<&Row> = selected.iter().collect();
        let reduced = reduce_rows(js, &def, &refs, level)?;
        let page: Vec<Value> = reduced
            .into_iter()
            .skip(args.skip)
            .take(args.limit.unwrap_or(usize::MAX))
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        json!({"rows": page})
    } else {
        let total = state.rows;
        let before = match &args.keys {
            Some(_) => 0,
            None => index.count_before(&args.range())?,
        };
        let mut page = Vec::new();
        let mut skip = args.skip;
        let limit = args.limit.unwrap_or(usize::MAX);
        if limit > 0 {
            for_each_row(&index, args, |row| {
                if skip > 0 {
                    skip -= 1;
                    return Ok(true);
                }
                let mut r = json!({"id": row.id, "key": row.key, "value": row.value});
                if args.include_docs {
                    r["doc"] = included_doc(db, &row, args)?;
                }
                page.push(r);
                Ok(page.len() < limit)
            })?;
        }
        json!({"total_rows": total, "offset": (before + args.skip as u64).min(total), "rows": page})
    };
    if args.update_seq {
        out["update_seq"] = Value::from(state.seq);
    }
    Ok(out)
}

/// Visits the rows a query selects, in the order it asks for, until `visit` returns
/// `false`: the rows of each of `keys` in turn, or one range of the index.
fn for_each_row(
    index: &ViewIndex,
    args: &Args,
    mut visit: impl FnMut(Row) -> Result<bool, HttpError>,
) -> Result<(), HttpError> {
    let Some(keys) = &args.keys else {
        for row in index.rows(&args.range())? {
            if !visit(row?)? {
                break;
            }
        }
        return Ok(());
    };
    // Descending, CouchDB takes the keys in reverse order too.
    let ordered: Box<dyn Iterator<Item = &Value>> = if args.descending {
        Box::new(keys.iter().rev())
    } else {
        Box::new(keys.iter())
    };
    for key in ordered {
        let at = Some(ViewKey { key, doc_id: None });
        let range = ViewRange {
            start: at,
            end: at,
            inclusive_end: true,
            descending: args.descending,
        };
        for row in index.rows(&range)? {
            if !visit(row?)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The document `include_docs` adds to a row: the emitting document, or the one a value
/// `{"_id"}` (with an optional `_rev`) links to; `null` when it does not exist.
fn included_doc(db: &Database, row: &Row, args: &Args) -> Result<Value, HttpError> {
    let (id, rev) = match row.value.get("_id").and_then(Value::as_str) {
        Some(linked) => (
            linked.to_owned(),
            row.value
                .get("_rev")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok()),
        ),
        None => (row.id.clone(), None),
    };
    let opts = GetOptions {
        rev,
        conflicts: args.conflicts,
        attachments: args.attachments,
        ..Default::default()
    };
    match db.get(&id, &opts) {
        Ok(doc) => Ok(doc),
        Err(e) if e.is_not_found() => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}
