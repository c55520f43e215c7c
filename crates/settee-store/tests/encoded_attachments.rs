//! Encoded attachments (issue 23): CouchDB's gzipped text kept as its gzip bytes under the
//! digest CouchDB gives it, read decoded by users and raw by replication, stubs that say
//! so with `att_encoding_info`, wrong digests and lengths refused with nothing left behind,
//! and `compact` keeping them.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use serde_json::json;
use settee_store::{attachment_digest, Database, Encoding, GetOptions, CHUNK_SIZE};

/// Text that gzip shrinks but not to nothing: more than one chunk once encoded.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "settee ",
        "couch ",
        "attachment ",
        "gzip ",
        "chunk ",
        "notes ",
    ];
    let mut state = 7u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(words[(state % 6) as usize].as_bytes());
        out.extend_from_slice(format!("{} ", state % 1000).as_bytes());
    }
    out.truncate(len);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    (dir, db)
}

#[test]
fn an_encoded_attachment_is_kept_encoded_and_read_decoded() {
    let (_dir, db) = open();
    let data = text(3 * 1024 * 1024);
    let gz = gzip(&data);
    assert!(gz.len() > CHUNK_SIZE, "the encoded bytes span chunks");
    let digest = attachment_digest(&gz);
    let staged = db
        .stage_attachment_encoded(&gz[..], Encoding::Gzip, data.len() as u64, Some(&digest))
        .unwrap();
    assert_eq!(
        (staged.digest(), staged.length(), staged.stored_length()),
        (digest.as_str(), data.len() as u64, gz.len() as u64)
    );
    let r = db
        .put_staged_attachment("d", None, "t.txt", "text/plain", staged)
        .unwrap();
    let rev = r.rev.unwrap();

    // Decoded, a chunk at a time.
    let mut reader = db.attachment_reader("d", None, "t.txt").unwrap();
    assert_eq!(
        (reader.length(), reader.encoding(), reader.digest()),
        (data.len() as u64, Encoding::Identity, digest.as_str())
    );
    let mut read = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        assert!(!chunk.is_empty() && chunk.len() <= CHUNK_SIZE);
        read.extend_from_slice(&chunk);
    }
    assert!(read == data, "decoded bytes differ");
    assert!(db.attachment("d", Some(&rev), "t.txt").unwrap().data == data);

    // Raw: the gzip bytes, as stored.
    let mut raw = db.attachment_reader_raw("d", None, "t.txt").unwrap();
    assert_eq!(
        (raw.length(), raw.encoding(), raw.decoded_length()),
        (gz.len() as u64, Encoding::Gzip, data.len() as u64)
    );
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).unwrap();
    assert!(bytes == gz, "raw bytes differ from the gzip given");

    // Stubs: encoding info when asked, CouchDB's members.
    let info = GetOptions {
        att_encoding_info: true,
        ..Default::default()
    };
    let doc = db.get("d", &info).unwrap();
    assert_eq!(
        doc["_attachments"]["t.txt"],
        json!({"content_type": "text/plain", "digest": digest, "length": data.len(),
            "revpos": 1, "stub": true, "encoding": "gzip", "encoded_length": gz.len()})
    );
    let plain = db.get("d", &GetOptions::default()).unwrap();
    assert_eq!(plain["_attachments"]["t.txt"].get("encoding"), None);
    assert_eq!(plain["_attachments"]["t.txt"]["length"], data.len());
    // Inline data is decoded.
    let inline = db
        .get(
            "d",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    use base64::Engine as _;
    let b64 = inline["_attachments"]["t.txt"]["data"].as_str().unwrap();
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
            == data
    );
}

#[test]
fn a_wrong_digest_or_decoded_length_is_refused_and_nothing_stays() {
    let (_dir, db) = open();
    let data = text(100_000);
    let gz = gzip(&data);
    let len = data.len() as u64;
    let wrong_digest = db.stage_attachment_encoded(&gz[..], Encoding::Gzip, len, Some("md5-x"));
    assert_eq!(wrong_digest.unwrap_err().name(), "bad_request");
    for wrong in [len - 1, len + 1, 0] {
        let e = db
            .stage_attachment_encoded(&gz[..], Encoding::Gzip, wrong, None)
            .unwrap_err();
        assert_eq!(e.name(), "bad_request", "{wrong}: {e}");
    }
    let not_gzip = db.stage_attachment_encoded(&data[..], Encoding::Gzip, len, None);
    assert_eq!(not_gzip.unwrap_err().name(), "bad_request");
    let cut = db.stage_attachment_encoded(&gz[..gz.len() - 9], Encoding::Gzip, len, None);
    assert_eq!(cut.unwrap_err().name(), "bad_request");
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (0, 0));
}

#[test]
fn compact_keeps_an_encoded_attachment_and_stubs_carry_it_over() {
    let (_dir, db) = open();
    let data = text(400_000);
    let gz = gzip(&data);
    let staged = db
        .stage_attachment_encoded(&gz[..], Encoding::Gzip, data.len() as u64, None)
        .unwrap();
    let r1 = db
        .put_staged_attachment("d", None, "t.txt", "text/plain", staged)
        .unwrap()
        .rev
        .unwrap();
    // A new revision keeps it by stub; a replicated revision of another document names
    // it by digest with CouchDB's encoding info.
    db.put(json!({"_id": "d", "_rev": r1.to_string(), "v": 2,
        "_attachments": {"t.txt": {"stub": true}}}))
        .unwrap();
    let stub = json!({"content_type": "text/plain", "digest": attachment_digest(&gz),
        "length": data.len(), "revpos": 1, "stub": true, "encoding": "gzip",
        "encoded_length": gz.len()});
    let res = db
        .bulk_docs(
            vec![json!({"_id": "e", "_rev": "1-abc", "_attachments": {"copy.txt": stub}})],
            false,
        )
        .unwrap();
    assert!(res[0].error.is_none(), "{res:?}");
    db.compact().unwrap();
    let report = db.verify().unwrap();
    assert_eq!(report.attachments, 1, "one copy per digest");
    for (id, name) in [("d", "t.txt"), ("e", "copy.txt")] {
        let att = db.attachment(id, None, name).unwrap();
        assert!(att.data == data, "{id}/{name}");
        let mut raw = Vec::new();
        db.attachment_reader_raw(id, None, name)
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        assert!(raw == gz, "{id}/{name} raw");
    }
}

#[test]
fn a_replicated_revision_takes_staged_attachments_for_its_follows_entries() {
    let (_dir, db) = open();
    let data = text(50_000);
    let gz = gzip(&data);
    let doc = serde_json::value::to_raw_value(&json!({"_id": "n", "_rev": "2-b",
    "_revisions": {"start": 2, "ids": ["b", "a"]}, "title": "t",
    "_attachments": {
        "t.txt": {"content_type": "text/plain", "revpos": 2, "follows": true},
        "b.bin": {"content_type": "application/octet-stream", "revpos": 1, "follows": true}
    }}))
    .unwrap();
    let t = db
        .stage_attachment_encoded(&gz[..], Encoding::Gzip, data.len() as u64, None)
        .unwrap();
    let b = db.stage_attachment(&[1u8, 2, 3][..]).unwrap();
    let extra = db.stage_attachment(&b"not named"[..]).unwrap();
    let r = db
        .bulk_doc_staged_from(
            &doc,
            vec![
                ("t.txt".into(), t),
                ("b.bin".into(), b),
                ("x".into(), extra),
            ],
            "remote",
        )
        .unwrap();
    assert_eq!(r.rev.unwrap().to_string(), "2-b");
    let got = db
        .get(
            "n",
            &GetOptions {
                att_encoding_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(got["_attachments"]["t.txt"]["encoding"], "gzip");
    assert_eq!(got["_attachments"]["t.txt"]["revpos"], 2);
    assert_eq!(got["_attachments"]["b.bin"]["revpos"], 1);
    assert!(db.attachment("n", None, "t.txt").unwrap().data == data);
    assert_eq!(db.attachment("n", None, "b.bin").unwrap().data, [1, 2, 3]);
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (2, 0));

    // A follows entry with nothing staged is the document's refusal; what was staged goes.
    let doc = serde_json::value::to_raw_value(&json!({"_id": "m", "_rev": "1-c",
        "_attachments": {"a": {"content_type": "text/plain", "follows": true},
            "b": {"content_type": "text/plain", "follows": true}}}))
    .unwrap();
    let a = db.stage_attachment(&b"aaa"[..]).unwrap();
    let r = db
        .bulk_doc_staged_from(&doc, vec![("a".into(), a)], "remote")
        .unwrap();
    assert_eq!(r.error.as_deref(), Some("bad_request"), "{r:?}");
    assert!(db.get("m", &GetOptions::default()).is_err());
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (2, 0));
}

#[test]
fn inline_data_is_decoded_unless_it_is_the_encoded_bytes_by_their_digest() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (_dir, db) = open();
    let data = text(20_000);
    let gz = gzip(&data);
    let digest = attachment_digest(&gz);
    let att = |bytes: &[u8]| {
        json!({"content_type": "text/plain", "digest": digest, "revpos": 1,
            "length": data.len(), "encoding": "gzip", "encoded_length": gz.len(),
            "data": b64(bytes)})
    };
    // CouchDB's inline form: decoded data, the encoding only information.
    // The store's replication form: the gzip bytes, named by their digest.
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "couch", "_rev": "1-a", "_attachments": {"t": att(&data)}}),
                json!({"_id": "store", "_rev": "1-a", "_attachments": {"t": att(&gz)}}),
            ],
            false,
        )
        .unwrap();
    assert!(res.iter().all(|r| r.error.is_none()), "{res:?}");
    let info = GetOptions {
        att_encoding_info: true,
        ..Default::default()
    };
    let couch = db.get("couch", &info).unwrap()["_attachments"]["t"].clone();
    assert_eq!(couch.get("encoding"), None, "{couch}");
    assert_eq!(couch["digest"], attachment_digest(&data));
    let store = db.get("store", &info).unwrap()["_attachments"]["t"].clone();
    assert_eq!(
        (&store["digest"], &store["encoding"], &store["length"]),
        (&json!(digest), &json!("gzip"), &json!(data.len()))
    );
    for id in ["couch", "store"] {
        assert!(db.attachment(id, None, "t").unwrap().data == data, "{id}");
    }
    // The encoded form with another decoded length is refused.
    let mut bad = att(&gz);
    bad["length"] = json!(5);
    let res = db
        .bulk_docs(
            vec![json!({"_id": "bad", "_rev": "1-a", "_attachments": {"t": bad}})],
            false,
        )
        .unwrap();
    assert_eq!(res[0].error.as_deref(), Some("bad_request"), "{res:?}");
}
