//! Encoded attachments between two local stores (issue 23): an attachment kept gzipped (as
//! a pull from Apache CouchDB leaves one) replicates inline from store to store and stays
//! encoded under the same digest, read decoded on both sides.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use settee_replicate::Replication;
use settee_store::{attachment_digest, Database, Encoding, GetOptions};
use tokio::io::AsyncReadExt;

async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(data)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn an_encoded_attachment_stays_encoded_from_store_to_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| Database::open(dir.path().join(name)).unwrap();
    let (a, b, c) = (open("a"), open("b"), open("c"));
    let text = b"one line of a note, then the next one; ".repeat(20_000);
    let gz = gzip(&text).await;
    let digest = attachment_digest(&gz);
    let staged = a
        .stage_attachment_encoded(&gz[..], Encoding::Gzip, text.len() as u64, Some(&digest))
        .unwrap();
    a.put_staged_attachment("n", None, "n.txt", "text/plain", staged)
        .unwrap();
    // a -> b -> c: each hop inline, store to store.
    for (from, to) in [(&a, &b), (&b, &c)] {
        let summary = Replication::new(from.clone(), to.clone(), Default::default())
            .run()
            .await
            .unwrap();
        assert_eq!(summary.stats.docs_written, 1, "{summary:?}");
    }
    let info = GetOptions {
        att_encoding_info: true,
        ..Default::default()
    };
    let stub_a = a.get("n", &info).unwrap()["_attachments"]["n.txt"].clone();
    for db in [&b, &c] {
        let stub = db.get("n", &info).unwrap()["_attachments"]["n.txt"].clone();
        assert_eq!(stub, stub_a);
        assert_eq!(stub["digest"], digest.as_str());
        assert_eq!(stub["encoding"], "gzip");
        let mut raw = Vec::new();
        db.attachment_reader_raw("n", None, "n.txt")
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        assert!(raw == gz, "the gzip bytes, as a holds them");
        assert!(db.attachment("n", None, "n.txt").unwrap().data == text);
    }
}
