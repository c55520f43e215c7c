//! Random bad requests at `settee serve` (seeded; `SETTEE_FUZZ_SEED` replays one): whatever
//! comes in, the answer is never a 5xx (but 501 for the design document endpoints Settee does
//! not serve: shows, lists, updates), a failure is CouchDB's `{"error", "reason"}`, a failed
//! request changes nothing (update sequence, documents and a `_local` document are as
//! before), and the server goes on answering.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServe;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use settee_server::{Admin, RequestLimits, Server, ServerOptions};

const PATHS: &[&str] = &[
    "/",
    "/_uuids",
    "/_all_dbs",
    "/_session",
    "/f",
    "/f/",
    "/f/doc",
    "/f/doc/att.txt",
    "/f/_design/d",
    "/f/_design/d/_view/v",
    "/f/_local/ckpt",
    "/f/_local/ckpt/att",
    "/f/_all_docs",
    "/f/_bulk_docs",
    "/f/_bulk_get",
    "/f/_revs_diff",
    "/f/_changes",
    "/f/_security",
    "/f/_revs_limit",
    "/f/_purge",
    "/f/_compact",
    "/f/_ensure_full_commit",
    "/f/_nope",
    "/f/%zz",
    "/f/%C3%28",
    "/F",
    "/nodb/doc",
    "/f/_design",
    "/f/_local",
    "/f/_find",
    "/f/_explain",
    "/f/_index",
    "/f/_index/d/json/n",
    "/f/_index/_design/d/json/n",
    "/f/_index/d/text/n",
    "/f/_index/_bulk_delete",
    "/f/_index/d",
];

const QUERIES: &[&str] = &[
    "",
    "?rev=bogus",
    "?rev=1-",
    "?rev=0-abc",
    "?open_revs=all",
    "?open_revs=[1,2]",
    "?open_revs=%5B%22x%22%5D",
    "?open_revs={",
    "?limit=-1",
    "?limit=abc",
    "?startkey=notjson",
    "?keys=%5B1,2%5D",
    "?key=1&keys=[]",
    "?descending=maybe",
    "?since=garbage",
    "?feed=sideways",
    "?style=weird",
    "?filter=_doc_ids",
    "?filter=_selector",
    "?filter=nodesign/f",
    "?filter=_view",
    "?new_edits=perhaps",
    "?atts_since=[1]",
    "?count=100000",
    "?heartbeat=x",
    "?feed=longpoll&timeout=1",
];

fn random_body(rng: &mut StdRng, big: usize) -> (Option<&'static str>, Vec<u8>) {
    let json_ct = Some("application/json");
    match rng.gen_range(0..21) {
        0 => (json_ct, b"{".to_vec()),
        1 => (json_ct, b"not json".to_vec()),
        2 => (json_ct, b"[1,2,3]".to_vec()),
        3 => (json_ct, b"\"str\"".to_vec()),
        4 => (
            json_ct,
            json!({"docs": [{"_id": "_bad"}]}).to_string().into_bytes(),
        ),
        5 => (
            json_ct,
            json!({"docs": [{"_zing": 1}, {"_id": "ok"}]})
                .to_string()
                .into_bytes(),
        ),
        6 => (
            json_ct,
            json!({"docs": [{"_id": "x"}], "new_edits": false})
                .to_string()
                .into_bytes(),
        ),
        7 => (
            json_ct,
            json!({"_rev": "zz", "a": 1}).to_string().into_bytes(),
        ),
        8 => (
            json_ct,
            json!({"_attachments": {"_a": {"data": "YQ=="}}})
                .to_string()
                .into_bytes(),
        ),
        9 => (
            json_ct,
            json!({"_attachments": {"a": {"data": "!!!"}}})
                .to_string()
                .into_bytes(),
        ),
        10 => (
            json_ct,
            json!({"x": "y".repeat(big)}).to_string().into_bytes(),
        ),
        11 => (
            Some("multipart/related; boundary=B"),
            b"--B\r\ngarbage".to_vec(),
        ),
        12 => (Some("multipart/related"), b"--B--".to_vec()),
        13 => (Some("text/plain"), b"{\"docs\":[]}".to_vec()),
        14 => (
            json_ct,
            json!({"doc": {"_id": 5}, "docs": "x", "a": ["1-x"]})
                .to_string()
                .into_bytes(),
        ),
        // Mango: bad selectors, sorts, bookmarks, index definitions.
        15 => (
            json_ct,
            json!({"selector": {"a": {"$foo": 1}}, "sort": ["zz"]})
                .to_string()
                .into_bytes(),
        ),
        16 => (
            json_ct,
            json!({"selector": {"$or": "x"}, "bookmark": "!!", "limit": -1})
                .to_string()
                .into_bytes(),
        ),
        17 => (
            json_ct,
            json!({"index": {"fields": [{"a": "sideways"}]}, "ddoc": ""})
                .to_string()
                .into_bytes(),
        ),
        18 => (
            json_ct,
            json!({"index": {"fields": ["a"], "partial_filter_selector": {"$and": 1}}, "type": "text"})
                .to_string()
                .into_bytes(),
        ),
        19 => (
            json_ct,
            json!({"selector": {"a": 1}, "use_index": ["x", "y", "z"], "docids": 7})
                .to_string()
                .into_bytes(),
        ),
        _ => (
            None,
            (0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>()).collect(),
        ),
    }
}

/// What a failed request must leave as it was.
async fn state(serve: &Server, http: &reqwest::Client) -> Value {
    let base = format!("http://{}", serve.local_addr());
    let get = |p: String| {
        let http = http.clone();
        async move {
            let res = http
                .get(p)
                .basic_auth(common::ADMIN, Some(common::PASSWORD))
                .header("Accept", "application/json")
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()
        }
    };
    let info = get(format!("{base}/f")).await;
    json!({
        "update_seq": info["update_seq"],
        "docs": get(format!("{base}/f/_all_docs?include_docs=true")).await["rows"],
        "local": get(format!("{base}/f/_local/ckpt")).await,
        "security": get(format!("{base}/f/_security")).await,
        "revs_limit": get(format!("{base}/f/_revs_limit")).await,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bad_requests_get_couchdb_errors_and_change_nothing() {
    let seed: u64 = std::env::var("SETTEE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz seed {seed} (SETTEE_FUZZ_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let max_body = 4096;
    let server = Server::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        admin: Some(Admin {
            name: common::ADMIN.into(),
            password: common::PASSWORD.into(),
        }),
        limits: RequestLimits {
            max_body,
            ..Default::default()
        },
        // Its random wrong passwords would lock the admin out after 5 (tests/users.rs
        // tests the lockout).
        lockout: settee_server::Lockout {
            mode: settee_server::LockoutMode::Off,
            ..Default::default()
        },
        js_worker: common::js_worker(),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| r.basic_auth(common::ADMIN, Some(common::PASSWORD));
    assert_eq!(
        admin(http.put(format!("{base}/f")))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    admin(http.put(format!("{base}/f/doc")))
        .json(&json!({"v": 1, "_attachments": {"att.txt": {"content_type": "text/plain", "data": "aGk="}}}))
        .send()
        .await
        .unwrap();
    admin(http.put(format!("{base}/f/_local/ckpt")))
        .json(&json!({"seq": 1}))
        .send()
        .await
        .unwrap();

    let methods = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
        Method::PATCH,
        Method::from_bytes(b"COPY").unwrap(),
    ];
    let mut before = state(&server, &http).await;
    let mut failures = 0;
    for i in 0..400 {
        let method = methods[rng.gen_range(0..methods.len())].clone();
        let path = PATHS[rng.gen_range(0..PATHS.len())];
        let query = QUERIES[rng.gen_range(0..QUERIES.len())];
        let big = if rng.gen_bool(0.1) { max_body * 2 } else { 10 };
        let (ct, body) = random_body(&mut rng, big);
        let mut req = http.request(method.clone(), format!("{base}{path}{query}"));
        req = match rng.gen_range(0..4) {
            0 => req,
            1 => req.basic_auth(common::ADMIN, Some("wrong")),
            _ => admin(req),
        };
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        if rng.gen_bool(0.3) {
            req = req.header("Destination", "copy-target");
        }
        let what = format!("#{i} {method} {path}{query}");
        let res = req
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        // 501 is the deliberate answer for design document endpoints Settee does not serve.
        assert!(
            status < 500
                || (status == 501 && (method == Method::HEAD || text.contains("not_implemented"))),
            "{what}: {status} {text}"
        );
        if status >= 400 && method != Method::HEAD && status != 416 {
            failures += 1;
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {status} {text}"));
            assert!(
                v["error"].is_string() && v["reason"].is_string(),
                "{what}: {text}"
            );
            let after = state(&server, &http).await;
            assert_eq!(
                after, before,
                "{what}: a failed request changed the database"
            );
        } else {
            before = state(&server, &http).await;
        }
    }
    assert!(
        failures > 200,
        "only {failures} requests failed: the generator is too tame"
    );
    // Still answering.
    assert_eq!(
        http.get(format!("{base}/_up"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = TestServe::start; // the shared helpers are compiled for every test file
    server.shutdown().await;
}
