//! `_bulk_get` read as `multipart/mixed` against the real test server: CouchDB answers in
//! multipart (attachments streamed, gzip-stored ones still gzipped, `atts_since` leaving
//! stubs); pouchdb-server answers JSON, so the call says `None`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{json, Value};
use settee_couch::{AttachmentUpload, BulkGetDoc, BulkGetOptions, BulkGetRequest};

#[tokio::test]
async fn bulk_get_multipart_streams_attachments_and_honours_atts_since() {
    let (_guard, db) = common::fresh_db("multipart");
    let text = Bytes::from("hello hello hello hello ".repeat(100));
    let binary: Bytes = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
    let put = db
        .put_multipart(
            "d1",
            &json!({"a": 1}),
            vec![
                AttachmentUpload::from_bytes("t.txt", "text/plain", text.clone()),
                AttachmentUpload::from_bytes("b.bin", "application/octet-stream", binary.clone()),
            ],
            true,
        )
        .await
        .unwrap();
    let reqs = vec![
        BulkGetRequest {
            id: "d1".into(),
            rev: Some(put.rev.clone()),
            atts_since: vec![],
        },
        BulkGetRequest {
            id: "nope".into(),
            rev: Some("1-abc".parse().unwrap()),
            atts_since: vec![],
        },
        BulkGetRequest {
            id: "d1".into(),
            rev: Some(put.rev.clone()),
            atts_since: vec![put.rev.clone()],
        },
    ];
    let opts = BulkGetOptions::REPLICATION;
    let Some(mut docs) = db.bulk_get_multipart(&reqs, &opts).await.unwrap() else {
        // pouchdb-server answers JSON to multipart/mixed.
        assert_eq!(
            settee_testkit::leaves::ServerKind::from_env(),
            settee_testkit::leaves::ServerKind::PouchDbServer
        );
        return;
    };
    let first = docs.next_doc().await.unwrap().unwrap();
    assert_eq!((first.request, first.id.as_str()), (Some(0), "d1"));
    let BulkGetDoc::Ok(json) = &first.doc else {
        panic!("{:?}", first.doc)
    };
    let value: Value = serde_json::from_str(json.get()).unwrap();
    let mut names = Vec::new();
    for att in first.attachments {
        let bytes: Vec<Bytes> = att.body.try_collect().await.unwrap();
        let bytes = bytes.concat();
        let stub = &value["_attachments"][&att.name];
        assert_eq!(bytes.len() as u64, att.length);
        match att.name.as_str() {
            "b.bin" => assert_eq!(bytes, binary),
            "t.txt" => {
                // CouchDB keeps text gzipped and sends it so, with the encoded digest.
                let enc = att.encoding.clone().expect("gzip");
                assert_eq!(enc.length, text.len() as u64);
                assert_eq!(stub["digest"], json!(enc.digest));
                assert_eq!(stub["encoded_length"], json!(bytes.len()));
                let mut plain = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&bytes[..]),
                    &mut plain,
                )
                .unwrap();
                assert_eq!(plain, text);
            }
            other => panic!("{other}"),
        }
        names.push(att.name);
    }
    names.sort();
    assert_eq!(names, ["b.bin", "t.txt"]);
    let missing = docs.next_doc().await.unwrap().unwrap();
    assert_eq!((missing.request, missing.id.as_str()), (Some(1), "nope"));
    assert!(!matches!(missing.doc, BulkGetDoc::Ok(_)));
    let since = docs.next_doc().await.unwrap().unwrap();
    assert_eq!(since.request, Some(2));
    assert!(since.attachments.is_empty(), "atts_since leaves stubs");
    let BulkGetDoc::Ok(json) = &since.doc else {
        panic!()
    };
    let value: Value = serde_json::from_str(json.get()).unwrap();
    assert_eq!(value["_attachments"]["b.bin"]["stub"], json!(true));
    assert!(docs.next_doc().await.unwrap().is_none());
}
