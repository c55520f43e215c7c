//! The two things a device does here: follow the database's `_changes` live (as PouchDB's
//! live sync does: `feed=longpoll` with `since` carried over from each answer's
//! `last_seq`, or one `feed=continuous` request), and write notes at its share of the rate.
//! Every failure is counted in the [`Tracker`] and the client carries on after a pause.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{encode_query, read_body, Conn, Target};
use crate::tracker::{Id, Seen, Tracker};

/// PouchDB's `heartbeat` default for live changes (10 s).
const HEARTBEAT_MS: u64 = 10_000;
/// A feed with no byte for this long is broken (three missed heartbeats).
const IDLE: Duration = Duration::from_millis(3 * HEARTBEAT_MS);
/// The pause before trying again after an error (PouchDB backs off from about here).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Rows per longpoll answer (PouchDB replication's `batch_size`).
const BATCH: usize = 100;

/// Which live feed the clients hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    Longpoll,
    Continuous,
}

#[derive(Deserialize)]
struct Row {
    id: String,
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<Row>,
    last_seq: Value,
}

/// A sequence as a query value: CouchDB's are strings, Settee's numbers.
fn seq_param(v: &Value) -> String {
    match v {
        Value::String(s) => encode_query(s),
        other => encode_query(&other.to_string()),
    }
}

/// What all clients share.
pub struct Shared {
    pub target: Target,
    pub tracker: Tracker,
    pub feed: FeedKind,
    /// Clients whose first feed request has been answered with a head (or, for longpoll,
    /// sent): the warm-up waits for all before it writes.
    pub started: AtomicUsize,
    /// Set at the end: clients stop after their current request.
    pub stop: AtomicBool,
}

fn record(shared: &Shared, seen: &mut Seen, id: &str) {
    let Some(id) = Id::parse(id, &shared.tracker.tag) else {
        return;
    };
    let at = shared.tracker.now();
    if seen.insert(id) {
        shared.tracker.seen(id, at);
    } else {
        shared.tracker.repeats.fetch_add(1, Ordering::Relaxed);
    }
}

/// One client: follows the feed until told to stop.
pub async fn client(shared: Arc<Shared>) {
    let mut conn = Conn::new();
    let mut seen = Seen::default();
    let mut since = "now".to_string();
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let result = match shared.feed {
            FeedKind::Longpoll => {
                longpoll(&shared, &mut conn, &mut seen, &mut since, &mut first).await
            }
            FeedKind::Continuous => {
                continuous(&shared, &mut conn, &mut seen, &mut since, &mut first).await
            }
        };
        if let Err((kind, message)) = result {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            shared.tracker.error(kind, message);
            conn.reset();
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

type Failure = (&'static str, String);

async fn longpoll(
    shared: &Shared,
    conn: &mut Conn,
    seen: &mut Seen,
    since: &mut String,
    first: &mut bool,
) -> Result<(), Failure> {
    let path = format!(
        "{}/_changes?feed=longpoll&heartbeat={HEARTBEAT_MS}&style=all_docs&limit={BATCH}&since={since}",
        shared.target.db_path
    );
    let sent = conn.send(&shared.target, Method::GET, &path, None);
    if std::mem::take(first) {
        shared.started.fetch_add(1, Ordering::AcqRel);
    }
    let res = sent.await.map_err(|e| ("feed request", e))?;
    let status = res.status();
    let body = read_body(res, IDLE).await.map_err(|e| ("feed body", e))?;
    if !status.is_success() {
        return Err((
            "feed status",
            format!("{status}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    let answer: Answer = serde_json::from_slice(body.trim_ascii()).map_err(|e| {
        (
            "feed json",
            format!("{e}: {}", String::from_utf8_lossy(&body)),
        )
    })?;
    for row in &answer.results {
        record(shared, seen, &row.id);
    }
    *since = seq_param(&answer.last_seq);
    Ok(())
}

async fn continuous(
    shared: &Shared,
    conn: &mut Conn,
    seen: &mut Seen,
    since: &mut String,
    first: &mut bool,
) -> Result<(), Failure> {
    let path = format!(
        "{}/_changes?feed=continuous&heartbeat={HEARTBEAT_MS}&style=all_docs&since={since}",
        shared.target.db_path
    );
    let res = conn
        .send(&shared.target, Method::GET, &path, None)
        .await
        .map_err(|e| ("feed request", e))?;
    let status = res.status();
    if !status.is_success() {
        let body = read_body(res, IDLE).await.unwrap_or_default();
        return Err((
            "feed status",
            format!("{status}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    if std::mem::take(first) {
        shared.started.fetch_add(1, Ordering::AcqRel);
    }
    let mut body = res.into_body();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return Err(("feed body", format!("nothing for {}s", IDLE.as_secs()))),
            // The feed ended (its `last_seq` line was read): follow on from there.
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(("feed body", e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = line.trim_ascii();
            if line.is_empty() {
                continue; // a heartbeat
            }
            let v: Value = serde_json::from_slice(line).map_err(|e| {
                (
                    "feed json",
                    format!("{e}: {}", String::from_utf8_lossy(line)),
                )
            })?;
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                record(shared, seen, id);
            }
            if let Some(seq) = v.get("seq").or_else(|| v.get("last_seq")) {
                *since = seq_param(seq);
            }
        }
    }
}

/// A note of about 1 KB, as the other benchmarks write.
fn note(n: usize, writer: usize) -> Bytes {
    let text = "lorem ipsum dolor sit amet ".repeat(36);
    Bytes::from(
        serde_json::json!({"type": "note", "writer": writer, "n": n, "text": text}).to_string(),
    )
}

/// Puts one document; the status must be 201 or 202.
pub async fn put(shared: &Shared, conn: &mut Conn, id: &str, body: Bytes) -> Result<(), Failure> {
    let path = format!("{}/{id}", shared.target.db_path);
    let res = conn
        .send(&shared.target, Method::PUT, &path, Some(body))
        .await
        .map_err(|e| ("write request", e))?;
    let status = res.status();
    let body = read_body(res, IDLE).await.map_err(|e| ("write body", e))?;
    if status.as_u16() != 201 && status.as_u16() != 202 {
        return Err((
            "write status",
            format!("{status}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    Ok(())
}

/// Writer `k` of `writers`: writes write N (`w-TAG-N`) for each N = k (mod writers) below `count`, the
/// N-th at `N / rate` seconds after `begin` (at once when behind, so a slow server shows
/// as a lower rate, not as a queue in here).
pub async fn writer(
    shared: Arc<Shared>,
    k: usize,
    writers: usize,
    count: usize,
    rate: f64,
    begin: tokio::time::Instant,
) {
    let mut conn = Conn::new();
    let mut n = k;
    while n < count && !shared.stop.load(Ordering::Relaxed) {
        let at = begin + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(at).await;
        let slot = &shared.tracker.writes[n];
        slot.sent.store(shared.tracker.now(), Ordering::Release);
        let id = Id::Write(n).doc_id(&shared.tracker.tag);
        match put(&shared, &mut conn, &id, note(n, k)).await {
            Ok(()) => slot.acked.store(shared.tracker.now(), Ordering::Release),
            Err((kind, message)) => {
                shared.tracker.error(kind, format!("{id}: {message}"));
                conn.reset();
            }
        }
        n += writers;
    }
}
