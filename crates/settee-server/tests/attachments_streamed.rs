//! Attachments streamed through `settee serve` (issue 23): a standalone `PUT` goes to the
//! store as it arrives, bounded by `max_attachment_size` and not by `max_body`; one past
//! the limit, one that stops arriving and one a validation function refuses leave nothing
//! in the store (checked with `Database::verify` on the served store itself).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::TestServe;
use reqwest::Method;
use serde_json::json;
use settee_store::Database;

/// A server that serves the store `dir/st` (opened here too, to check it), with `tune`.
async fn serve_store(
    tune: impl FnOnce(&mut settee_server::ServerOptions),
) -> (TestServe, Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("st")).unwrap();
    let db2 = db.clone();
    let serve = TestServe::start_with(move |o| {
        o.databases.push(db2);
        tune(o);
    })
    .await;
    (serve, db, dir)
}

/// Nothing of an attachment is stored: none committed, none staged.
fn nothing_stored(db: &Database) {
    let report = db.verify().unwrap();
    assert_eq!(
        (report.attachments, report.staged_attachments),
        (0, 0),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_attachment_put_is_bounded_by_max_attachment_size_not_max_body() {
    let (serve, db, _dir) = serve_store(|o| {
        o.limits.max_body = 64 << 10;
        o.limits.max_attachment_size = 1 << 20;
    })
    .await;
    // Larger than the body limit, several store chunks: accepted, and read back equal.
    let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 253) as u8).collect();
    let res = serve
        .req(Method::PUT, "/st/a/f.bin")
        .header("Content-Type", "application/x-thing")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let got = serve.req(Method::GET, "/st/a/f.bin").send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "application/x-thing");
    assert_eq!(got.bytes().await.unwrap(), data);
    assert_eq!(db.verify().unwrap().attachments, 1);

    // One byte past the limit: 413, announced (nothing read) or chunked (cut when it
    // passes), and nothing stays.
    let (serve, db, _dir) = serve_store(|o| o.limits.max_attachment_size = 1 << 20).await;
    let big = vec![7u8; (1 << 20) + 1];
    let res = serve
        .req(Method::PUT, "/st/b/f.bin")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let res = serve
        .req(Method::PUT, "/st/b/f.bin")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    nothing_stored(&db);
    db.compact().unwrap();
    nothing_stored(&db);
    let (s, _) = serve.call(Method::GET, "/st/b", None).await;
    assert_eq!(s, 404);
}

/// A body that stops arriving ends with 408; the server goes on serving and nothing
/// stays staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_attachment_body_that_stops_is_408_and_leaves_nothing() {
    let (serve, db, _dir) =
        serve_store(|o| o.limits.body_idle_timeout = Duration::from_millis(300)).await;
    let addr = serve.server.local_addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = base64_basic();
        write!(
            s,
            "PUT /st/c/f.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 10000000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&vec![1u8; 300_000]).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    nothing_stored(&db);
    let (s, _) = serve.call(Method::GET, "/st", None).await;
    assert_eq!(s, 200);
}

/// A `validate_doc_update` function sees the streamed attachment as a stub and can refuse
/// it; the refused bytes do not stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_streamed_attachment_goes_through_validation() {
    let (serve, db, _dir) = serve_store(|_| {}).await;
    let ddoc = json!({"validate_doc_update": "function (doc) { var a = doc._attachments || {}; if (a.bad && a.bad.length === 3 && a.bad.stub) { throw({forbidden: 'no bad'}); } }"});
    let (s, b) = serve.call(Method::PUT, "/st/_design/v", Some(ddoc)).await;
    assert_eq!(s, 201, "{b}");
    let res = serve
        .req(Method::PUT, "/st/d/bad")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = serve
        .req(Method::PUT, "/st/d/good")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (1, 0));
}

fn base64_basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::ADMIN,
        common::PASSWORD
    ))
}
