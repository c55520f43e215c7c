//! A thousand devices syncing with one server (issue 24): CLIENTS clients each hold a live
//! `_changes` feed on one database (a team's notes) over a connection of their own, while
//! WRITERS of them write notes at RATE writes/s in total for DURATION seconds. Per write it
//! measures the time from sending it until the LAST client's feed delivered it; and the
//! writes/s the server sustained, every client error, and the server's memory (idle, with
//! every client connected, peak) and CPU time, read from /proc for the pids given.
//!
//! ```text
//! settee-clients-workload --url http://admin:pw@127.0.0.1:5984/team [--clients 1000]
//!     [--writers 10] [--rate 20] [--duration 30] [--feed longpoll|continuous]
//!     [--pid PID[,PID]] [--ramp 2] [--grace 30] [--label NAME]
//! ```
//!
//! The database must exist. Prints one JSON object on stdout; progress on stderr. Before
//! measuring, warm-up writes (`warm-TAG-N`) repeat until every client has seen one, so every
//! feed is open; the measured writes are `w-TAG-N` (TAG differs each run, so runs can share
//! a database).

mod feed;
mod http;
mod server_proc;
mod tracker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use feed::{FeedKind, Shared};
use http::{read_body, Conn, Target};
use tracker::{quantile, Tracker};

/// Warm-up writes tried before giving up.
const MAX_WARM: usize = 30;
/// How long one warm-up write may take to reach every client.
const WARM_WAIT: Duration = Duration::from_secs(5);
/// How often the server's memory is sampled for its peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

struct Args {
    url: String,
    clients: usize,
    writers: usize,
    rate: f64,
    duration: f64,
    feed: FeedKind,
    pids: Vec<u32>,
    ramp: f64,
    grace: f64,
    label: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        clients: 1000,
        writers: 10,
        rate: 20.0,
        duration: 30.0,
        feed: FeedKind::Longpoll,
        pids: Vec::new(),
        ramp: 2.0,
        grace: 30.0,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--url" => a.url = value,
            "--clients" => a.clients = num(&value)? as usize,
            "--writers" => a.writers = num(&value)? as usize,
            "--rate" => a.rate = num(&value)?,
            "--duration" => a.duration = num(&value)?,
            "--ramp" => a.ramp = num(&value)?,
            "--grace" => a.grace = num(&value)?,
            "--label" => a.label = value,
            "--feed" => {
                a.feed = match value.as_str() {
                    "longpoll" => FeedKind::Longpoll,
                    "continuous" => FeedKind::Continuous,
                    other => return Err(format!("--feed {other}: longpoll or continuous")),
                }
            }
            "--pid" => {
                for p in value.split(',').filter(|p| !p.is_empty()) {
                    a.pids
                        .push(p.parse().map_err(|e| format!("--pid {p}: {e}"))?);
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    if a.clients == 0 || a.writers == 0 || a.rate <= 0.0 || a.writers > a.clients {
        return Err("need clients >= writers >= 1 and rate > 0".into());
    }
    Ok(a)
}

fn log(msg: &str) {
    eprintln!("clients-workload: {msg}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let target = Target::parse(&args.url)?;
    let count = (args.rate * args.duration).round() as usize;
    let shared = Arc::new(Shared {
        target,
        tracker: Tracker::new(args.clients as u64, count, MAX_WARM),
        feed: args.feed,
        started: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let mut control = Conn::new();
    let res = control
        .send(&shared.target, Method::GET, &shared.target.db_path, None)
        .await?;
    let status = res.status();
    let body = read_body(res, Duration::from_secs(30)).await?;
    if !status.is_success() {
        return Err(format!(
            "GET the database: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let pids = args.pids.clone();
    let rss = |what: &str| -> Result<Option<u64>, String> {
        if pids.is_empty() {
            return Ok(None);
        }
        server_proc::rss_bytes(&pids)
            .map(Some)
            .map_err(|e| format!("{what}: {e}"))
    };
    let rss_idle = rss("idle memory")?;
    let peak = Arc::new(AtomicU64::new(rss_idle.unwrap_or(0)));
    let sampler = {
        let (peak, pids) = (peak.clone(), pids.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(b) = server_proc::rss_bytes(&pids) {
                    peak.fetch_max(b, Ordering::Relaxed);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    log(&format!("opening {} {:?} feeds", args.clients, args.feed));
    let mut tasks = Vec::with_capacity(args.clients);
    let gap = Duration::from_secs_f64(args.ramp / args.clients as f64);
    for _ in 0..args.clients {
        tasks.push(tokio::spawn(feed::client(shared.clone())));
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while shared.started.load(Ordering::Acquire) < args.clients {
        if tokio::time::Instant::now() > deadline {
            shared.tracker.error(
                "feed start",
                format!(
                    "only {} of {} feeds started within 60 s",
                    shared.started.load(Ordering::Acquire),
                    args.clients
                ),
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    log("warming up: writing until every client has seen a write");
    let mut warm_ok = false;
    'warm: for k in 0..MAX_WARM {
        let body = bytes::Bytes::from(json!({"type": "warm-up"}).to_string());
        let id = tracker::Id::Warm(k).doc_id(&shared.tracker.tag);
        if let Err((kind, msg)) = feed::put(&shared, &mut control, &id, body).await {
            shared.tracker.error(kind, format!("{id}: {msg}"));
        }
        let until = tokio::time::Instant::now() + WARM_WAIT;
        while tokio::time::Instant::now() < until {
            if (0..=k).any(|j| shared.tracker.warm_seen_by_all(j)) {
                warm_ok = true;
                break 'warm;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !warm_ok {
        shared.tracker.error(
            "warm-up",
            format!("no warm-up write reached all {} clients", args.clients),
        );
    }
    let rss_connected = rss("connected memory")?;
    let cpu_before = if pids.is_empty() {
        None
    } else {
        Some(server_proc::cpu_seconds(&pids)?)
    };

    log(&format!(
        "writing {count} notes at {} /s from {} writers",
        args.rate, args.writers
    ));
    let begin = tokio::time::Instant::now() + Duration::from_millis(100);
    let writers: Vec<_> = (0..args.writers)
        .map(|k| {
            tokio::spawn(feed::writer(
                shared.clone(),
                k,
                args.writers,
                count,
                args.rate,
                begin,
            ))
        })
        .collect();
    for w in writers {
        let _ = w.await;
    }
    let wrote = begin.elapsed();
    let grace_until = tokio::time::Instant::now() + Duration::from_secs_f64(args.grace);
    while !shared.tracker.all_seen(count) && tokio::time::Instant::now() < grace_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let measured = begin.elapsed();
    let cpu = match cpu_before {
        Some(before) => Some(server_proc::cpu_seconds(&pids)? - before),
        None => None,
    };
    let rss_after = rss("memory after")?;
    shared.stop.store(true, Ordering::Relaxed);
    sampler.abort();
    for t in &tasks {
        t.abort();
    }

    let t = &shared.tracker;
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut acked = 0usize;
    let mut sent = 0usize;
    let mut not_seen = 0usize;
    let mut fewest_seen = u64::MAX;
    let mut last = Vec::new();
    let mut ack = Vec::new();
    let (mut first_sent, mut last_ack) = (u64::MAX, 0u64);
    for s in &t.writes {
        let (s_sent, s_ack) = (
            s.sent.load(Ordering::Acquire),
            s.acked.load(Ordering::Acquire),
        );
        if s_sent == 0 {
            continue;
        }
        sent += 1;
        if s_ack == 0 {
            continue;
        }
        acked += 1;
        first_sent = first_sent.min(s_sent);
        last_ack = last_ack.max(s_ack);
        ack.push(ms(s_ack - s_sent));
        let by = s.seen_by.load(Ordering::Acquire);
        fewest_seen = fewest_seen.min(by);
        if by >= t.clients {
            last.push(ms(s
                .last_seen
                .load(Ordering::Acquire)
                .saturating_sub(s_sent)));
        } else {
            not_seen += 1;
        }
    }
    if not_seen > 0 {
        t.error(
            "not seen by every client",
            format!(
                "{not_seen} writes; the least-seen reached {fewest_seen} of {} clients",
                t.clients
            ),
        );
    }
    last.sort_by(f64::total_cmp);
    ack.sort_by(f64::total_cmp);
    let write_window = (last_ack.saturating_sub(first_sent)) as f64 / 1e9;
    let errors = t.errors();
    let mb = |b: Option<u64>| b.map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0);
    let per_client_kb = match (rss_idle, rss_connected) {
        (Some(i), Some(c)) => {
            Some(((c as f64 - i as f64) / 1024.0 / args.clients as f64 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    let report = json!({
        "label": args.label,
        "feed": format!("{:?}", args.feed).to_lowercase(),
        "clients": args.clients,
        "writers": args.writers,
        "rate": args.rate,
        "warmup_ok": warm_ok,
        "writes_sent": sent,
        "writes_acked": acked,
        "writes_per_s": round((write_window > 0.0).then(|| acked as f64 / write_window)),
        "write_phase_s": round(Some(wrote.as_secs_f64())),
        "ack_ms": {"p50": round(quantile(&ack, 0.5)), "p99": round(quantile(&ack, 0.99))},
        "last_client_ms": {
            "p50": round(quantile(&last, 0.5)),
            "p99": round(quantile(&last, 0.99)),
            "max": round(quantile(&last, 1.0)),
        },
        "writes_not_seen_by_all": not_seen,
        "rows_delivered": t.rows.load(Ordering::Relaxed),
        "rows_repeated": t.repeats.load(Ordering::Relaxed),
        "errors": errors.iter().map(|(k, (n, _))| (k.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "error_samples": errors.iter().map(|(k, (_, s))| (k.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "server": {
            "rss_idle_mb": mb(rss_idle),
            "rss_connected_mb": mb(rss_connected),
            "rss_after_mb": mb(rss_after),
            "rss_peak_mb": mb(rss_idle.map(|_| peak.load(Ordering::Relaxed))),
            "per_client_kb": per_client_kb,
            "cpu_s": round(cpu),
            "cpu_pct": round(cpu.map(|c| c / measured.as_secs_f64() * 100.0)),
        },
    });
    println!("{report}");
    for (kind, (n, samples)) in &errors {
        log(&format!("error {kind} x{n}: {}", samples.join(" | ")));
    }
    Ok(())
}
