//! `GET`/`POST /{db}/_design/{ddoc}/_view/{view}`: JavaScript views, computed on demand.
//!
//! A view's rows (`view_rows.rs`) are made by running its map function over every live
//! document (winning revisions; design documents excluded), sorted by CouchDB's collation of
//! the keys, ties broken by document id. The sorted rows are cached per database, design document revision
//! and view, for as long as the database's update sequence does not move; there is no
//! persistent or incremental index. The query parameters are CouchDB's (`key`, `keys`,
//! `startkey`/`endkey` with `_docid` tie-breakers, `inclusive_end`, `descending`, `skip`,
//! `limit`, `include_docs`, `conflicts`, `reduce`, `group`, `group_level`, `update_seq`,
//! `stale`/`update`). Rows with the same key and id are ordered by value. `stale=ok` /
//! `update=false` answer from the cached rows however old (none when the view was never
//! computed, like CouchDB's unbuilt index); `stale=update_after` / `update=lazy` do too and
//! then bring the cache up to date. Reduce functions are the built-ins
//! ([`settee_js::Builtin`]) or JavaScript, which gets chunks of rows and then a rereduce of
//! the chunks' results. A map function that throws on a document is logged and the document
//! left out, and a JavaScript reduce that throws gives `null`, as in CouchDB.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use settee_query::collate;
use settee_store::{Database, GetOptions};

use crate::body;
use crate::error::HttpError;
use crate::js;
use crate::query::Query;
use crate::registry::OpenDb;
use crate::request::Request;
use crate::state::State;
use crate::view_rows::{cached_rows, collate_ids, reduce_rows, rows_of, view_def, Row};

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

    /// Whether a row (in ascending order) is past the start of the range, in the
    /// direction of the query.
    fn after_start(&self, row: &Row) -> bool {
        let Some(start) = &self.start else {
            return true;
        };
        let ord = collate(&row.key, start);
        let ord = if ord == Ordering::Equal {
            self.start_docid
                .as_deref()
                .map_or(Ordering::Equal, |d| collate_ids(&row.id, d))
        } else {
            ord
        };
        if self.descending {
            ord != Ordering::Greater
        } else {
            ord != Ordering::Less
        }
    }

    /// Whether a row is before the end of the range, in the direction of the query.
    fn before_end(&self, row: &Row) -> bool {
        let Some(end) = &self.end else {
            return true;
        };
        let towards = if self.descending {
            Ordering::Greater
        } else {
            Ordering::Less
        };
        let ord = collate(&row.key, end);
        if ord != Ordering::Equal {
            return ord == towards;
        }
        match &self.end_docid {
            None => self.inclusive_end,
            Some(d) => {
                let ord = collate_ids(&row.id, d);
                ord == towards || (self.inclusive_end && ord == Ordering::Equal)
            }
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
    let ddoc = ddoc.to_owned();
    let view = view.to_owned();
    let db_name = open.name.clone();
    let js = open.js.clone();
    let answer = open
        .run(move |db| query(db, &js, &db_name, &ddoc, &view, &args))
        .await?;
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
    let update_seq = db.info()?.update_seq;
    let rows = match args.staleness {
        Staleness::Current => rows_of(db, js, db_name, view, &def, update_seq)?,
        stale => {
            let cached = cached_rows(db, db_name, view, &def);
            if stale == Staleness::CachedThenUpdate {
                rows_of(db, js, db_name, view, &def, update_seq)?;
            }
            cached.unwrap_or_default()
        }
    };
    let selected = select(&rows, args);
    let mut out = if reducing {
        let level = match (args.group, args.group_level) {
            (_, Some(l)) => Some(l),
            (Some(true), None) => None,
            _ => Some(0),
        };
        let reduced = reduce_rows(js, &def, &selected, level)?;
        let page: Vec<Value> = reduced
            .into_iter()
            .skip(args.skip)
            .take(args.limit.unwrap_or(usize::MAX))
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        json!({"rows": page})
    } else {
        let total = rows.len();
        let before = match &args.keys {
            Some(_) => 0,
            None => {
                let ordered: Box<dyn Iterator<Item = &Row>> = if args.descending {
                    Box::new(rows.iter().rev())
                } else {
                    Box::new(rows.iter())
                };
                ordered.take_while(|r| !args.after_start(r)).count()
            }
        };
        let mut page = Vec::new();
        for row in selected
            .iter()
            .skip(args.skip)
            .take(args.limit.unwrap_or(usize::MAX))
        {
            let mut r = json!({"id": row.id, "key": row.key, "value": row.value});
            if args.include_docs {
                r["doc"] = included_doc(db, row, args)?;
            }
            page.push(r);
        }
        json!({"total_rows": total, "offset": (before + args.skip).min(total), "rows": page})
    };
    if args.update_seq {
        out["update_seq"] = Value::from(update_seq);
    }
    Ok(out)
}

/// The rows a query selects, in the order it asks for.
fn select<'a>(rows: &'a [Row], args: &Args) -> Vec<&'a Row> {
    match &args.keys {
        Some(keys) => {
            let mut out = Vec::new();
            // Descending, CouchDB takes the keys in reverse order too.
            let ordered: Box<dyn Iterator<Item = &Value>> = if args.descending {
                Box::new(keys.iter().rev())
            } else {
                Box::new(keys.iter())
            };
            for k in ordered {
                let lo = rows.partition_point(|r| collate(&r.key, k) == Ordering::Less);
                let hi = rows.partition_point(|r| collate(&r.key, k) != Ordering::Greater);
                let matching = &rows[lo..hi.max(lo)];
                if args.descending {
                    out.extend(matching.iter().rev());
                } else {
                    out.extend(matching.iter());
                }
            }
            out
        }
        None => {
            let ordered: Box<dyn Iterator<Item = &Row>> = if args.descending {
                Box::new(rows.iter().rev())
            } else {
                Box::new(rows.iter())
            };
            ordered
                .skip_while(|r| !args.after_start(r))
                .take_while(|r| args.before_end(r))
                .collect()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: Value, id: &str) -> Row {
        Row {
            key,
            id: id.into(),
            value: Value::Null,
        }
    }

    fn ids(rows: &[Row], args: &Args) -> Vec<String> {
        select(rows, args).iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn ranges_honour_docids_inclusive_end_and_descending() {
        let rows = vec![
            row(json!(1), "a"),
            row(json!(2), "b"),
            row(json!(2), "c"),
            row(json!(3), "d"),
        ];
        let mut args = Args {
            start: Some(json!(2)),
            end: Some(json!(2)),
            inclusive_end: true,
            ..Default::default()
        };
        assert_eq!(ids(&rows, &args), ["b", "c"]);
        args.start_docid = Some("c".into());
        assert_eq!(ids(&rows, &args), ["c"]);
        args.start_docid = None;
        args.end_docid = Some("b".into());
        assert_eq!(ids(&rows, &args), ["b"]);
        args.inclusive_end = false;
        assert_eq!(ids(&rows, &args), Vec::<String>::new());
        let desc = Args {
            start: Some(json!(3)),
            end: Some(json!(2)),
            inclusive_end: false,
            descending: true,
            ..Default::default()
        };
        assert_eq!(ids(&rows, &desc), ["d"]);
        let keys = Args {
            keys: Some(vec![json!(3), json!(2), json!(9)]),
            ..Default::default()
        };
        assert_eq!(ids(&rows, &keys), ["d", "b", "c"]);
        let keys_desc = Args {
            descending: true,
            ..keys
        };
        assert_eq!(ids(&rows, &keys_desc), ["c", "b", "d"]);
    }
}
