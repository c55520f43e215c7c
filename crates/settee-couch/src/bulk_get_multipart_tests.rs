//! Tests of the multipart `_bulk_get` reader over canned answers (CouchDB 3.5's shape)
//! cut into pieces of every size.

use bytes::Bytes;
use futures::TryStreamExt;

use super::*;

const GZ: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9W\xc8@'\x01\xe3Q=\x8d\x17\x00\x00\x00";
const BIN: &[u8] = b"\x88\x8b&9\xa0\xec\xea\xa9\xf5\xf2";

/// An answer as CouchDB 3.5 writes it: a document with two attachments (one gzipped), a
/// plain one, an error part without an id, and the first again with stubs only.
fn couch_answer(inner_boundary: &str) -> (Vec<u8>, &'static str) {
    let outer = "--cc786ad6e188b328202e2d03e88714b9";
    let inner = inner_boundary.trim_matches('"');
    let mut b = Vec::new();
    let mut put = |s: &str| b.extend_from_slice(s.as_bytes());
    put(&format!("\r\n--{outer}\r\nX-Doc-Id: d1\r\nX-Rev-Id: 3-25\r\nContent-Type: multipart/related; boundary={inner_boundary}\r\n\r\n"));
    put(&format!(
        "--{inner}\r\nContent-Type: application/json\r\n\r\n"
    ));
    put(
        r#"{"_id":"d1","_rev":"3-25","a":1,"_revisions":{"start":3,"ids":["25","98","23"]},"_attachments":{"b.bin":{"content_type":"application/octet-stream","revpos":3,"digest":"md5-uY3BJ+eFGZqK7gttFIYIbw==","length":10,"follows":true},"t.txt":{"content_type":"text/plain","revpos":2,"digest":"md5-iZnIgHaZ3ETVHDtRSQc4IA==","length":23,"follows":true,"encoding":"gzip","encoded_length":28}}}"#,
    );
    put(&format!("\r\n--{inner}\r\nContent-Disposition: attachment; filename=\"b.bin\"\r\nContent-Type: application/octet-stream\r\nContent-Length: 10\r\n\r\n"));
    let mut b2 = b;
    b2.extend_from_slice(BIN);
    let mut b = b2;
    let mut put = |s: &str| b.extend_from_slice(s.as_bytes());
    put(&format!("\r\n--{inner}\r\nContent-Disposition: attachment; filename=\"t.txt\"\r\nContent-Type: text/plain\r\nContent-Length: 28\r\nContent-Encoding: gzip\r\n\r\n"));
    let mut b2 = b;
    b2.extend_from_slice(GZ);
    let mut b = b2;
    let mut put = |s: &str| b.extend_from_slice(s.as_bytes());
    put(&format!(
        "\r\n--{inner}--\r\n--{outer}\r\nContent-Type: application/json\r\n\r\n"
    ));
    put(r#"{"_id":"d2","_rev":"1-d3","b":2,"_revisions":{"start":1,"ids":["d3"]}}"#);
    put(&format!(
        "\r\n--{outer}\r\nContent-Type: application/json; error=\"true\"\r\n\r\n"
    ));
    put(r#"{"rev":"1-abc","error":"not_found","reason":"missing"}"#);
    put(&format!(
        "\r\n--{outer}\r\nContent-Type: application/json\r\n\r\n"
    ));
    put(
        r#"{"_id":"d1","_rev":"3-25","a":1,"_attachments":{"b.bin":{"revpos":3,"length":10,"stub":true}}}"#,
    );
    put(&format!("\r\n--{outer}--\r\n"));
    (b, outer)
}

fn reqs() -> Vec<BulkGetRequest> {
    let r = |id: &str, rev: &str| BulkGetRequest {
        id: id.into(),
        rev: Some(rev.parse().unwrap()),
        atts_since: Vec::new(),
    };
    vec![
        r("d1", "3-25"),
        r("d2", "1-d3"),
        r("d3", "1-abc"),
        r("d1", "3-25"),
    ]
}

/// `body` as a stream of pieces of the sizes `sizes` gives (cycled).
fn pieces(body: &[u8], sizes: &[usize]) -> crate::multipart_mixed::ByteStream {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < body.len() {
        let n = sizes[i % sizes.len()].max(1).min(body.len() - at);
        out.push(Ok(Bytes::copy_from_slice(&body[at..at + n])));
        at += n;
        i += 1;
    }
    Box::pin(futures::stream::iter(out))
}

fn random_sizes(seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..50)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 60) as usize + 1
        })
        .collect()
}

/// What a reader made of an answer: per document, (request, id, entry kind, attachments'
/// (name, bytes, encoding)).
type Seen = Vec<(
    Option<usize>,
    String,
    String,
    Vec<(String, Vec<u8>, Option<AttachmentEncoding>)>,
)>;

async fn read_all(mut docs: MultipartDocs) -> Result<Seen, String> {
    let mut seen = Vec::new();
    while let Some(doc) = docs.next_doc().await.map_err(|e| e.to_string())? {
        let kind = match &doc.doc {
            BulkGetDoc::Ok(d) => format!("ok {}", d.get().len()),
            BulkGetDoc::Missing(r) => format!("missing {r:?}"),
            BulkGetDoc::Error(e) => format!("error {} {:?} {}", e.id, e.rev, e.error),
        };
        let mut atts = Vec::new();
        for a in doc.attachments {
            let bytes: Vec<Bytes> = a.body.try_collect().await.map_err(|e| e.to_string())?;
            atts.push((a.name, bytes.concat(), a.encoding));
        }
        seen.push((doc.request, doc.id, kind, atts));
    }
    Ok(seen)
}

#[tokio::test]
async fn couchdbs_answer_read_in_any_pieces() {
    for inner in [
        "--5e8a64d5fc6842834d9f024bb20d38fa",
        "\"--5e8a\"",
        "plain",
        "\"q\"",
    ] {
        let (body, outer) = couch_answer(inner);
        let mut sizes: Vec<Vec<usize>> = vec![vec![body.len()], vec![1], vec![7]];
        sizes.extend((1..12).map(random_sizes));
        let mut first = None;
        for s in sizes {
            let docs = MultipartDocs::from_stream(pieces(&body, &s), outer, reqs(), 1 << 20);
            let seen = read_all(docs).await.unwrap();
            match &first {
                None => first = Some(seen),
                Some(f) => assert_eq!(&seen, f, "pieces {s:?}"),
            }
        }
        let seen = first.unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].0, Some(0));
        assert_eq!(seen[0].1, "d1");
        let atts = &seen[0].3;
        assert_eq!(atts[0].0, "b.bin");
        assert_eq!(atts[0].1, BIN);
        assert_eq!(atts[0].2, None);
        assert_eq!(atts[0].1.len(), 10);
        assert_eq!(atts[1].0, "t.txt");
        assert_eq!(atts[1].1, GZ, "gzipped bytes stay gzipped");
        assert_eq!(
            atts[1].2,
            Some(AttachmentEncoding {
                encoding: "gzip".into(),
                length: 23,
                digest: "md5-iZnIgHaZ3ETVHDtRSQc4IA==".into()
            })
        );
        assert_eq!((seen[1].0, seen[1].1.as_str()), (Some(1), "d2"));
        assert!(seen[1].3.is_empty());
        assert_eq!(seen[2].0, Some(2));
        assert_eq!(seen[2].2, "error d3 Some(\"1-abc\") not_found");
        assert_eq!((seen[3].0, seen[3].1.as_str()), (Some(3), "d1"));
        assert!(seen[3].2.starts_with("ok"));
    }
}

#[tokio::test]
async fn unread_attachments_are_skipped_and_their_streams_then_fail() {
    let (body, outer) = couch_answer("--in");
    let mut docs = MultipartDocs::from_stream(pieces(&body, &[5]), outer, reqs(), 1 << 20);
    let first = docs.next_doc().await.unwrap().unwrap();
    let second = docs.next_doc().await.unwrap().unwrap();
    assert_eq!(second.id, "d2");
    for a in first.attachments {
        let read: Result<Vec<Bytes>, _> = a.body.try_collect().await;
        assert!(read.is_err(), "a stale stream must fail, not give bytes");
    }
    assert_eq!(docs.next_doc().await.unwrap().unwrap().request, Some(2));
}

#[tokio::test]
async fn reading_the_second_attachment_first_skips_the_first() {
    let (body, outer) = couch_answer("--in");
    let mut docs = MultipartDocs::from_stream(pieces(&body, &[3]), outer, reqs(), 1 << 20);
    let mut first = docs.next_doc().await.unwrap().unwrap();
    let t = first.attachments.pop().unwrap();
    let b = first.attachments.pop().unwrap();
    let bytes: Vec<Bytes> = t.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), GZ);
    assert!(b.body.try_collect::<Vec<Bytes>>().await.is_err());
}

#[tokio::test]
async fn a_truncated_answer_is_an_error_never_a_short_attachment() {
    let (body, outer) = couch_answer("--in");
    let at = body.windows(3).position(|w| w == &BIN[..3]).unwrap();
    // Cut inside the binary attachment, at its end, and before the closing boundary.
    for cut in [at + 4, at + BIN.len(), at + BIN.len() + 2, body.len() - 3] {
        for s in [vec![1], vec![7], vec![1000]] {
            let docs = MultipartDocs::from_stream(pieces(&body[..cut], &s), outer, reqs(), 1 << 20);
            let got = read_all(docs).await;
            let err = got.expect_err("truncated");
            assert!(err.contains("invalid_response"), "{err}");
        }
    }
}

#[tokio::test]
async fn a_part_longer_or_shorter_than_its_stub_is_an_error() {
    let (body, outer) = couch_answer("--in");
    let text = String::from_utf8_lossy(&body).into_owned();
    for (from, to) in [
        (r#""length":10,"follows""#, r#""length":11,"follows""#),
        (r#""length":10,"follows""#, r#""length":9,"follows""#),
        ("Content-Length: 10", "Content-Length: 12"),
    ] {
        assert!(text.contains(from));
        let changed = replace_bytes(&body, from.as_bytes(), to.as_bytes());
        let docs = MultipartDocs::from_stream(pieces(&changed, &[7]), outer, reqs(), 1 << 20);
        let err = read_all(docs).await.expect_err(to);
        assert!(err.contains("b.bin"), "{err}");
    }
}

#[tokio::test]
async fn a_document_larger_than_the_limit_is_refused() {
    let (body, outer) = couch_answer("--in");
    let docs = MultipartDocs::from_stream(pieces(&body, &[64]), outer, reqs(), 100);
    let err = read_all(docs).await.expect_err("too large");
    assert!(err.contains("response_too_large"), "{err}");
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay.windows(from.len()).position(|w| w == from).unwrap();
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}
