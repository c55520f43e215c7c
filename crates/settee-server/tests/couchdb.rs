//! Apache CouchDB 3.5.0's own replicator (`POST /_replicate`) pulls from and pushes to
//! `settee serve`; both sides are then compared leaf by leaf (`open_revs=all&revs=true`,
//! attachments by their bytes: CouchDB digests what it stores gzip-encoded). Needs the test
//! server of `scripts/test.sh` (`SETTEE_TEST_COUCHDB_URL`), and fails loudly without it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_same_leaves, TestServe};
use reqwest::Method;
use serde_json::{json, Value};
use settee_testkit::TestDb;

/// A leaf with attachments reduced to what both servers agree on: type, revpos, bytes.
async fn couch_leaves(http: &reqwest::Client, db: &TestDb, id: &str) -> Vec<Value> {
    let url = format!(
        "{}/{}?open_revs=all&revs=true&attachments=true",
        db.url(),
        common::urlencode(id)
    );
    let (user, pw) = db.server().credentials().unwrap_or(("", ""));
    let res: Value = http
        .get(url)
        .basic_auth(user, Some(pw))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res.as_array()
        .unwrap()
        .iter()
        .map(|r| r["ok"].clone())
        .collect()
}

async fn couch_call(
    http: &reqwest::Client,
    db: &TestDb,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let (user, pw) = db.server().credentials().unwrap_or(("", ""));
    let res = http
        .request(method, format!("{}{path}", db.server().url()))
        .basic_auth(user, Some(pw))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// Has the CouchDB of `couch` replicate `source` to `target` (created), and checks it did.
async fn couch_replicates(http: &reqwest::Client, couch: &TestDb, source: String, target: String) {
    let body = json!({"source": source, "target": target, "create_target": true});
    let (s, b) = couch_call(http, couch, Method::POST, "/_replicate", body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["ok"], true, "{b}");
}

fn seed() -> (Vec<Value>, Vec<Value>) {
    let mut edits: Vec<Value> = (0..25)
        .map(|i| json!({"_id": format!("d{i:02}"), "n": i}))
        .collect();
    edits.push(json!({"_id": "att", "_attachments": {
        "t.txt": {"content_type": "text/plain", "data": "aGVsbG8gaGVsbG8gaGVsbG8gaGVsbG8="},
        "b.bin": {"content_type": "application/octet-stream", "data": "AAEC+v8="}}}));
    let replicated = vec![
        json!({"_id": "conflict", "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}, "side": "b"}),
        json!({"_id": "conflict", "_rev": "2-ccc", "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}, "side": "c"}),
        json!({"_id": "conflict", "_rev": "3-ddd", "_revisions": {"start": 3, "ids": ["ddd", "bbb", "aaa"]}, "_deleted": true}),
        json!({"_id": "gone", "_rev": "2-fff", "_revisions": {"start": 2, "ids": ["fff", "eee"]}, "_deleted": true}),
    ];
    (edits, replicated)
}

async fn compare(serve: &TestServe, settee_db: &str, http: &reqwest::Client, couch: &TestDb) {
    let ids = serve.ids(settee_db).await;
    assert_eq!(ids.len(), 28, "{ids:?}");
    for id in &ids {
        let ours = serve.leaves(settee_db, id).await;
        assert_same_leaves(id, ours, couch_leaves(http, couch, id).await, true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_replicator_pulls_from_and_pushes_to_settee_serve() {
    let serve = TestServe::start().await;
    let http = reqwest::Client::new();

    // CouchDB pulls a Settee database.
    serve.create_db("origin").await;
    let (edits, replicated) = seed();
    let (s, b) = serve
        .call(
            Method::POST,
            "/origin/_bulk_docs",
            Some(json!({"docs": edits})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = serve
        .call(
            Method::POST,
            "/origin/_bulk_docs",
            Some(json!({"docs": replicated, "new_edits": false})),
        )
        .await;
    assert_eq!(s, 201);
    let pulled = TestDb::named("settee_pulled");
    couch_replicates(
        &http,
        &pulled,
        format!("{}/origin", serve.admin_url()),
        pulled.url_with_credentials(),
    )
    .await;
    compare(&serve, "origin", &http, &pulled).await;

    // CouchDB pushes what it has to a new Settee database.
    couch_replicates(
        &http,
        &pulled,
        pulled.url_with_credentials(),
        format!("{}/copy", serve.admin_url()),
    )
    .await;
    compare(&serve, "copy", &http, &pulled).await;
    // The attachment's bytes survived both trips (CouchDB sent them gzip-encoded).
    let res = serve
        .req(Method::GET, "/copy/att/t.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "hello hello hello hello");
}

/// Issue 23: an attachment a store keeps gzipped goes from `settee serve` to Apache
/// CouchDB as it is kept (CouchDB's replicator reads the multipart `_bulk_get`/`open_revs`
/// answer): CouchDB's stub then has the store's digest, encoding and encoded length, and
/// serves the same text. The standalone GET answers as CouchDB's does: gzipped to a client
/// that accepts it, decoded to others, whole whatever the `Range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_settee_serve_gives_couchdb_gzip_attachments_as_stored() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = settee_store::Database::open(dir.path().join("gz")).unwrap();
    let text = "a line of a note, said again and again\n".repeat(300);
    // flate2's header differs from CouchDB's (another OS byte), so CouchDB gzipping the
    // text itself would give another digest.
    let gz = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    };
    let digest = settee_store::attachment_digest(&gz);
    let staged = db
        .stage_attachment_encoded(
            &gz[..],
            settee_store::Encoding::Gzip,
            text.len() as u64,
            Some(&digest),
        )
        .unwrap();
    db.put_staged_attachment("note", None, "t.txt", "text/plain", staged)
        .unwrap();
    let served = db.clone();
    let serve = TestServe::start_with(move |o| o.databases.push(served)).await;

    // The standalone GET (no transparent gzip in this client).
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let get = |accept: Option<&str>| {
        let mut r = raw
            .get(format!("{}/gz/note/t.txt", serve.url()))
            .basic_auth(common::ADMIN, Some(common::PASSWORD))
            .header("Range", "bytes=0-9");
        if let Some(a) = accept {
            r = r.header("Accept-Encoding", a);
        }
        r.send()
    };
    let res = get(Some("gzip, deflate")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["accept-ranges"], "none");
    assert!(res.bytes().await.unwrap() == gz);
    for accept in [None, Some("gzip;q=0, identity")] {
        let res = get(accept).await.unwrap();
        assert_eq!(res.status(), 200, "{accept:?}");
        assert!(
            res.headers().get("content-encoding").is_none(),
            "{accept:?}"
        );
        assert_eq!(res.text().await.unwrap(), text, "{accept:?}");
    }

    let http = reqwest::Client::new();
    let couch = TestDb::named("settee_gz");
    couch_replicates(
        &http,
        &couch,
        format!("{}/gz", serve.admin_url()),
        couch.url_with_credentials(),
    )
    .await;
    let (user, pw) = couch.server().credentials().unwrap_or(("", ""));
    let doc: Value = http
        .get(format!("{}/note?att_encoding_info=true", couch.url()))
        .basic_auth(user, Some(pw))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stub = &doc["_attachments"]["t.txt"];
    assert_eq!(stub["digest"], digest.as_str(), "{doc}");
    assert_eq!(stub["encoding"], "gzip", "{doc}");
    assert_eq!(stub["encoded_length"], gz.len(), "{doc}");
    assert_eq!(stub["length"], text.len(), "{doc}");
    let back = raw
        .get(format!("{}/note/t.txt", couch.url()))
        .basic_auth(user, Some(pw))
        .send()
        .await
        .unwrap();
    assert_eq!(back.text().await.unwrap(), text);
}
