//! Client behaviour that a real server cannot be made to show on demand, checked against a
//! tiny HTTP server in the test: the `_bulk_get` fallback, retries on 503 with
//! `Retry-After`, no retries of non-idempotent writes, how a continuous feed ends, and a
//! `_bulk_docs` refused as a whole for one document.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use settee_couch::{
    BulkGetOptions, BulkGetRequest, ChangesEvent, ChangesOptions, CouchClient, RetryPolicy, Seq,
};
use settee_testkit::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: String,
    body: String,
}

/// The fake server's answer: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// Serves each request with `handler` (given the request and how many have arrived,
/// this one included), recording them. Returns the base URL.
async fn fake_server(
    handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let (url, _) = http::serve(move |req| {
        let head: String = req
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = Seen {
            method: req.method,
            target: req.target,
            headers: head.to_ascii_lowercase(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        };
        let n = {
            let mut log = log.lock().unwrap();
            log.push(req.clone());
            log.len()
        };
        let (status, headers, body) = handler(&req, n);
        let reply = http::Reply {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            body: body.into_bytes(),
        };
        Box::pin(async move { reply })
    })
    .await;
    (url, seen)
}

/// A server that answers every request `503` `unavailable` ("busy"), with `Retry-After: 0`.
async fn busy_server() -> (String, Arc<Mutex<Vec<Seen>>>) {
    fake_server(|_, _| {
        (
            503,
            vec![("Retry-After", "0".into())],
            json!({"error": "unavailable", "reason": "busy"}).to_string(),
        )
    })
    .await
}

/// A client of `url` that retries a failed request twice.
fn retrying_twice(url: &str) -> CouchClient {
    CouchClient::builder(url)
        .retry(RetryPolicy {
            max_retries: 2,
            ..Default::default()
        })
        .build()
        .unwrap()
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
            .bulk_get(&reqs, &BulkGetOptions::REPLICATION)
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
    let (url, seen) = busy_server().await;
    let err = retrying_twice(&url).db("db").info().await.unwrap_err();
    let f = err.failure().unwrap();
    assert_eq!(
        (f.status(), f.error(), f.reason()),
        (503, "unavailable", "busy")
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// `with_retry` gives the same database another policy (the facade's `status` asks once
/// when counting what is unpulled, so that offline it answers at once); the original keeps
/// its own.
#[tokio::test]
async fn a_database_with_another_retry_policy_keeps_the_original_policy_apart() {
    let (url, seen) = busy_server().await;
    let db = retrying_twice(&url).db("db");
    let once = db.with_retry(RetryPolicy::none());
    assert_eq!(once.url().to_string(), db.url().to_string());
    assert!(once.info().await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1, "one attempt");
    assert!(db.info().await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 4, "then 1 + 2 retries");
}

#[tokio::test]
async fn non_idempotent_write_is_not_retried() {
    let (url, seen) = busy_server().await;
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
async fn url_user_is_sent_without_reading_the_environment_and_bearer_and_extra_headers_are_sent() {
    let (url, seen) = fake_server(|_, _| (200, vec![], json!({"version": "x"}).to_string())).await;
    // Only this test touches SETTEE_PASSWORD: the client must not read it (credentials are
    // the caller's; the `settee` command reads the variable itself).
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
        .encode("alice:")
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

#[tokio::test]
async fn bulk_get_answer_is_paired_by_id_and_a_left_out_result_is_fetched_with_open_revs() {
    // The server answers `_bulk_get` out of order and leaves out "b"; "c" has no revision
    // anywhere (its open_revs answer is empty too).
    let (url, seen) = fake_server(|req, _| {
        let doc =
            |id: &str| json!({"_id": id, "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}});
        if req.target.starts_with("/db/_bulk_get") {
            let body = json!({"results": [
                {"id": "d", "docs": [{"ok": doc("d")}]},
                {"id": "a", "docs": [{"ok": doc("a")}]},
            ]});
            return (200, vec![], body.to_string());
        }
        let id = decode(req.target[4..].split('?').next().unwrap());
        let body = if id == "b" {
            json!([{"ok": doc("b")}])
        } else {
            json!([])
        };
        (200, vec![], body.to_string())
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let reqs: Vec<BulkGetRequest> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|id| BulkGetRequest {
            id: id.into(),
            rev: Some("1-a".parse().unwrap()),
            ..Default::default()
        })
        .collect();
    let got = db
        .bulk_get_json(&reqs, &BulkGetOptions::REPLICATION)
        .await
        .unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "b", "c", "d"],
        "one result per request, in order"
    );
    for (r, want) in got.iter().zip(["a", "b", "", "d"]) {
        match want {
            "" => assert!(r.docs.is_empty(), "{r:?}"),
            id => {
                let doc: serde_json::Value =
                    serde_json::from_str(r.docs[0].doc().unwrap().get()).unwrap();
                assert_eq!(doc["_id"], id);
            }
        }
    }
    let gets: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.target.split('?').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        gets,
        ["/db/b", "/db/c"],
        "only the left-out ones are asked again"
    );
}

/// Issue 19, finding 3: two missing leaves of one conflicted document are two requests with
/// the same id. Whatever the server does to its answer (drops one result, repeats one,
/// swaps them), each request gets the result for its own revision, and a revision whose
/// result is missing is asked for again with `open_revs`.
#[tokio::test]
async fn issue_19_bulk_get_results_are_paired_by_id_and_revision() {
    let doc = |rev: &str| {
        let (pos, hash) = rev.split_once('-').unwrap();
        json!({"_id": "x", "_rev": rev, "_revisions": {"start": pos.parse::<u64>().unwrap(), "ids": [hash, "root"]}})
    };
    let ok = |rev: &str| json!({"id": "x", "docs": [{"ok": doc(rev)}]});
    let cases = [
        ("dropped", vec![ok("2-b")], vec!["2-a"]),
        ("repeated", vec![ok("2-a"), ok("2-a")], vec!["2-b"]),
        ("swapped", vec![ok("2-b"), ok("2-a")], vec![]),
        (
            "moved and repeated",
            vec![ok("2-b"), ok("2-b")],
            vec!["2-a"],
        ),
    ];
    for (name, results, refetched) in cases {
        let answer = json!({ "results": results }).to_string();
        let (url, seen) = fake_server(move |req, _| {
            if req.target.starts_with("/db/_bulk_get") {
                return (200, vec![], answer.clone());
            }
            // open_revs=["2-a"] (percent-encoded): answer that revision.
            let query = decode(req.target.split('?').nth(1).unwrap_or(""));
            let rev = if query.contains("2-a") { "2-a" } else { "2-b" };
            (200, vec![], json!([{"ok": doc(rev)}]).to_string())
        })
        .await;
        let db = CouchClient::builder(&url).build().unwrap().db("db");
        let reqs: Vec<BulkGetRequest> = ["2-a", "2-b"]
            .into_iter()
            .map(|rev| BulkGetRequest {
                id: "x".into(),
                rev: Some(rev.parse().unwrap()),
                ..Default::default()
            })
            .collect();
        let got = db
            .bulk_get_json(&reqs, &BulkGetOptions::REPLICATION)
            .await
            .unwrap();
        let revs: Vec<String> = got
            .iter()
            .map(|r| {
                let d: serde_json::Value =
                    serde_json::from_str(r.docs[0].doc().unwrap().get()).unwrap();
                d["_rev"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            revs,
            ["2-a", "2-b"],
            "{name}: each request its own revision"
        );
        let gets: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "GET")
            .map(|r| decode(&r.target))
            .collect();
        assert_eq!(gets.len(), refetched.len(), "{name}: {gets:?}");
        for (get, rev) in gets.iter().zip(&refetched) {
            assert!(get.contains(rev), "{name}: {get} asks for {rev}");
        }
    }
}

/// A server that answers every request with 200 and a chunked body that never ends (or
/// with a `Content-Length` of `announce` and no body, when given).
async fn endless_server(announce: Option<u64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = match announce {
                    Some(n) => format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"),
                    None => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
                };
                if sock.write_all(head.as_bytes()).await.is_err() || announce.is_some() {
                    // Hold the connection open without sending the announced body.
                    let _ = sock.read(&mut buf).await;
                    return;
                }
                let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
                while sock.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    url
}

#[tokio::test]
async fn an_endless_response_is_a_clear_error_not_all_the_memory_there_is() {
    let url = endless_server(None).await;
    let client = CouchClient::builder(&url)
        .max_response_size(1 << 20)
        .build()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), client.db("db").info())
        .await
        .expect("reading stops at the limit")
        .unwrap_err();
    assert_eq!(err.name(), "response_too_large", "{err}");
    assert!(err.to_string().contains("1048576 bytes"), "{err}");
    assert!(err.to_string().contains("/db"), "{err}");
}

#[tokio::test]
async fn an_announced_length_over_the_limit_fails_before_reading_the_body() {
    // The body is never sent: only the Content-Length can have ended the read.
    let url = endless_server(Some(u64::MAX / 2)).await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let err = tokio::time::timeout(Duration::from_secs(60), db.info())
        .await
        .expect("the announced length alone ends the read")
        .unwrap_err();
    assert_eq!(err.name(), "response_too_large", "{err}");
    // A call's own limit is lower than the client's.
    let url = endless_server(Some(5000)).await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let reqs = [BulkGetRequest {
        id: "a".into(),
        ..Default::default()
    }];
    let err = db
        .bulk_get_json_within(&reqs, &BulkGetOptions::REPLICATION, 4096)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "response_too_large", "{err}");
}

#[tokio::test]
async fn bulk_docs_refused_for_one_document_is_split_down_to_it() {
    // Apache CouchDB answers a whole `_bulk_docs` with 412 `missing_stub` (or 400 for a bad
    // attachment name) when one document has the problem. This server does the same for
    // the document "bad"; every other document is accepted.
    let (url, seen) = fake_server(|req, _| {
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        let has_bad = body["docs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["_id"] == "bad");
        if has_bad {
            let reason = "Invalid attachment stub in bad for a.bin";
            (
                412,
                vec![],
                json!({"error": "missing_stub", "reason": reason}).to_string(),
            )
        } else {
            (201, vec![], "[]".into())
        }
    })
    .await;
    let db = CouchClient::builder(&url).build().unwrap().db("db");
    let docs: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            let id = if i == 11 {
                "bad".to_owned()
            } else {
                format!("d{i:02}")
            };
            json!({"_id": id, "_rev": format!("1-{i:02}")})
        })
        .collect();
    let res = db.bulk_docs(&docs, false).await.unwrap();
    assert_eq!(
        res.len(),
        1,
        "only the refused document has a result: {res:?}"
    );
    assert_eq!(res[0].id, "bad");
    assert_eq!(
        res[0].rev.as_ref().map(ToString::to_string).as_deref(),
        Some("1-11")
    );
    assert_eq!(res[0].error.as_deref(), Some("missing_stub"));
    assert_eq!(
        res[0].reason.as_deref(),
        Some("Invalid attachment stub in bad for a.bin")
    );
    // Every other document reached the server in a request that succeeded.
    let seen = seen.lock().unwrap().clone();
    let mut written: Vec<String> = Vec::new();
    for req in &seen {
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        let ids: Vec<String> = body["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect();
        if !ids.iter().any(|id| id == "bad") {
            written.extend(ids);
        }
    }
    written.sort();
    let expected: Vec<String> = (0..16)
        .filter(|&i| i != 11)
        .map(|i| format!("d{i:02}"))
        .collect();
    assert_eq!(written, expected);
    // Halving: the first request, then two per level down to the document (4 levels).
    assert!(seen.len() <= 9, "{} requests", seen.len());

    // A new edit is not split: CouchDB may have applied part of the request.
    let err = db.bulk_docs(&docs, true).await.unwrap_err();
    assert_eq!(err.status(), Some(412), "{err}");
}
