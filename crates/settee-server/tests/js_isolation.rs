//! Design document JavaScript that no function can break out of (issue 20, findings 1, 2, 3
//! and 8): each hostile function against a real `settee serve` with its JavaScript workers,
//! and the server still answering afterwards. Where CouchDB 3.5.0 has the same behaviour,
//! its answer is quoted (`os_process_error`, "OS process timed out.").
//!
//! The tests take a shared lock and run one at a time: they look at this process's worker
//! children, which another test's server would add to.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestServe;
use reqwest::Method;
use serde_json::{json, Value};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The worker processes of this test process (children running `settee-js-worker`).
fn worker_pids() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm is cut to 15 bytes.
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.ends_with("(settee-js-worke") && ppid == Some(me) {
            pids.push(pid);
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// This process's resident memory in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

async fn put(serve: &TestServe, path: &str, body: Value) -> (u16, Value) {
    serve.call(Method::PUT, path, Some(body)).await
}

/// A request without credentials.
async fn anonymous(serve: &TestServe, method: Method, path: &str, body: Value) -> (u16, Value) {
    let res = serve
        .http
        .request(method, format!("{}{path}", serve.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A database anyone may read and write (no members, no admins).
async fn public_db(serve: &TestServe, name: &str) {
    serve.create_db(name).await;
    let (s, b) = put(
        serve,
        &format!("/{name}/_security"),
        json!({"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

async fn assert_still_answers(serve: &TestServe) {
    let (s, b) = serve.call(Method::GET, "/_up", None).await;
    assert_eq!((s, &b["status"]), (200, &json!("ok")), "{b}");
    let (s, b) = serve.call(Method::GET, "/_all_dbs", None).await;
    assert_eq!(s, 200, "{b}");
}

const DEEP: &str = "var a = []; for (var i = 0; i < 10000; i++) { a = [a]; }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_value_nested_10000_deep_fails_its_request_and_not_the_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    let serve = TestServe::start().await;
    serve.create_db("deep").await;
    assert_eq!(put(&serve, "/deep/doc", json!({"a": 1})).await.0, 201);
    let map = format!("function (doc) {{ {DEEP} emit(doc._id, a); }}");
    let logged = format!("function (doc) {{ {DEEP} log(a); emit(doc._id, 1); }}");
    let ddoc = json!({"views": {"emit": {"map": map}, "log": {"map": logged}}});
    assert_eq!(put(&serve, "/deep/_design/map", ddoc).await.0, 201);
    for view in ["emit", "log"] {
        let (s, b) = serve
            .call(
                Method::GET,
                &format!("/deep/_design/map/_view/{view}"),
                None,
            )
            .await;
        assert_eq!(
            (s, &b["error"]),
            (500, &json!("os_process_error")),
            "{view}: {b}"
        );
        assert_still_answers(&serve).await;
    }
    let throw =
        format!("function (newDoc) {{ if (newDoc.deep) {{ {DEEP} throw {{forbidden: a}}; }} }}");
    let (s, b) = put(
        &serve,
        "/deep/_design/v",
        json!({"validate_doc_update": throw}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put(&serve, "/deep/d2", json!({"deep": true})).await;
    assert_eq!((s, &b["error"]), (500, &json!("os_process_error")), "{b}");
    assert_still_answers(&serve).await;
    // The database and its other functions go on working.
    let (s, b) = put(&serve, "/deep/d3", json!({"deep": false})).await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_backtracking_regex_from_an_anonymous_writer_is_stopped_at_5_s() {
    let _one = ONE_AT_A_TIME.lock().await;
    let serve = TestServe::start().await;
    public_db(&serve, "open").await;
    let validate = r"function (newDoc) { if (!/^([a-z0-9]+)*@example\.com$/.test(newDoc.email)) throw {forbidden: 'bad email'}; }";
    let (s, b) = put(
        &serve,
        "/open/_design/v",
        json!({"validate_doc_update": validate}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(worker_pids().is_empty(), "{:?}", worker_pids());
    let evil = json!({"email": format!("{}!", "a".repeat(40))});
    let started = Instant::now();
    let write = {
        let (http, url) = (serve.http.clone(), format!("{}/open/evil", serve.url()));
        tokio::spawn(async move {
            let res = http.put(url).json(&evil).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    // While the regex runs, the server answers others.
    common::wait_until(Duration::from_secs(5), "a worker to start", || {
        (!worker_pids().is_empty(), format!("{:?}", worker_pids()))
    })
    .await;
    let burning = worker_pids();
    assert_still_answers(&serve).await;
    let (s, b) = tokio::time::timeout(Duration::from_secs(20), write)
        .await
        .expect("the regex was not stopped within 20 s")
        .unwrap();
    // CouchDB 3.5.0 answers the same at 5 s.
    assert_eq!(s, 500, "{b}");
    assert_eq!(
        b,
        json!({"error": "os_process_error", "reason": "OS process timed out."})
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    for pid in burning {
        assert!(!alive(pid), "worker {pid} still runs the regex");
    }
    assert_still_answers(&serve).await;
    let (s, b) = anonymous(
        &serve,
        Method::PUT,
        "/open/good",
        json!({"email": "me@example.com"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_one_databases_functions_cannot_reach_anothers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let serve = TestServe::start().await;
    // A public database whose validation function sets traps in its globals: it replaces
    // JSON.parse (which parses every document a validation function is given) to keep
    // what it sees, replaces the `isArray` helper, pollutes Object.prototype, and hands
    // what it kept to anyone who asks, in a `forbidden` reason.
    public_db(&serve, "public").await;
    let trap = r#"function (newDoc) {
        if (!globalThis.kept) {
            globalThis.kept = [];
            var parse = JSON.parse;
            JSON.parse = function (text) { globalThis.kept.push(text); return parse(text); };
            isArray = function () { return true; };
            sum = function () { return 0; };
            Object.prototype.polluted = 'yes';
        }
        if (newDoc.leak) throw {forbidden: 'kept: ' + globalThis.kept.join(' | ')};
    }"#;
    let (s, b) = put(
        &serve,
        "/public/_design/trap",
        json!({"validate_doc_update": trap}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = anonymous(&serve, Method::PUT, "/public/arm", json!({"a": 1})).await;
    assert_eq!(s, 201, "{b}");
    // A private database (admins only) that relies on the helpers.
    serve.create_db("private").await;
    let guard = r#"function (newDoc) {
        if (!isArray(newDoc.tags)) throw {forbidden: 'tags must be an array'};
        if (sum([1, 2]) !== 3) throw {forbidden: 'sum was replaced'};
        if (({}).polluted !== undefined) throw {forbidden: 'Object.prototype was polluted'};
    }"#;
    let (s, b) = put(
        &serve,
        "/private/_design/guard",
        json!({"validate_doc_update": guard}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put(
        &serve,
        "/private/plan",
        json!({"tags": [], "text": "the admin's secret plan"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    for i in 0..5 {
        let (s, b) = put(
            &serve,
            &format!("/private/bad{i}"),
            json!({"tags": "not an array"}),
        )
        .await;
        assert_eq!(
            (s, &b["reason"]),
            (403, &json!("tags must be an array")),
            "{b}"
        );
    }
    let (s, b) = anonymous(&serve, Method::PUT, "/public/leak", json!({"leak": true})).await;
    assert_eq!(s, 403, "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        !reason.contains("secret plan"),
        "the private document leaked: {reason}"
    );
    assert!(
        !reason.contains("not an array"),
        "private writes leaked: {reason}"
    );
    // A second design document in the same public database has its own globals too.
    let probe = r#"function (newDoc) { if (newDoc.probe) throw {forbidden: String(({}).polluted) + ' ' + sum([1, 2])}; }"#;
    let (s, b) = put(
        &serve,
        "/public/_design/probe",
        json!({"validate_doc_update": probe}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = anonymous(&serve, Method::PUT, "/public/p", json!({"probe": true})).await;
    assert_eq!((s, &b["reason"]), (403, &json!("undefined 3")), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_unbounded_allocation_fails_and_the_servers_memory_stays_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let serve = TestServe::start().await;
    public_db(&serve, "hog").await;
    let hog = "function (newDoc) { var a = []; for (var i = 0; true; i++) a.push('x'.repeat(1 << 20) + i); }";
    let (s, b) = put(
        &serve,
        "/hog/_design/v",
        json!({"validate_doc_update": hog}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let before = rss();
    // More at once than there are workers: each fails, none grows this process.
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let (http, url) = (serve.http.clone(), format!("{}/hog/d{i}", serve.url()));
            tokio::spawn(async move {
                let res = http.put(url).json(&json!({})).send().await.unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for w in writes {
        let (s, b) = w.await.unwrap();
        assert_eq!((s, &b["error"]), (500, &json!("os_process_error")), "{b}");
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 100 << 20, "the server grew by {} MiB", grown >> 20);
    let limits = settee_server::PoolLimits::default();
    assert!(worker_pids().len() <= limits.workers, "{:?}", worker_pids());
    assert_still_answers(&serve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_client_that_leaves_mid_view_build_stops_the_build() {
    let _one = ONE_AT_A_TIME.lock().await;
    let serve = TestServe::start().await;
    serve.create_db("slow").await;
    let docs: Vec<Value> = (0..300)
        .map(|i| json!({"_id": format!("d{i:03}")}))
        .collect();
    let (s, b) = serve
        .call(
            Method::POST,
            "/slow/_bulk_docs",
            Some(json!({"docs": docs})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // 50 ms a document: 15 s for the whole view, each document well within the limit.
    let map =
        "function (doc) { var t = Date.now(); while (Date.now() - t < 50) {} emit(doc._id, 1); }";
    let (s, b) = put(
        &serve,
        "/slow/_design/d",
        json!({"views": {"v": {"map": map}}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let err = client
        .get(format!("{}/slow/_design/d/_view/v", serve.url()))
        .basic_auth(common::ADMIN, Some(common::PASSWORD))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let building = worker_pids();
    assert!(!building.is_empty());
    common::wait_until(
        Duration::from_secs(5),
        "the view's worker to be killed",
        || {
            let left: Vec<u32> = building.iter().copied().filter(|p| alive(*p)).collect();
            (left.is_empty(), format!("still running: {left:?}"))
        },
    )
    .await;
    assert_still_answers(&serve).await;
}
