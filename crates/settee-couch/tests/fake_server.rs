//! Client behaviour that a real server cannot be made to show on demand, checked against a
//! tiny HTTP server in the test: the `_bulk_get` fallback, retries on 503 with
//! `Retry-After`, no retries of non-idempotent writes, and how a continuous feed ends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use settee_couch::{
    BulkGetOptions, BulkGetRequest, ChangesEvent, ChangesOptions, CouchClient, RetryPolicy, Seq,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: String,
}

/// The fake server's answer: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// Serves each connection's requests with `handler`, recording them. Returns the base URL.
async fn fake_server(
    handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request head (and its body, by Content-Length).
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let mut first = head.lines().next().unwrap().split(' ');
                    let req = Seen {
                        method: first.next().unwrap().to_owned(),
                        target: first.next().unwrap().to_owned(),
                        headers: head.to_ascii_lowercase(),
                    };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(req.clone());
                        log.len()
                    };
                    let (status, headers, body) = handler(&req, n);
                    let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
                    for (k, v) in headers {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    resp.push_str(&body);
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .replace('+', " ")
}

#[tokio::test]
async fn bulk_get_falls_back_to_open_revs_once_and_remembers() {
    let (url, seen) = fake_server(|req, _| {
        if req.target.starts_with("/db/_bulk_get") {
            return (405, vec![], json!({"error": "method_not_allowed", "reason": "Only GET,HEAD allowed"}).to_string());
        }
        let id = req.target[4..].split('?').next().unwrap().to_owned();
        let id = decode(&id);
        let body = json!([{"ok": {"_id": id, "_rev": "2-b", "_revisions": {"start": 2, "ids": ["b", "a"]}}}]);
        (200, vec![], body.to_string())
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let reqs = [
        BulkGetRequest {
            id: "x/y".into(),
            rev: Some("1-a".parse().unwrap()),
            ..Default::default()
        },
        BulkGetRequest {
            id: "z".into(),
            rev: None,
            ..Default::default()
        },
    ];
    for _ in 0..2 {
        let got = db
            .bulk_get(&reqs, &BulkGetOptions::default())
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "x/y");
        assert_eq!(got[0].docs[0].doc().unwrap()["_id"], "x/y");
        assert_eq!(got[1].docs[0].doc().unwrap()["_revisions"]["start"], 2);
    }
    let seen = seen.lock().unwrap().clone();
    let probes = seen
        .iter()
        .filter(|r| r.target.starts_with("/db/_bulk_get"))
        .count();
    assert_eq!(probes, 1, "the missing _bulk_get is remembered: {seen:?}");
    let gets: Vec<_> = seen.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 4);
    let first = gets
        .iter()
        .find(|r| r.target.starts_with("/db/x%2Fy?"))
        .unwrap();
    let query = decode(first.target.split_once('?').unwrap().1);
    assert!(query.contains(r#"open_revs=["1-a"]"#), "{query}");
    assert!(
        query.contains("revs=true") && query.contains("latest=true"),
        "{query}"
    );
    assert!(
        first.headers.contains("accept: application/json"),
        "{}",
        first.headers
    );
    let all = gets
        .iter()
        .find(|r| r.target.starts_with("/db/z?"))
        .unwrap();
    assert!(all.target.contains("open_revs=all"), "{}", all.target);
}

#[tokio::test]
async fn idempotent_request_is_retried_after_503_honouring_retry_after() {
    let (url, seen) = fake_server(|_, n| {
        if n < 3 {
            (
                503,
                vec![("Retry-After", "0".into())],
                json!({"error": "unavailable", "reason": "busy"}).to_string(),
            )
        } else {
            (
                200,
                vec![],
                json!({"version": "3.3.3", "uuid": "u"}).to_string(),
            )
        }
    })
    .await;
    // A backoff of a minute: only Retry-After: 0 lets this finish within the deadline.
    let policy = RetryPolicy {
        max_retries: 3,
        initial_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(120),
    };
    let client = CouchClient::builder(&url).retry(policy).build().unwrap();
    let info = tokio::time::timeout(Duration::from_secs(20), client.server_info()).await;
    let info = info.expect("Retry-After: 0 was not honoured").unwrap();
    assert_eq!(info.version, "3.3.3");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retries_give_up_with_the_last_status_and_reason() {
    let (url, seen) = fake_server(|_, _| {
        (
            503,
            vec![("Retry-After", "0".into())],
            json!({"error": "unavailable", "reason": "busy"}).to_string(),
        )
    })
    .await;
    let client = CouchClient::builder(&url)
        .retry(RetryPolicy {
            max_retries: 2,
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = client.db("db").info().await.unwrap_err();
    let f = err.failure().unwrap();
    assert_eq!(
        (f.status(), f.error(), f.reason()),
        (503, "unavailable", "busy")
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn non_idempotent_write_is_not_retried() {
    let (url, seen) = fake_server(|_, _| {
        (
            503,
            vec![("Retry-After", "0".into())],
            json!({"error": "unavailable", "reason": "busy"}).to_string(),
        )
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let err = db
        .bulk_docs(&[json!({"_id": "a"})], true)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // new_edits=false is idempotent: retried (1 + 3 attempts).
    let err = db
        .bulk_docs(&[json!({"_id": "a", "_rev": "1-a"})], false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(seen.lock().unwrap().len(), 1 + 4);
}

#[tokio::test]
async fn continuous_feed_ends_with_last_seq_or_reports_an_interrupted_feed() {
    let (url, _) = fake_server(|req, _| {
        let rows = concat!(
            r#"{"seq":"1-g1AAAA","id":"a","changes":[{"rev":"1-x"}]}"#,
            "\n\n",
            r#"{"seq":"2-g1AAAB","id":"b","changes":[{"rev":"1-y"}],"deleted":true}"#,
            "\n"
        );
        let body = if req.target.contains("since=2-g1AAAB") {
            rows.to_owned() // no last_seq line: the feed was cut
        } else {
            format!("{rows}{}\n", r#"{"last_seq":"2-g1AAAB"}"#)
        };
        (200, vec![], body)
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let events: Vec<_> = db.changes_stream(ChangesOptions::default()).collect().await;
    let events: Vec<ChangesEvent> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(events.len(), 3);
    let ChangesEvent::Change(b) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(b.deleted);
    assert_eq!(
        events[2],
        ChangesEvent::LastSeq(Seq::from_json(json!("2-g1AAAB")))
    );

    let opts = ChangesOptions {
        since: Some(Seq::from_json(json!("2-g1AAAB"))),
        ..Default::default()
    };
    let events: Vec<_> = db.changes_stream(opts).collect().await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[..2].iter().all(Result::is_ok));
    assert_eq!(events[2].as_ref().unwrap_err().name(), "feed_interrupted");
}

#[tokio::test]
async fn cookie_session_is_renewed_once_on_401() {
    // The first cookie expires after one use on anything but `/`.
    let logins = Arc::new(Mutex::new(0u32));
    let counter = logins.clone();
    let (url, seen) = fake_server(move |req, _| {
        if req.target == "/_session" {
            let mut n = counter.lock().unwrap();
            *n += 1;
            let cookie = format!("AuthSession=session{n}; Version=1; Path=/; HttpOnly");
            return (
                200,
                vec![("Set-Cookie", cookie)],
                json!({"ok": true, "name": "alice"}).to_string(),
            );
        }
        let fresh = req.headers.contains("cookie: authsession=session2");
        let first_use = req.headers.contains("cookie: authsession=session1") && req.target == "/";
        if fresh || first_use {
            (
                200,
                vec![],
                json!({"version": "x", "doc_count": 0, "db_name": "db", "update_seq": 0})
                    .to_string(),
            )
        } else {
            (
                401,
                vec![],
                json!({"error": "unauthorized", "reason": "expired"}).to_string(),
            )
        }
    })
    .await;
    let client = CouchClient::builder(&url)
        .cookie_auth("alice", "pw")
        .build()
        .unwrap();
    assert_eq!(client.server_info().await.unwrap().version, "x"); // logs in (session1)
    assert_eq!(*logins.lock().unwrap(), 1);
    // session1 is refused for /db: one new login (session2), then the request succeeds.
    assert_eq!(client.db("db").info().await.unwrap().db_name, "db");
    assert_eq!(*logins.lock().unwrap(), 2);
    let targets: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/_session", "/", "/db", "/_session", "/db"]);
    let login = seen.lock().unwrap()[0].clone();
    assert_eq!(login.method, "POST");
}

#[tokio::test]
async fn url_user_with_settee_password_bearer_and_extra_headers_are_sent() {
    let (url, seen) = fake_server(|_, _| (200, vec![], json!({"version": "x"}).to_string())).await;
    // Only this test touches SETTEE_PASSWORD.
    std::env::set_var("SETTEE_PASSWORD", "from-env");
    let with_user = url.replacen("://", "://alice@", 1);
    let client = CouchClient::builder(&with_user).build().unwrap();
    std::env::remove_var("SETTEE_PASSWORD");
    client.server_info().await.unwrap();
    let bearer = CouchClient::builder(&url)
        .bearer_auth("tok")
        .header("X-Tenant", "t1")
        .build()
        .unwrap();
    bearer.server_info().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode("alice:from-env")
        .to_ascii_lowercase();
    assert!(
        seen[0]
            .headers
            .contains(&format!("authorization: basic {basic}")),
        "{}",
        seen[0].headers
    );
    assert!(
        seen[1].headers.contains("authorization: bearer tok"),
        "{}",
        seen[1].headers
    );
    assert!(
        seen[1].headers.contains("x-tenant: t1"),
        "{}",
        seen[1].headers
    );
}

#[tokio::test]
async fn idempotent_request_is_retried_after_the_connection_drops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(Mutex::new(0u32));
    let count = served.clone();
    tokio::spawn(async move {
        // The first connection is closed as soon as the request arrives, with no answer.
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = first.read(&mut buf).await;
        drop(first);
        let (mut sock, _) = listener.accept().await.unwrap();
        let _ = sock.read(&mut buf).await;
        *count.lock().unwrap() += 1;
        let body = json!({"version": "after-reset"}).to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
    });
    let client = CouchClient::builder(&url).build().unwrap();
    assert_eq!(client.server_info().await.unwrap().version, "after-reset");
    assert_eq!(*served.lock().unwrap(), 1);
}

#[tokio::test]
async fn gzip_is_asked_for_except_from_a_loopback_server_unless_set() {
    let (url, seen) = fake_server(|_, _| {
        (
            200,
            vec![],
            json!({"version": "3.3.3", "uuid": "u"}).to_string(),
        )
    })
    .await;
    let asks_gzip = |i: usize| {
        let log = seen.lock().unwrap();
        let h = &log[i].headers;
        h.lines()
            .any(|l| l.starts_with("accept-encoding:") && l.contains("gzip"))
    };
    // 127.0.0.1: compression would cost both ends CPU for no bandwidth.
    let client = CouchClient::builder(&url).build().unwrap();
    client.server_info().await.unwrap();
    assert!(!asks_gzip(0));
    // `localhost` is loopback too.
    let local = url.replace("127.0.0.1", "localhost");
    let client = CouchClient::builder(&local).build().unwrap();
    client.server_info().await.unwrap();
    assert!(!asks_gzip(1));
    // Asked for explicitly.
    let client = CouchClient::builder(&url).gzip(true).build().unwrap();
    client.server_info().await.unwrap();
    assert!(asks_gzip(2));
}

/// Issue 10: a server nobody listens on reads as what it is, without the HTTP stack's
/// layers of wording ("error sending request: client error (Connect): tcp connect error").
#[tokio::test]
async fn an_unreachable_server_reads_cannot_connect() {
    let db = CouchClient::builder("http://127.0.0.1:1")
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
        .db("db");
    let err = db.info().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot connect to 127.0.0.1:1: connection refused"
    );
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.name(), "transport");
}

/// Issue 10: a row whose revision no `Rev` can hold (Apache CouchDB stores `-1-b` for
/// `_revisions: {start: -1}`) is delivered with it set aside, in a normal and in a
/// continuous feed alike; the rows after it still come.
#[tokio::test]
async fn a_row_with_an_unrepresentable_revision_does_not_stop_a_feed() {
    let rows = [
        r#"{"seq":"1-g","id":"a","changes":[{"rev":"1-x"}]}"#,
        r#"{"seq":"2-g","id":"bad","changes":[{"rev":"-1-b"},{"rev":"0-ok"}]}"#,
        r#"{"seq":"3-g","id":"c","changes":[{"rev":"1-z"}]}"#,
    ];
    let (url, _) = fake_server(move |req, _| {
        let body = if req.target.contains("feed=continuous") {
            format!("{}\n{}\n", rows.join("\n"), r#"{"last_seq":"3-g"}"#)
        } else {
            format!(r#"{{"results":[{}],"last_seq":"3-g"}}"#, rows.join(","))
        };
        (200, vec![], body)
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let check = |changes: Vec<settee_couch::Change>| {
        let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "bad", "c"]);
        assert_eq!(changes[1].invalid_revs, ["-1-b"]);
        assert_eq!(changes[1].changes[0].to_string(), "0-ok");
        assert!(changes[2].invalid_revs.is_empty());
    };
    check(
        db.changes(&ChangesOptions::default())
            .await
            .unwrap()
            .results,
    );
    let events: Vec<_> = db.changes_stream(ChangesOptions::default()).collect().await;
    let mut changes = Vec::new();
    for e in events {
        match e.unwrap() {
            ChangesEvent::Change(c) => changes.push(c),
            ChangesEvent::LastSeq(seq) => assert_eq!(seq, Seq::from_json(json!("3-g"))),
        }
    }
    check(changes);
}
