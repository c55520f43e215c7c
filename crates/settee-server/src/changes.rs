//! `GET`/`POST /{db}/_changes`: the `normal`, `longpoll`, `continuous` and `eventsource`
//! feeds, with `since` (a sequence or `now`), `limit`, `descending`, `style`,
//! `include_docs`, `conflicts`, `attachments`, `heartbeat`, `timeout`, the built-in
//! filters `_doc_ids`, `_selector` and `_design`, design document filter functions
//! (`filter=ddoc/name`) and `filter=_view&view=ddoc/name` (a document passes when the view's
//! map function emits a row for it; the filters are `changes_filter.rs`). Sequences are the
//! store's numbers.
//! Live feeds follow the store's commits ([`settee_store::Database::live_changes`]) and end
//! when the client goes away, the database is deleted or the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use settee_replicate::Selector;
use settee_store::{Change, ChangesOptions, ChangesStyle, Database};
use tokio::sync::mpsc;

use crate::body;
use crate::body::stream_body;
use crate::changes_filter::{js_filter, keep, Filter};
use crate::changes_tail;
use crate::error::HttpError;
use crate::query::Query;
use crate::registry::OpenDb;
use crate::request::Request;
use crate::state::State;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Normal,
    Longpoll,
    Continuous,
    EventSource,
}

/// What one request asked for.
pub(crate) struct Params {
    feed: Feed,
    pub(crate) opts: ChangesOptions,
    pub(crate) filter: Filter,
    pub(crate) include_docs: bool,
    pub(crate) limit: Option<usize>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
}

/// CouchDB's default `timeout` of a live feed without a heartbeat (`changes_timeout`).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows read from the store per page while filtering.
const FILTER_PAGE: usize = 500;
/// Lines buffered between a live feed's task and the connection: enough to keep the
/// socket busy, small enough that a slow client holds back the reader.
pub(crate) const FEED_BUFFER: usize = 32;

pub(crate) fn parse_since(v: &str) -> Result<Option<u64>, HttpError> {
    if v == "now" {
        return Ok(None);
    }
    let v = v.trim_matches('"');
    // A sequence this server handed out is a number; also accept `N-...` (the number of
    // an opaque CouchDB-style sequence) and JSON-quoted numbers.
    let num = v.split('-').next().unwrap_or("");
    num.parse::<u64>()
        .map(Some)
        .map_err(|_| HttpError::bad_request(format!("Invalid since seq: {v:?}")))
}

async fn params(
    state: &State,
    open: &OpenDb,
    req: Request,
) -> Result<(Params, Option<u64>), HttpError> {
    let q: Query = req.query();
    let js_req = json!({
        "info": {"db_name": open.name},
        "id": null,
        "method": req.method.as_str(),
        "path": [open.name, "_changes"],
        "query": q.to_json(),
        "headers": {},
        "body": "undefined",
        "form": {},
        "cookie": {},
        "peer": "127.0.0.1",
        "userCtx": {"db": open.name, "name": req.user.name, "roles": req.user.roles},
        "secObj": Value::Object(open.security()),
    });
    let post_body = if req.method == Method::POST {
        let bytes = body::read_bytes(req.body, state.limits.max_body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Map::new()
        } else {
            match body::parse_json(&bytes)? {
                Value::Object(m) => m,
                _ => return Err(HttpError::bad_request("Request body must be a JSON object")),
            }
        }
    } else {
        serde_json::Map::new()
    };
    let feed = match q.str("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" | "live" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        other => {
            return Err(HttpError::bad_request(format!(
                "Supported `feed` types: normal, continuous, live, longpoll, eventsource; not {other:?}"
            )))
        }
    };
    let since = match q.str("since") {
        None => Some(0),
        Some(s) => parse_since(s)?,
    };
    let style = match q.str("style").unwrap_or("main_only") {
        "main_only" => ChangesStyle::MainOnly,
        "all_docs" => ChangesStyle::AllDocs,
        other => {
            return Err(HttpError::bad_request(format!(
                "Supported `style` values: main_only, all_docs; not {other:?}"
            )))
        }
    };
    let mut filter = Filter::All;
    let mut doc_ids = None;
    match q.str("filter") {
        None | Some("") => {}
        Some("_doc_ids") => {
            let ids = match post_body.get("doc_ids") {
                Some(v) => Some(v.clone()),
                None => q.json("doc_ids")?,
            };
            match ids {
                Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                    doc_ids = Some(
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                _ => {
                    return Err(HttpError::bad_request(
                        "`doc_ids` filter parameter is not a list of doc ids.",
                    ))
                }
            }
        }
        Some("_selector") => {
            // CouchDB 3.5's answers: a missing or non-object selector is "expected a JSON
            // object", a bad one is 400 bad_request with the selector error's reason.
            let sel = match post_body.get("selector") {
                Some(sel @ serde_json::Value::Object(_)) => sel,
                _ => {
                    return Err(HttpError::bad_request(
                        "Selector error: expected a JSON object",
                    ))
                }
            };
            let sel = Selector::parse(sel).map_err(|e| HttpError::bad_request(e.reason()))?;
            filter = Filter::Selector(Arc::new(sel));
        }
        Some("_design") => filter = Filter::Design,
        Some("_view") => {
            let view = q
                .str("view")
                .ok_or_else(|| HttpError::bad_request("filter=_view requires 'view' parameter"))?;
            filter = js_filter(open, view, "views", js_req).await?;
        }
        Some(name) => filter = js_filter(open, name, "filters", js_req).await?,
    }
    let include_docs = q.bool("include_docs")?;
    let heartbeat = match q.str("heartbeat") {
        None => None,
        Some("true") => Some(Duration::from_secs(60)),
        Some(_) => q
            .u64("heartbeat")?
            .map(|ms| Duration::from_millis(ms.max(100))),
    };
    let timeout = q.u64("timeout")?.map(Duration::from_millis);
    let opts = ChangesOptions {
        since: since.unwrap_or(0),
        limit: None,
        descending: q.bool("descending")?,
        include_docs: include_docs || filter.needs_docs(),
        conflicts: q.bool("conflicts")?,
        attachments: q.bool("attachments")?,
        style,
        doc_ids,
        skip_pending: false,
    };
    let limit = match q.u64("limit")? {
        Some(0) => Some(1),
        l => l.map(|l| l as usize),
    };
    Ok((
        Params {
            feed,
            opts,
            filter,
            include_docs,
            limit,
            heartbeat,
            timeout,
        },
        since,
    ))
}

/// `/{db}/_changes`.
pub(crate) async fn changes(
    state: &Arc<State>,
    open: Arc<OpenDb>,
    req: Request,
) -> Result<Response, HttpError> {
    if !req.is_get() && req.method != Method::POST {
        return Err(HttpError::method_not_allowed("GET,HEAD,POST"));
    }
    let (mut p, since) = params(state, &open, req).await?;
    if since.is_none() {
        p.opts.since = open.run(|db| Ok(db.info()?.update_seq)).await?;
    }
    match p.feed {
        Feed::Normal => {
            let page = read_page(&open, &p).await?;
            Ok(body::json(StatusCode::OK, &page.to_json(&p)))
        }
        Feed::Longpoll => longpoll(state, open, p).await,
        Feed::Continuous | Feed::EventSource => live(state, open, p).await,
    }
}

/// One answer of the normal feed.
pub(crate) struct Page {
    pub(crate) rows: Vec<Change>,
    pub(crate) last_seq: u64,
    pub(crate) pending: u64,
}

impl Page {
    pub(crate) fn to_json(&self, p: &Params) -> Value {
        let rows: Vec<Value> = self.rows.iter().map(|c| row_json(c, p)).collect();
        json!({"results": rows, "last_seq": self.last_seq, "pending": self.pending})
    }
}

fn row_json(c: &Change, p: &Params) -> Value {
    row_value(c, p.include_docs)
}

fn row_value(c: &Change, include_docs: bool) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if !include_docs {
        if let Some(m) = v.as_object_mut() {
            m.remove("doc");
        }
    }
    v
}

async fn read_page(open: &OpenDb, p: &Params) -> Result<Page, HttpError> {
    let opts = p.opts.clone();
    let filter = p.filter.clone();
    let limit = p.limit;
    open.run(move |db| collect(db, opts, &filter, limit)).await
}

/// The normal feed: store pages, filtered, until `limit` rows or the end.
pub(crate) fn collect(
    db: &Database,
    opts: ChangesOptions,
    filter: &Filter,
    limit: Option<usize>,
) -> Result<Page, HttpError> {
    if matches!(filter, Filter::All) || opts.descending {
        // Unfiltered: one store call does it. Descending and filtered: the whole feed
        // (the store pages descending feeds from the top only).
        let unfiltered = matches!(filter, Filter::All);
        let ch = db.changes(&ChangesOptions {
            limit: if unfiltered { limit } else { None },
            ..opts
        })?;
        let mut rows = Vec::new();
        for c in ch.results {
            if filter.keeps(&c)? {
                rows.push(c);
            }
        }
        if let Some(l) = limit {
            rows.truncate(l);
        }
        let last_seq = if opts.descending {
            rows.last().map_or(ch.last_seq, |c| c.seq)
        } else {
            ch.last_seq
        };
        return Ok(Page {
            rows,
            last_seq,
            // The store's answer always has `pending` (0 with `skip_pending`).
            pending: ch.pending.unwrap_or_default(),
        });
    }
    let limit = limit.unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    let mut since = opts.since;
    loop {
        let ch = db.changes(&ChangesOptions {
            since,
            limit: Some(FILTER_PAGE),
            ..opts.clone()
        })?;
        let short = ch.results.len() < FILTER_PAGE;
        for c in ch.results {
            let seq = c.seq;
            if filter.keeps(&c)? {
                rows.push(c);
            }
            since = seq;
            if rows.len() >= limit {
                let pending = db.pending_since(since)?;
                return Ok(Page {
                    rows,
                    last_seq: since,
                    pending,
                });
            }
        }
        if short {
            return Ok(Page {
                rows,
                last_seq: ch.last_seq.max(since),
                pending: 0,
            });
        }
    }
}

pub(crate) fn feed_headers(res: &mut Response, content_type: &'static str) {
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
}

/// `feed=longpoll`: the normal answer if there are changes; otherwise wait for the first
/// one (sending heartbeat newlines, which JSON allows before the value), then answer.
async fn longpoll(state: &Arc<State>, open: Arc<OpenDb>, p: Params) -> Result<Response, HttpError> {
    if changes_tail::shares_pages(&p) {
        return changes_tail::longpoll(state, open, p).await;
    }
    let page = read_page(&open, &p).await?;
    if !page.rows.is_empty() || p.opts.descending {
        return Ok(body::json(StatusCode::OK, &page.to_json(&p)));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(FEED_BUFFER);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut p = p;
        p.opts.since = page.last_seq.max(p.opts.since);
        let timeout = p.timeout.or(if p.heartbeat.is_none() {
            Some(DEFAULT_TIMEOUT)
        } else {
            None
        });
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut live = open.db.live_changes(ChangesOptions {
            limit: None,
            ..p.opts.clone()
        });
        let mut beat = heartbeat_timer(p.heartbeat);
        let closed = open.closed();
        let mut last_seq = p.opts.since;
        let got = loop {
            // All branches are cancel-safe: the live feed buffers what it has read, and
            // timers and tokens can be polled again.
            tokio::select! {
                next = live.next() => match next {
                    Some(Ok(c)) => {
                        last_seq = c.seq;
                        match keep(&p.filter, c).await {
                            Ok(Some(_)) => break true,
                            Ok(None) => {}
                            Err(e) => {
                                // The answer has begun (heartbeats): as CouchDB, end it
                                // broken rather than as an empty success.
                                tracing::warn!(db = %open.name, reason = %e.reason, "changes filter failed");
                                let _ = tx.send(Err(feed_failed(&e))).await;
                                return;
                            }
                        }
                    }
                    _ => break false,
                },
                _ = sleep_until(deadline) => break false,
                _ = beat.tick() => {
                    if tx.send(Ok(Bytes::from_static(b"\n"))).await.is_err() { return; }
                }
                _ = closed.cancelled() => break false,
                _ = shutdown.cancelled() => break false,
            }
        };
        drop(live);
        let answer = if got {
            // Answer with everything there is now, from where the wait began.
            match read_page(&open, &p).await {
                Ok(page) => page.to_json(&p),
                Err(e) => json!({"error": e.error, "reason": e.reason}),
            }
        } else {
            json!({"results": [], "last_seq": last_seq, "pending": 0})
        };
        let _ = tx.send(Ok(Bytes::from(answer.to_string() + "\n"))).await;
    });
    let mut res = Response::new(stream_body(rx));
    feed_headers(&mut res, "application/json");
    Ok(res)
}

pub(crate) fn heartbeat_timer(every: Option<Duration>) -> tokio::time::Interval {
    // Without a heartbeat the timer still exists but fires once a day: simpler than an
    // optional branch in `select!`.
    let period = every.unwrap_or(Duration::from_secs(86_400));
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

/// A failed filter as the error that aborts a feed whose answer has begun: the client
/// sees the response cut off, not a clean end.
fn feed_failed(e: &HttpError) -> std::io::Error {
    std::io::Error::other(format!("changes filter failed: {}: {}", e.error, e.reason))
}

/// `feed=continuous` (a JSON line per change, a last `{"last_seq"}` line) and
/// `feed=eventsource` (server-sent events). As CouchDB's, the answer's head waits until
/// the first line is ready or the feed has caught up with the changes there were when it
/// began, so that a filter function that fails on those answers 500 with the error; one
/// that fails later cuts the answer off.
async fn live(state: &Arc<State>, open: Arc<OpenDb>, p: Params) -> Result<Response, HttpError> {
    let caught_up_at = open.run(|db| Ok(db.info()?.update_seq)).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(FEED_BUFFER);
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<(), HttpError>>();
    let shutdown = state.shutdown.clone();
    let sse = p.feed == Feed::EventSource;
    tokio::spawn(async move {
        let mut head = Some(head_tx);
        let mut begin = |result: Result<(), HttpError>| {
            if let Some(h) = head.take() {
                let _ = h.send(result);
            }
        };
        let timeout = p.timeout.or(if p.heartbeat.is_none() {
            Some(DEFAULT_TIMEOUT)
        } else {
            None
        });
        let mut live = open.db.live_changes(ChangesOptions {
            limit: None,
            descending: false,
            ..p.opts.clone()
        });
        let mut beat = heartbeat_timer(p.heartbeat);
        let closed = open.closed();
        let mut sent = 0usize;
        let mut last_seq = p.opts.since;
        if last_seq >= caught_up_at {
            begin(Ok(()));
        }
        let limit = p.limit.unwrap_or(usize::MAX);
        let mut deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        while sent < limit {
            // All branches are cancel-safe (see `longpoll`).
            tokio::select! {
                next = live.next() => match next {
                    Some(Ok(c)) => {
                        last_seq = c.seq;
                        let kept = keep(&p.filter, c).await;
                        if last_seq >= caught_up_at && kept.is_ok() {
                            begin(Ok(()));
                        }
                        let c = match kept {
                            Ok(Some(c)) => c,
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::warn!(db = %open.name, reason = %e.reason, "changes filter failed");
                                let failed = feed_failed(&e);
                                begin(Err(e));
                                let _ = tx.send(Err(failed)).await;
                                return;
                            }
                        };
                        begin(Ok(()));
                        let line = row_json(&c, &p).to_string();
                        let chunk = if sse {
                            format!("data: {line}\nid: {}\n\n", c.seq)
                        } else {
                            line + "\n"
                        };
                        if tx.send(Ok(Bytes::from(chunk))).await.is_err() { return; }
                        sent += 1;
                        deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, db = %open.name, "changes feed failed");
                        break;
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => break,
                _ = beat.tick() => {
                    begin(Ok(()));
                    let hb: &'static [u8] = if sse { b"event: heartbeat\ndata: \n\n" } else { b"\n" };
                    if tx.send(Ok(Bytes::from_static(hb))).await.is_err() { return; }
                }
                _ = closed.cancelled() => break,
                _ = shutdown.cancelled() => break,
            }
        }
        begin(Ok(()));
        if !sse {
            let end = json!({"last_seq": last_seq, "pending": 0}).to_string() + "\n";
            let _ = tx.send(Ok(Bytes::from(end))).await;
        }
    });
    // A dropped sender means the feed task ended without a word: answer what it sent.
    if let Ok(Err(e)) = head_rx.await {
        return Err(e);
    }
    let mut res = Response::new(stream_body(rx));
    feed_headers(
        &mut res,
        if sse {
            "text/event-stream"
        } else {
            "application/json"
        },
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_numbers_now_and_opaque_prefixes() {
        assert_eq!(parse_since("12").unwrap(), Some(12));
        assert_eq!(parse_since("now").unwrap(), None);
        assert_eq!(parse_since("3-g1AAA").unwrap(), Some(3));
        assert_eq!(parse_since("\"7\"").unwrap(), Some(7));
        assert!(parse_since("abc").is_err());
    }
}
