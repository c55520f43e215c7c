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
        .await;
    // The server answers as soon as the limit is passed and closes the connection: the
    // client may see the 413, or a broken pipe while it still writes.
    match res {
        Ok(res) => assert_eq!(res.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
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

/// The text of the JSON part of a `multipart/related` body (the first part).
fn json_part(body: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(body);
    let start = text.find("\r\n\r\n{").unwrap() + 4;
    let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter();
    de.next().unwrap().unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Multipart answers stream the bytes of the attachments changed since `atts_since` and
/// send the others as stubs, as CouchDB does: `GET ?attachments=true` as
/// `multipart/related`, `open_revs` and `_bulk_get` as `multipart/mixed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_multipart_answers_stream_what_atts_since_leaves() {
    let (serve, _db, _dir) = serve_store(|_| {}).await;
    let old: Vec<u8> = (0..600_000usize).map(|i| (i % 241) as u8).collect();
    let new: Vec<u8> = (0..700_000usize).map(|i| (i % 239) as u8).collect();
    let put = |path: &'static str, body: Vec<u8>| serve.req(Method::PUT, path).body(body).send();
    let r1 = put("/st/m/old.bin", old.clone()).await.unwrap();
    let rev1 = r1.json::<serde_json::Value>().await.unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let r2 = serve
        .req(Method::PUT, &format!("/st/m/new.bin?rev={rev1}"))
        .body(new.clone())
        .send()
        .await
        .unwrap();
    let rev2 = r2.json::<serde_json::Value>().await.unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();

    // Everything, as multipart/related.
    let res = serve
        .req(Method::GET, "/st/m?attachments=true")
        .header("Accept", "multipart/related")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("multipart/related"));
    let body = res.bytes().await.unwrap();
    let doc = json_part(&body);
    assert_eq!(doc["_attachments"]["old.bin"]["follows"], true);
    assert_eq!(doc["_attachments"]["new.bin"]["follows"], true);
    assert!(doc.get("_revisions").is_none(), "not asked for: {doc}");
    assert!(contains(&body, &old) && contains(&body, &new));

    // Since rev 1: only the attachment of rev 2 follows.
    let res = serve
        .req(
            Method::GET,
            &format!("/st/m?attachments=true&atts_since=[\"{rev1}\"]"),
        )
        .header("Accept", "multipart/related")
        .send()
        .await
        .unwrap();
    let body = res.bytes().await.unwrap();
    let doc = json_part(&body);
    assert_eq!(doc["_attachments"]["old.bin"]["stub"], true, "{doc}");
    assert_eq!(doc["_attachments"]["new.bin"]["follows"], true, "{doc}");
    assert!(!contains(&body, &old) && contains(&body, &new));

    // open_revs, as a replicator asks.
    let res = serve
        .req(
            Method::GET,
            &format!("/st/m?revs=true&open_revs=[\"{rev2}\"]&atts_since=[\"{rev1}\"]"),
        )
        .header("Accept", "multipart/mixed")
        .send()
        .await
        .unwrap();
    let len = res.content_length().unwrap();
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, len);
    let doc = json_part(&body);
    assert_eq!(doc["_revisions"]["start"], 2);
    assert_eq!(doc["_attachments"]["old.bin"]["stub"], true, "{doc}");
    assert!(!contains(&body, &old) && contains(&body, &new));

    // _bulk_get with atts_since per item.
    let res = serve
        .req(Method::POST, "/st/_bulk_get?revs=true&attachments=true")
        .header("Accept", "multipart/mixed")
        .json(&json!({"docs": [{"id": "m", "rev": rev2, "atts_since": [rev1]}, {"id": "m", "rev": rev2}]}))
        .send()
        .await
        .unwrap();
    let body = res.bytes().await.unwrap();
    let doc = json_part(&body);
    assert_eq!(doc["_attachments"]["old.bin"]["stub"], true, "{doc}");
    // The second item has no atts_since: both follow, so `old` is sent once, for it.
    assert_eq!(
        body.windows(old.len()).filter(|w| *w == &old[..]).count(),
        1
    );
}

/// A raw request on a fresh connection (which it asks the server to close after the
/// answer); the answer's status line and the rest. The client never half-closes: hyper
/// takes that for a client gone away.
fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // A server that answered already may have closed the connection.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// An attacker's `multipart/related` PUT: a part longer than its stub (400), a body whose
/// closing boundary never comes (400 when it ends, 408 when it stalls): nothing is
/// written, and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_bad_multipart_puts_write_nothing() {
    let (serve, db, _dir) =
        serve_store(|o| o.limits.body_idle_timeout = Duration::from_millis(300)).await;
    let addr = serve.server.local_addr();
    let json = r#"{"_id":"x","_rev":"1-abc","_attachments":{"a.bin":{"content_type":"x/y","follows":true,"length":10}}}"#;
    let doc = |att: &[u8], close: bool| {
        let mut b = format!("--B\r\nContent-Type: application/json\r\n\r\n{json}\r\n--B\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\n").into_bytes();
        b.extend_from_slice(att);
        if close {
            b.extend_from_slice(b"\r\n--B--");
        }
        b
    };
    let head_of = |len: usize| {
        format!(
            "PUT /st/x?new_edits=false HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Type: multipart/related; boundary=B\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n",
            base64_basic()
        )
    };
    // Longer than its stub, in a body that goes on well past it: the server answers at
    // the byte past the stub and closes the connection, so the client may see the 400 or
    // a reset while it still writes.
    {
        let body = doc(&vec![9u8; 1 << 20], true);
        let head = head_of(body.len());
        let answer = tokio::task::spawn_blocking(move || raw(addr, &head, &body))
            .await
            .unwrap();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }
    let bodies: Vec<(Vec<u8>, &str)> = vec![
        // Longer than its stub.
        (doc(&[7u8; 100], true), "HTTP/1.1 400"),
        // Shorter.
        (doc(b"12345", true), "HTTP/1.1 400"),
        // No closing boundary: the body ends.
        (doc(b"0123456789", false), "HTTP/1.1 400"),
    ];
    for (body, want) in bodies {
        let head = head_of(body.len());
        let answer = tokio::task::spawn_blocking(move || raw(addr, &head, &body))
            .await
            .unwrap();
        assert!(answer.starts_with(want), "{want}: {answer}");
    }
    // No closing boundary, and the connection stays open: the body stalls.
    let body = doc(b"0123456789", false);
    let head = head_of(body.len() + 100);
    let answer = tokio::task::spawn_blocking(move || raw(addr, &head, &body))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let (s, _) = serve.call(Method::GET, "/st/x", None).await;
    assert_eq!(s, 404);
    nothing_stored(&db);
    // The right body is written.
    let body = doc(b"0123456789", true);
    let head = head_of(body.len());
    let answer = tokio::task::spawn_blocking(move || raw(addr, &head, &body))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let got = serve.req(Method::GET, "/st/x/a.bin").send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), &b"0123456789"[..]);
}

/// Issue 23: a replicated revision's `multipart/related` parts are staged in the store as
/// they arrive, not put inline: a part far larger than the body limit is taken (it is
/// bounded by `max_attachment_size`), a gzip part is kept as sent (CouchDB's encoded
/// digest, encoding and lengths), and a part whose digest or decoded length is not its
/// stub's is 400 with nothing left staged, in a body whose other part checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_replicated_multipart_put_stages_its_parts() {
    let (serve, db, _dir) = serve_store(|o| o.limits.max_body = 64 << 10).await;
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    let text = "a line of text that compresses well\n".repeat(4000);
    let gz = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    };
    let gz_digest = settee_store::attachment_digest(&gz);
    let put = |id: &str, gz_stub: serde_json::Value| {
        let doc = json!({"_id": id, "_rev": "1-abc", "_attachments": {
            "big.bin": {"content_type": "x/y", "follows": true, "length": big.len(),
                "digest": settee_store::attachment_digest(&big), "revpos": 1},
            "t.txt": gz_stub,
        }});
        let mut body = format!("--B\r\nContent-Type: application/json\r\n\r\n{doc}\r\n--B\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\r\n").into_bytes();
        body.extend_from_slice(&big);
        body.extend_from_slice(
            b"\r\n--B\r\nContent-Disposition: attachment; filename=\"t.txt\"\r\nContent-Encoding: gzip\r\n\r\n",
        );
        body.extend_from_slice(&gz);
        body.extend_from_slice(b"\r\n--B--");
        serve
            .req(Method::PUT, &format!("/st/{id}?new_edits=false"))
            .header("Content-Type", "multipart/related; boundary=B")
            .body(body)
            .send()
    };
    let stub = |length: usize, digest: &str| {
        json!({"content_type": "text/plain", "follows": true, "revpos": 1,
            "encoding": "gzip", "length": length, "encoded_length": gz.len(), "digest": digest})
    };
    // Another digest, then another decoded length: refused, nothing stays.
    let res = put("bad1", stub(text.len(), "md5-AAAAAAAAAAAAAAAAAAAAAA=="))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = put("bad2", stub(text.len() + 1, &gz_digest)).await.unwrap();
    assert_eq!(res.status(), 400);
    nothing_stored(&db);
    assert!(db.get("bad1", &Default::default()).is_err());

    let res = put("ok", stub(text.len(), &gz_digest)).await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let mut raw = db.attachment_reader_raw("ok", None, "t.txt").unwrap();
    assert_eq!(raw.encoding(), settee_store::Encoding::Gzip);
    assert_eq!(
        (raw.length(), raw.decoded_length()),
        (gz.len() as u64, text.len() as u64)
    );
    let mut kept = Vec::new();
    raw.read_to_end(&mut kept).unwrap();
    assert!(kept == gz, "the gzip bytes were not kept as sent");
    assert_eq!(
        db.attachment("ok", None, "t.txt").unwrap().data,
        text.as_bytes()
    );
    assert!(db.attachment("ok", None, "big.bin").unwrap().data == big);
    let doc = db
        .get(
            "ok",
            &settee_store::GetOptions {
                att_encoding_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["t.txt"]["digest"], gz_digest.as_str());
    assert_eq!(doc["_attachments"]["t.txt"]["encoding"], "gzip");
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (2, 0));
}

/// Issue 23: JSON answers with attachments inline (what PouchDB pulls with) are streamed
/// from the store (base64 made as they are sent, `Content-Length` known first) and are
/// the store's own answers, byte for byte once parsed: `GET ?attachments=true`, with
/// `atts_since`, `open_revs` and `_bulk_get`, a gzip-kept attachment inline decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_json_answers_stream_inline_attachments() {
    use settee_store::{BulkGetOptions, BulkGetRequest, GetOptions, OpenRevs};
    let (serve, db, _dir) = serve_store(|_| {}).await;
    // Lengths that are not multiples of 3 nor of a store chunk.
    let old: Vec<u8> = (0..600_001usize).map(|i| (i % 241) as u8).collect();
    db.put_attachment("j", None, "old.bin", "x/y", old).unwrap();
    let rev1 = db.get("j", &GetOptions::default()).unwrap()["_rev"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = "inline text, gzipped in the store\n".repeat(1000);
    let gz = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    };
    let staged = db
        .stage_attachment_encoded(
            &gz[..],
            settee_store::Encoding::Gzip,
            text.len() as u64,
            None,
        )
        .unwrap();
    let r2 = db
        .put_staged_attachment("j", Some(&rev1), "t.txt", "text/plain", staged)
        .unwrap();
    let rev2 = r2.rev.unwrap();
    let json_of = |path: String| {
        let req = serve
            .req(Method::GET, &path)
            .header("Accept", "application/json");
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let len = res.content_length().unwrap();
            let body = res.bytes().await.unwrap();
            assert_eq!(body.len() as u64, len, "{path}");
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let all = GetOptions {
        attachments: true,
        ..Default::default()
    };
    let got = json_of("/st/j?attachments=true".into()).await;
    let want = db.get("j", &all).unwrap();
    assert_eq!(shrunk(&got), shrunk(&want));
    assert_eq!(got, want);
    assert_eq!(
        got["_attachments"]["t.txt"]["data"],
        base64_of(text.as_bytes())
    );
    let since = GetOptions {
        atts_since: vec![rev1.clone()],
        revs: true,
        ..all.clone()
    };
    let got = json_of(format!(
        "/st/j?attachments=true&revs=true&atts_since=[\"{rev1}\"]"
    ))
    .await;
    let want = db.get("j", &since).unwrap();
    assert_eq!(shrunk(&got), shrunk(&want));
    assert_eq!(got, want);
    assert_eq!(got["_attachments"]["old.bin"]["stub"], true);
    let got = json_of(format!(
        "/st/j?attachments=true&revs=true&open_revs=[\"{rev2}\"]"
    ))
    .await;
    let want = db
        .open_revs(
            "j",
            OpenRevs::Revs(vec![rev2.clone()]),
            &GetOptions { revs: true, ..all },
        )
        .unwrap();
    let want = serde_json::to_value(want).unwrap();
    assert_eq!(shrunk(&got), shrunk(&want));
    assert_eq!(got, want);

    let items = json!({"docs": [{"id": "j", "rev": rev2.to_string(), "atts_since": [rev1.to_string()]}, {"id": "j"}, {"id": "none"}]});
    let res = serve
        .req(Method::POST, "/st/_bulk_get?revs=true&attachments=true")
        .json(&items)
        .send()
        .await
        .unwrap();
    let got: serde_json::Value = res.json().await.unwrap();
    let reqs = vec![
        BulkGetRequest {
            id: "j".into(),
            rev: Some(rev2.clone()),
            atts_since: vec![rev1],
        },
        BulkGetRequest {
            id: "j".into(),
            rev: None,
            atts_since: Vec::new(),
        },
        BulkGetRequest {
            id: "none".into(),
            rev: None,
            atts_since: Vec::new(),
        },
    ];
    let opts = BulkGetOptions {
        revs: true,
        attachments: true,
        ..Default::default()
    };
    let want = json!({"results": db.bulk_get(&reqs, &opts).unwrap()});
    assert_eq!(shrunk(&got), shrunk(&want));
    assert_eq!(got, want);
}

/// `v` with each `data` replaced by its length (a readable difference).
fn shrunk(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, x)| match (k.as_str(), x) {
                ("data", serde_json::Value::String(s)) => (k.clone(), json!(s.len())),
                _ => (k.clone(), shrunk(x)),
            })
            .collect(),
        serde_json::Value::Array(a) => a.iter().map(shrunk).collect(),
        other => other.clone(),
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
