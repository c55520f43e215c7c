//! `Range` on attachment GETs (issue 23): the same requests to `settee serve` and to Apache
//! CouchDB 3.5.0 get the same status, `Content-Range` and bytes, multipart answers compared
//! part by part. Needs the test server of `scripts/test.sh` (`SETTEE_TEST_COUCHDB_URL`),
//! and fails loudly without it.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServe;
use reqwest::Method;
use settee_testkit::TestDb;

/// What an answer to a range request is, with the multipart boundary (random on both
/// servers) taken out.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_range: Option<String>,
    accept_ranges: Option<String>,
    multipart: bool,
    body: Vec<u8>,
}

async fn answer(res: reqwest::Response) -> Answer {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (content_range, accept_ranges) = (header("content-range"), header("accept-ranges"));
    let content_type = header("content-type").unwrap_or_default();
    let status = res.status().as_u16();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .map(|b| b.trim_matches('"').to_owned());
    let mut body = res.bytes().await.unwrap().to_vec();
    if let Some(b) = &boundary {
        body = replace(&body, b.as_bytes(), b"BOUNDARY");
    }
    if status == 416 {
        // The JSON error is compared; CouchDB sends no Content-Range with it, and
        // `settee serve` sends the length as RFC 9110 asks.
        return Answer {
            status,
            content_range: None,
            accept_ranges: None,
            multipart: false,
            body,
        };
    }
    Answer {
        status,
        content_range,
        accept_ranges,
        multipart: boundary.is_some(),
        body,
    }
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_attachment_ranges_answer_as_couchdb_does() {
    let serve = TestServe::start().await;
    serve.create_db("r").await;
    let couch = TestDb::create("serve-range");
    let (user, pw) = couch.server().credentials().unwrap_or(("", ""));
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..=255u8).collect();
    let res = serve
        .req(Method::PUT, "/r/doc/f.bin")
        .header("Content-Type", "application/x-thing")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = http
        .put(format!("{}/doc/f.bin", couch.url()))
        .basic_auth(user, Some(pw))
        .header("Content-Type", "application/x-thing")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let cases = [
        "bytes=10-19",
        "bytes= 2-3",
        "bytes=5-",
        "bytes=-4",
        "bytes=8-100",
        "bytes=0-0",
        "bytes=255-255",
        "bytes=0-255",
        "bytes=0-",
        "bytes=abc",
        "items=0-3",
        "bytes=10-12,20-30",
        "bytes=10-20,0-5",
        "bytes=0-1,1-2",
        "bytes=300-400",
        "bytes=256-",
        "bytes=5-3",
        "bytes=-0",
        "bytes=1-2,300-400",
    ];
    for range in cases {
        let ours = answer(
            serve
                .req(Method::GET, "/r/doc/f.bin")
                .header("Range", range)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let theirs = answer(
            http.get(format!("{}/doc/f.bin", couch.url()))
                .basic_auth(user, Some(pw))
                .header("Range", range)
                .send()
                .await
                .unwrap(),
        )
        .await;
        // CouchDB sends no Accept-Ranges with a multipart answer; we always do.
        let theirs = Answer {
            accept_ranges: theirs.accept_ranges.or(ours.accept_ranges.clone()),
            ..theirs
        };
        assert_eq!(ours, theirs, "Range: {range}");
    }

    // Where we differ on purpose: a suffix longer than the body is all of it (RFC 9110
    // §14.1.2); CouchDB 3.5.0 leaves out the first byte.
    let res = serve
        .req(Method::GET, "/r/doc/f.bin")
        .header("Range", "bytes=-300")
        .send()
        .await
        .unwrap();
    let ours = answer(res).await;
    assert_eq!(ours.status, 206);
    assert_eq!(ours.content_range.as_deref(), Some("bytes 0-255/256"));
    assert_eq!(ours.body, data);
}

/// Ranges of an attachment of several store chunks (issue 23: the bytes come from the
/// store's chunk reader, skipped to each range's start): a range across a chunk boundary,
/// one in the last chunk, and several as `multipart/byteranges`, each equal to the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_ranges_across_store_chunks() {
    let serve = TestServe::start().await;
    serve.create_db("big").await;
    let chunk = settee_store::CHUNK_SIZE;
    let len = 3 * chunk + 1234;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let res = serve
        .req(Method::PUT, "/big/doc/f.bin")
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let get = |range: String| {
        serve
            .req(Method::GET, "/big/doc/f.bin")
            .header("Range", range)
            .send()
    };
    let (a, b) = (chunk - 10, chunk + 20);
    let ours = answer(get(format!("bytes={a}-{b}")).await.unwrap()).await;
    assert_eq!(ours.status, 206);
    assert_eq!(ours.content_range, Some(format!("bytes {a}-{b}/{len}")));
    assert_eq!(ours.body, &data[a..=b]);
    let ours = answer(get("bytes=-100".into()).await.unwrap()).await;
    assert_eq!(ours.body, &data[len - 100..]);
    let (c, d) = (2 * chunk + 5, 3 * chunk + 7);
    let ours = answer(get(format!("bytes={a}-{b},{c}-{d}")).await.unwrap()).await;
    assert!(ours.multipart);
    let mut want = format!(
        "--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
    )
    .into_bytes();
    want.extend_from_slice(&data[a..=b]);
    want.extend_from_slice(
        format!("\r\n--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {c}-{d}/{len}\r\n\r\n").as_bytes(),
    );
    want.extend_from_slice(&data[c..=d]);
    want.extend_from_slice(b"\r\n--BOUNDARY--");
    assert_eq!(ours.body, want);
    let whole = serve
        .req(Method::GET, "/big/doc/f.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(whole.content_length(), Some(len as u64));
    assert_eq!(whole.bytes().await.unwrap(), data);
}
