//! The HTTP edge under attack and the server's differences from CouchDB (issue 20,
//! findings 4, 8, 9 and 10): slow and idle clients are dropped while others are served,
//! bodies sent before authentication stay small, every name CouchDB accepts is storable,
//! encoded design ids, design document shapes and multipart lengths are checked as
//! CouchDB 3.5.0 does, and `DELETE /{db}` never removes what it must not.
#![allow(clippy::unwrap_used)]

mod common;
/// `DELETE /{db}`: what it never removes, and how it waits for requests.
#[path = "edge/delete.rs"]
mod delete;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use settee_server::{Admin, RequestLimits, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server with an admin on a fresh data directory, with `limits`.
async fn serve(dir: &std::path::Path, limits: RequestLimits) -> Server {
    Server::start(ServerOptions {
        limits,
        ..common::options(dir)
    })
    .await
    .unwrap()
}

fn basic() -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{PASSWORD}"));
    format!("Basic {token}")
}

async fn call(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method, format!("http://{addr}{path}"))
        .basic_auth(ADMIN, Some(PASSWORD));
    if let Some(b) = body {
        r = r.json(&b);
    }
    common::answer(r.send().await.unwrap()).await
}

/// Reads from `s` until the head of an answer has arrived; returns its status.
async fn read_status(s: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_slow_headers_are_dropped_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let header_timeout = Duration::from_secs(2);
    let server = serve(
        dir.path(),
        RequestLimits {
            header_timeout,
            ..Default::default()
        },
    )
    .await;
    let addr = server.local_addr();
    const SLOW: usize = 300;
    let closed = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    for _ in 0..SLOW {
        let (closed, opened) = (closed.clone(), opened.clone());
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /_up HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            opened.fetch_add(1, Ordering::SeqCst);
            // One header byte every 300 ms, never the blank line that ends the headers:
            // the attacker's pace, not a wait in the test.
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {} // a 408 answer before the close
                    },
                    _ = tick.tick() => {
                        if s.write_all(b"X").await.is_err() { break; }
                    }
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    common::wait_until(Duration::from_secs(10), "slow connections to open", || {
        let n = opened.load(Ordering::SeqCst);
        (n == SLOW, format!("{n} open"))
    })
    .await;
    // A well-behaved client is answered while all of them are held.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let res = http.get(format!("http://{addr}/_up")).send().await.unwrap();
    let latency = started.elapsed();
    println!("GET /_up with {SLOW} slow-header connections open: {latency:?}");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["status"],
        "ok",
        "the /_up answer"
    );
    // And every slow one is dropped once its header time is up.
    common::wait_until(
        header_timeout * 5,
        "the server to close the slow connections",
        || {
            let n = closed.load(Ordering::SeqCst);
            (n == SLOW, format!("{n} of {SLOW} closed"))
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_idle_connections_close_but_live_feeds_and_stalled_bodies_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        RequestLimits {
            header_timeout: Duration::from_millis(800),
            body_idle_timeout: Duration::from_millis(800),
            ..Default::default()
        },
    )
    .await;
    let addr = server.local_addr();
    let http = reqwest::Client::new();
    assert_eq!(call(&http, addr, Method::PUT, "/feeds", None).await.0, 201);

    // A kept-alive connection with no request in progress is closed.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /_up HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut idle).await, 200);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("an idle kept-alive connection is closed by the server");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    println!("idle connection closed after {:?}", started.elapsed());

    // A continuous feed with heartbeats outlives the timeouts several times over.
    let mut feed = http
        .get(format!(
            "http://{addr}/feeds/_changes?feed=continuous&heartbeat=100"
        ))
        .header("Authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let chunk = tokio::time::timeout(Duration::from_secs(2), feed.chunk())
            .await
            .expect("a heartbeat")
            .unwrap();
        assert!(
            chunk.is_some(),
            "the feed ended after {:?}",
            started.elapsed()
        );
    }
    drop(feed);

    // A body that stops arriving ends its request.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /feeds/stalled HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":",
        basic()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), read_status(&mut s))
        .await
        .expect("a stalled body is answered");
    assert_eq!(status, 408);
    server.shutdown().await;
}

/// Sends `POST /_session` with a 64 MiB body (chunked or with its length) without
/// credentials; returns the status.
async fn big_anonymous_login(addr: std::net::SocketAddr, chunked: bool) -> u16 {
    const SIZE: usize = 64 * 1024 * 1024;
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let head = if chunked {
        "POST /_session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
    } else {
        format!("POST /_session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {SIZE}\r\n\r\n")
    };
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let block = vec![b' '; 64 * 1024];
        for _ in 0..SIZE / block.len() {
            if chunked {
                wr.write_all(format!("{:x}\r\n", block.len()).as_bytes())
                    .await?;
                wr.write_all(&block).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(&block).await?;
            }
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_anonymous_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), RequestLimits::default()).await;
    let addr = server.local_addr();
    let http = reqwest::Client::new();
    assert_eq!(
        call(&http, addr, Method::PUT, "/private", None).await.0,
        201
    );
    let before = rss_kib();
    let started = Instant::now();
    let logins: Vec<_> = (0..8)
        .map(|i| tokio::spawn(big_anonymous_login(addr, i % 2 == 0)))
        .collect();
    let mut statuses = Vec::new();
    for l in logins {
        statuses.push(l.await.unwrap());
    }
    let after = rss_kib();
    println!(
        "8 anonymous 64 MiB logins: {statuses:?} in {:?}, RSS {before} KiB -> {after} KiB",
        started.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 413), "{statuses:?}");
    // Reading them whole would take 8 x 64 MiB.
    assert!(
        after.saturating_sub(before) < 128 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // An anonymous write to a database it may not write is refused before its body.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /private HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n{")
        .await
        .unwrap();
    assert_eq!(read_status(&mut s).await, 401);
    // A small login still works.
    let res = http
        .post(format!("http://{addr}/_session"))
        .json(&json!({"name": ADMIN, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_every_name_couchdb_accepts_is_storable_and_no_path_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), RequestLimits::default()).await;
    let addr = server.local_addr();
    let http = reqwest::Client::new();
    let slashes = format!("a{}", "/".repeat(90));
    let long = format!("a{}", "b".repeat(237));
    let mut names = vec![slashes.clone(), long.clone()];
    for name in &names {
        let path = format!("/{}", common::urlencode(name));
        let (s, b) = call(&http, addr, Method::PUT, &path, None).await;
        assert_eq!(s, 201, "{name}: {b}");
        let text = b.to_string();
        assert!(!text.contains(dir.path().to_str().unwrap()), "{text}");
        let (s, b) = call(
            &http,
            addr,
            Method::PUT,
            &format!("{path}/doc"),
            Some(json!({"v": 1})),
        )
        .await;
        assert_eq!(s, 201, "{name}: {b}");
        let (s, b) = call(&http, addr, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["db_name"], name.as_str());
        assert_eq!(b["doc_count"], 1);
    }
    // A name CouchDB refuses is refused, without a path.
    let too_long = format!("a{}", "b".repeat(238));
    let (s, b) = call(&http, addr, Method::PUT, &format!("/{too_long}"), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("illegal_database_name"))
    );
    let (_, all) = call(&http, addr, Method::GET, "/_all_dbs", None).await;
    names.sort();
    assert_eq!(without_users(all), json!(names));
    // The names survive a restart (read back from the store directories).
    server.shutdown().await;
    let server = serve(dir.path(), RequestLimits::default()).await;
    let addr = server.local_addr();
    let (_, all) = call(&http, addr, Method::GET, "/_all_dbs", None).await;
    assert_eq!(without_users(all), json!(names));
    let path = format!("/{}/doc", common::urlencode(&slashes));
    let (s, b) = call(&http, addr, Method::GET, &path, None).await;
    assert_eq!((s, &b["v"]), (200, &json!(1)), "{b}");
    let (s, _) = call(
        &http,
        addr,
        Method::DELETE,
        &format!("/{}", common::urlencode(&long)),
        None,
    )
    .await;
    assert_eq!(s, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_encoded_design_and_local_ids_as_couchdb() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), RequestLimits::default()).await;
    let addr = server.local_addr();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(call(&http, addr, Method::PUT, "/d", None).await.0, 201);
    // CouchDB 3.5.0: 201 with the id `_design/x`.
    let (s, b) = call(&http, addr, Method::PUT, "/d/_design%2Fx", Some(json!({}))).await;
    assert_eq!((s, &b["id"]), (201, &json!("_design/x")), "{b}");
    let rev = b["rev"].as_str().unwrap().to_owned();
    // GET: 301 to the unencoded path.
    let res = http
        .get(format!("http://{addr}/d/_design%2Fx"))
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        format!("http://{addr}/d/_design/x")
    );
    let (s, b) = call(
        &http,
        addr,
        Method::DELETE,
        &format!("/d/_design%2Fx?rev={rev}"),
        None,
    )
    .await;
    assert_eq!((s, &b["id"]), (200, &json!("_design/x")), "{b}");
    let (s, b) = call(
        &http,
        addr,
        Method::PUT,
        "/d/_local%2Fy",
        Some(json!({"a": 1})),
    )
    .await;
    assert_eq!((s, &b["id"]), (201, &json!("_local/y")), "{b}");
    let (s, b) = call(&http, addr, Method::GET, "/d/_local%2Fy", None).await;
    assert_eq!((s, &b["a"]), (200, &json!(1)), "{b}");
    let (s, b) = call(&http, addr, Method::GET, "/d/_local/y", None).await;
    assert_eq!((s, &b["_id"]), (200, &json!("_local/y")), "{b}");
    let (s, _) = call(&http, addr, Method::DELETE, "/d/_local%2Fy?rev=0-1", None).await;
    assert_eq!(s, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_design_documents_and_multipart_lengths_are_checked_as_couchdb() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), RequestLimits::default()).await;
    let addr = server.local_addr();
    let http = reqwest::Client::new();
    assert_eq!(call(&http, addr, Method::PUT, "/d", None).await.0, 201);
    // Each answer as CouchDB 3.5.0 gives it.
    let cases = [
        (json!({"views": 5}), "`views` field must have object type"),
        (
            json!({"views": {"v": {}}}),
            "View `v` must contain map function",
        ),
        (
            json!({"views": {"v": {"map": 5}}}),
            "`views.v.map` field must have string type",
        ),
        (
            json!({"filters": {"f": 5}}),
            "`filters.f` field must have string or object type",
        ),
        (
            json!({"validate_doc_update": 5}),
            "`validate_doc_update` field must have string type",
        ),
        (
            json!({"language": 5}),
            "`language` field must have string type",
        ),
    ];
    for (doc, reason) in &cases {
        let (s, b) = call(&http, addr, Method::PUT, "/d/_design/t", Some(doc.clone())).await;
        assert_eq!(
            (s, &b),
            (
                400,
                &json!({"error": "invalid_design_doc", "reason": reason})
            ),
            "{doc}"
        );
    }
    let (s, b) = call(
        &http,
        addr,
        Method::POST,
        "/d/_bulk_docs",
        Some(json!({"docs": [{"_id": "_design/b", "views": 5}]})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0]["error"], "invalid_design_doc", "{b}");
    let (s, b) = call(&http, addr, Method::GET, "/d/_design/t", None).await;
    assert_eq!(s, 404, "{b}");

    // A following attachment whose bytes disagree with its length.
    for (length, answer) in [
        (3, Some("attachment longer than expected")),
        (10, Some("attachment shorter than expected")),
        (5, None),
    ] {
        let body = format!("--B\r\nContent-Type: application/json\r\n\r\n{{\"_attachments\":{{\"a.txt\":{{\"follows\":true,\"length\":{length},\"content_type\":\"text/plain\"}}}}}}\r\n--B\r\n\r\nhello\r\n--B--");
        let res = http
            .put(format!("http://{addr}/d/mp{length}"))
            .basic_auth(ADMIN, Some(PASSWORD))
            .header("Content-Type", "multipart/related; boundary=B")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let b: Value = res.json().await.unwrap();
        match answer {
            Some(reason) => assert_eq!(
                (status, b),
                (400, json!({"error": "bad_request", "reason": reason}))
            ),
            None => assert_eq!(status, 201, "{b}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_connections_past_the_cap_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        RequestLimits {
            max_connections: 2,
            ..Default::default()
        },
    )
    .await;
    let addr = server.local_addr();
    // Two connections take the places (each has a request answered, so both are surely
    // accepted).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /_up HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_status(&mut s).await, 200);
        held.push(s);
    }
    // A third is closed without an answer.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /_up HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("the connection past the cap is closed at once");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // When one place is free again, a client gets in.
    held.pop();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http.get(format!("http://{addr}/_up")).send().await {
            Ok(res) => {
                assert_eq!(res.status(), 200);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never let in: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

/// `_all_dbs` without the `_users` database every server with a data directory has.
fn without_users(all: Value) -> Value {
    Value::Array(
        all.as_array()
            .unwrap()
            .iter()
            .filter(|name| *name != "_users")
            .cloned()
            .collect(),
    )
}
