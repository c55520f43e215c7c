//! Chunked attachments (issue 23): written from a reader and read back a chunk at a time
//! with bounded memory (each chunk at most `CHUNK_SIZE`), one copy per digest, staged writes that never become visible
//! unless committed, and `compact` reclaiming what no revision refers to. The SIGKILL test
//! of a streamed write is `attachment_crash.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;

use md5::{Digest, Md5};
use serde_json::json;
use settee_store::{attachment_digest, Database, GetOptions, OpenOptions, CHUNK_SIZE};

/// `len` bytes of a deterministic pattern, produced as they are read (never held whole);
/// remembers the largest buffer it was asked to fill.
struct Pattern {
    left: usize,
    state: u64,
    largest_ask: usize,
}

impl Pattern {
    fn new(len: usize, seed: u64) -> Pattern {
        Pattern {
            left: len,
            state: seed | 1,
            largest_ask: 0,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.largest_ask = self.largest_ask.max(buf.len());
        let n = buf.len().min(self.left);
        for b in &mut buf[..n] {
            // xorshift: bytes that do not repeat with any chunk-sized period.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= n;
        Ok(n)
    }
}

fn md5_of(mut r: impl Read) -> String {
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 10_000];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    attachment_digest_of(md5)
}

fn attachment_digest_of(md5: Md5) -> String {
    use base64::Engine;
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(md5.finalize())
    )
}

#[test]
fn a_20_mb_attachment_is_written_from_a_reader_and_read_in_chunks_with_bounded_memory() {
    const LEN: usize = 20 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(OpenOptions {
        cache_capacity: 1024 * 1024,
        ..OpenOptions::new(dir.path().join("db"))
    })
    .unwrap();
    let expected = md5_of(Pattern::new(LEN, 7));

    // Memory is observed through what the store asks for and gives: the writer never asks
    // its source for more than a chunk at once, and the reader gives chunks of at most
    // `CHUNK_SIZE` (each one read from its own key, see `AttachmentReader`).
    let mut source = Pattern::new(LEN, 7);
    let written = db
        .put_attachment_from("big", None, "rec.bin", "audio/ogg", &mut source)
        .unwrap();
    assert!(
        source.largest_ask <= CHUNK_SIZE,
        "the writer asked for {} bytes at once",
        source.largest_ask
    );
    assert_eq!(source.left, 0);
    let mut reader = db.attachment_reader("big", None, "rec.bin").unwrap();
    assert_eq!(
        (reader.content_type(), reader.length(), reader.digest()),
        ("audio/ogg", LEN as u64, expected.as_str())
    );
    assert_eq!(reader.revpos(), 1);
    let mut md5 = Md5::new();
    let mut sizes = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        md5.update(&chunk);
        sizes.push(chunk.len());
    }
    assert_eq!(attachment_digest_of(md5), expected);
    assert_eq!(sizes.len(), LEN.div_ceil(CHUNK_SIZE));
    assert!(sizes.iter().all(|&s| s == CHUNK_SIZE), "{sizes:?}");

    // The same bytes through `Read` with a small buffer, and the stub in the document.
    let via_read = md5_of(db.attachment_reader("big", None, "rec.bin").unwrap());
    assert_eq!(via_read, expected);
    let doc = db.get("big", &GetOptions::default()).unwrap();
    assert_eq!(
        doc["_attachments"]["rec.bin"],
        json!({"content_type": "audio/ogg", "digest": expected, "length": LEN,
               "revpos": 1, "stub": true})
    );
    assert_eq!(doc["_rev"], written.rev.unwrap().to_string());
    let report = db.verify().unwrap();
    assert_eq!(report.attachments, 1);
}

#[test]
fn one_copy_per_digest_whichever_way_the_bytes_came() {
    let (_dir, db) = common::db();
    let bytes: Vec<u8> = (0..(CHUNK_SIZE * 2 + 5)).map(|i| (i % 251) as u8).collect();
    let digest = attachment_digest(&bytes);
    db.put_attachment_from("a", None, "x", "a/b", bytes.as_slice())
        .unwrap();
    db.put_attachment_from("b", None, "y", "a/b", bytes.as_slice())
        .unwrap();
    db.put_attachment("c", None, "z", "a/b", bytes.clone())
        .unwrap();
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    db.put(json!({"_id": "d", "_attachments": {"w": {"content_type": "a/b", "data": data}}}))
        .unwrap();
    // One attachment stored; `verify` fails on any chunk that belongs to none.
    assert_eq!(db.verify().unwrap().attachments, 1);
    for (id, name) in [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")] {
        let att = db.attachment(id, None, name).unwrap();
        assert_eq!(
            (att.digest.as_str(), att.data.len()),
            (digest.as_str(), bytes.len())
        );
        assert_eq!(att.data, bytes);
    }
    // Inline reads (`attachments=true`) still give the bytes.
    let doc = db
        .get(
            "b",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["y"]["data"], json!(data));
}

#[test]
fn a_staged_attachment_is_invisible_until_committed_and_gone_when_dropped() {
    let (_dir, db) = common::db();
    let staged = db
        .stage_attachment(Pattern::new(CHUNK_SIZE + 1, 3))
        .unwrap();
    assert_eq!(staged.length(), CHUNK_SIZE as u64 + 1);
    assert_eq!(staged.digest(), md5_of(Pattern::new(CHUNK_SIZE + 1, 3)));
    // Staged chunks are allowed (they have their pending marker), but no attachment exists.
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (0, 1));
    drop(staged);
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (0, 0));
    // Staged, then committed by a document write.
    let staged = db.stage_attachment(Pattern::new(10, 4)).unwrap();
    let r = db
        .put_staged_attachment("n", None, "t", "text/plain", staged)
        .unwrap();
    assert!(r.rev.unwrap().to_string().starts_with("1-"));
    assert_eq!(db.attachment("n", None, "t").unwrap().data.len(), 10);
    // A failed write (a conflict: no rev for an existing document) leaves nothing behind.
    let staged = db
        .stage_attachment(Pattern::new(CHUNK_SIZE * 3, 5))
        .unwrap();
    let err = db
        .put_staged_attachment("n", None, "u", "text/plain", staged)
        .unwrap_err();
    assert_eq!(err.name(), "conflict");
    let report = db.verify().unwrap();
    assert_eq!((report.attachments, report.staged_attachments), (1, 0));
}

/// A reader that fails after some bytes.
struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_source_writes_nothing() {
    let (_dir, db) = common::db();
    let err = db
        .put_attachment_from("n", None, "t", "a/b", Failing(CHUNK_SIZE * 2 + 3))
        .unwrap_err();
    assert_eq!(err.name(), "attachment_source");
    assert_eq!(
        db.get("n", &GetOptions::default()).unwrap_err().name(),
        "not_found"
    );
    assert_eq!(db.verify().unwrap().attachments, 0);
}

#[test]
fn compact_reclaims_attachments_no_revision_refers_to() {
    let (_dir, db) = common::db();
    let r1 = db
        .put_attachment_from("n", None, "a", "a/b", Pattern::new(CHUNK_SIZE * 2, 9))
        .unwrap()
        .rev
        .unwrap();
    let r2 = db
        .put_attachment_from("n", Some(&r1), "b", "a/b", Pattern::new(100, 10))
        .unwrap()
        .rev
        .unwrap();
    // Revision 3 drops both attachments; revision 2 is not a leaf any more.
    db.put(json!({"_id": "n", "_rev": r2.to_string(), "v": 1}))
        .unwrap();
    assert_eq!(db.verify().unwrap().attachments, 2);
    db.compact().unwrap();
    let report = db.verify().unwrap();
    assert_eq!(report.attachments, 0);
    assert_eq!(
        db.attachment_reader("n", Some(&r1), "a")
            .unwrap_err()
            .name(),
        "not_found"
    );
    // The store is smaller for it after reopening: nothing of the chunks is left to read.
    let path = db.path().to_owned();
    drop(db);
    let db = Database::open_with(OpenOptions {
        lock_wait: common::REOPEN_WAIT,
        ..OpenOptions::new(path)
    })
    .unwrap();
    assert_eq!(db.verify().unwrap().attachments, 0);
}
