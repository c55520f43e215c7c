//! Attachments streamed by the replicator (part of `tests/replication.rs`): a 50 MB
//! attachment pushed by the command as `multipart/related` and pulled back, with the child
//! process's peak memory measured (`/usr/bin/time -v`) and bounded, and copied from that
//! server database to another (streamed through, never whole in memory); a compressible
//! `text/*` attachment taken local -> server -> fresh local -> a second server database
//! keeps the server's digest, its body and its `revpos`.

use std::process::Command;

use serde_json::{json, Value};
use settee_testkit::{TestDb, TestServer};

use super::local;

/// The large attachment's size.
const LARGE: usize = 50 * 1024 * 1024;

/// The peak resident memory allowed to a `settee replicate` pushing [`LARGE`] bytes, in
/// KiB: less than a small run's (about 50 MB, debug build) plus the attachment, so it is
/// never whole in memory. Measured: 54 MB with attachment files (store format 8); 154 MB
/// with format 7's chunks in sled (which keeps every value it reads resident), 334 MB when
/// the push sent the attachment base64 inside `_bulk_docs`.
const PUSH_RSS_LIMIT_KIB: u64 = 80 * 1024;

/// The same for the pull. Measured: 55 MB with attachment files (each attachment staged a
/// chunk at a time into its file); 120 MB with format 7's chunks in sled; 274 MB when
/// `streamed::store_write` built the revision's JSON with the attachment in base64.
const PULL_RSS_LIMIT_KIB: u64 = 80 * 1024;

/// The same for a copy from one server database to another (`settee replicate URL URL`:
/// one multipart `_bulk_get` streamed into a `multipart/related` PUT). Below the
/// attachment's own size, so it is never whole in memory. Measured: 29 MB.
const COPY_RSS_LIMIT_KIB: u64 = 48 * 1024;

/// Bytes that do not compress (xorshift from `seed`), so no server stores them gzipped.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = (0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `settee replicate SOURCE TARGET --create-target` under `/usr/bin/time -v`; returns
/// its peak resident set in KiB.
fn replicate_measured(source: &str, target: &str) -> u64 {
    let server = TestServer::get();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg(env!("CARGO_BIN_EXE_settee")).args([
        "replicate",
        source,
        target,
        "--create-target",
    ]);
    if let Some(p) = server.password() {
        cmd.env("SETTEE_PASSWORD", p);
    }
    let out = cmd.output().expect("/usr/bin/time runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["doc_write_failures"], 0, "{summary}");
    assert_eq!(summary["docs_written"], 1, "{summary}");
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {stderr}"))
}

/// The server's copy of attachment `name` of `id`: its stub (with `att_encoding_info`) and
/// its bytes.
pub(crate) async fn on_server(db: &TestDb, id: &str, name: &str) -> (Value, Vec<u8>) {
    let client = settee::couch::CouchClient::builder(db.server().url_with_credentials())
        .build()
        .unwrap();
    let remote = client.db(db.name());
    let doc: Value = remote
        .get(
            id,
            &settee::couch::GetOptions {
                att_encoding_info: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let bytes = remote.get_attachment(id, name, None).await.unwrap();
    (doc["_attachments"][name].clone(), bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_attachment_pushes_and_pulls_with_the_command_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(LARGE, 0);
    let digest = {
        let db = local(&dir, "src");
        db.put(json!({"_id": "big", "title": "a recording"}))
            .unwrap();
        let rev = db.get("big", &Default::default()).unwrap()["_rev"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        db.put_attachment(
            "big",
            Some(&rev),
            "a.bin",
            "application/octet-stream",
            data.clone(),
        )
        .unwrap();
        db.flush().unwrap();
        let doc = db.get("big", &Default::default()).unwrap();
        doc["_attachments"]["a.bin"]["digest"].clone()
    };
    let db = TestDb::named("bigatt");
    let url = db.url_with_user();

    let push_kib = replicate_measured(dir.path().join("src").to_str().unwrap(), &url);
    eprintln!("push of {LARGE} bytes: peak RSS {push_kib} KiB");
    let (stub, bytes) = on_server(&db, "big", "a.bin").await;
    assert_eq!(stub["length"], LARGE, "{stub}");
    assert_eq!(stub["revpos"], 2, "{stub}");
    assert_eq!(stub["digest"], digest, "{stub}");
    assert!(
        bytes == data,
        "the server's bytes differ from the pushed ones"
    );
    drop(bytes);

    // Server to server: read through one multipart `_bulk_get`, written as
    // `multipart/related`, never whole in the command's memory.
    let copy = TestDb::named("bigcopy");
    let copy_kib = replicate_measured(&url, &copy.url_with_user());
    eprintln!("server-to-server copy of {LARGE} bytes: peak RSS {copy_kib} KiB");
    let (copied_stub, copied) = on_server(&copy, "big", "a.bin").await;
    for k in ["digest", "length", "revpos", "content_type"] {
        assert_eq!(copied_stub[k], stub[k], "{k}: {copied_stub} {stub}");
    }
    assert!(copied == data, "the copy's bytes differ from the source's");
    drop(copied);

    let pull_kib = replicate_measured(&url, dir.path().join("dst").to_str().unwrap());
    eprintln!("pull of {LARGE} bytes: peak RSS {pull_kib} KiB");
    let pulled = local(&dir, "dst");
    let att = pulled.attachment("big", None, "a.bin").unwrap();
    assert!(
        att.data == data,
        "the pulled bytes differ from the pushed ones"
    );
    let doc = pulled.get("big", &Default::default()).unwrap();
    assert_eq!(doc["_attachments"]["a.bin"]["revpos"], 2, "{doc}");
    assert_eq!(doc["title"], "a recording");

    assert!(
        push_kib < PUSH_RSS_LIMIT_KIB,
        "push peak RSS {push_kib} KiB"
    );
    assert!(
        copy_kib < COPY_RSS_LIMIT_KIB,
        "server-to-server peak RSS {copy_kib} KiB"
    );
    assert!(
        pull_kib < PULL_RSS_LIMIT_KIB,
        "pull peak RSS {pull_kib} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_attachment_keeps_the_servers_digest_body_and_revpos_across_two_servers() {
    // Apache CouchDB keeps `text/*` gzipped and names it by the digest of the gzipped bytes.
    // local -> A -> fresh local -> B: B computes the same digest as A (the bytes go up
    // decoded and the server digests them), bodies and `revpos` are kept everywhere.
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let text = "the same line, over and over; ".repeat(200);
    let l1 = settee::Local::from_store(local(&dir, "l1"));
    {
        let db = local(&dir, "seed");
        db.put(json!({"_id": "t", "v": 1})).unwrap();
        let rev = db.get("t", &Default::default()).unwrap()["_rev"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        db.put_attachment(
            "t",
            Some(&rev),
            "n.txt",
            "text/plain",
            text.clone().into_bytes(),
        )
        .unwrap();
        drop(db);
        let seed = settee::Local::from_store(local(&dir, "seed"));
        super::run(&seed, &l1, Default::default()).await;
    }
    let (a_db, b_db) = (TestDb::named("gza"), TestDb::named("gzb"));
    let create = settee::replicate::ReplicateOptions {
        create_target: true,
        ..Default::default()
    };
    let a = super::remote(&server, a_db.name());
    let b = super::remote(&server, b_db.name());
    let push = super::run(&l1, &a, create.clone()).await;
    assert_eq!(push.stats.docs_written, 1, "{push:?}");
    let l2 = settee::Local::from_store(local(&dir, "l2"));
    let pull = super::run(&a, &l2, Default::default()).await;
    assert_eq!(pull.stats.docs_written, 1, "{pull:?}");
    let again = super::run(&l2, &b, create).await;
    assert_eq!(again.stats.docs_written, 1, "{again:?}");

    let (a_stub, a_bytes) = on_server(&a_db, "t", "n.txt").await;
    let (b_stub, b_bytes) = on_server(&b_db, "t", "n.txt").await;
    assert_eq!(a_bytes, text.as_bytes());
    assert_eq!(b_bytes, text.as_bytes());
    assert_eq!(a_stub["revpos"], 2, "{a_stub}");
    assert_eq!(b_stub["revpos"], 2, "{b_stub}");
    if settee_testkit::leaves::ServerKind::from_env() == settee_testkit::leaves::ServerKind::CouchDb
    {
        assert_eq!(a_stub["encoding"], "gzip", "{a_stub}");
    }
    assert_eq!(a_stub["digest"], b_stub["digest"], "{a_stub} {b_stub}");
    for l in [&l1, &l2] {
        let doc = l.store().unwrap().get("t", &Default::default()).unwrap();
        assert_eq!(doc["_attachments"]["n.txt"]["revpos"], 2, "{doc}");
        let att = l.store().unwrap().attachment("t", None, "n.txt").unwrap();
        assert_eq!(att.data, text.as_bytes());
    }
    // The pulled copy is the server's, exactly: from Apache CouchDB the multipart pull keeps
    // the gzipped bytes with their encoding, so the store names the attachment by the
    // server's digest and says what it is (pouchdb-server encodes nothing: no encoding).
    let l2_doc = l2
        .store()
        .unwrap()
        .get(
            "t",
            &settee_store::GetOptions {
                att_encoding_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    let pulled = &l2_doc["_attachments"]["n.txt"];
    for k in ["digest", "length", "encoding", "encoded_length"] {
        assert_eq!(pulled.get(k), a_stub.get(k), "{k}: {pulled} {a_stub}");
        assert_eq!(b_stub.get(k), a_stub.get(k), "{k}: {b_stub} {a_stub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_attachment_is_pushed_as_the_server_keeps_it() {
    // A store holding a gzip-encoded text (as a pull from Apache CouchDB leaves it) pushes
    // it encoded to CouchDB, which then has the same digest, encoding and encoded length
    // and serves the decoded bytes; pouchdb-server keeps no encoding and gets the decoded
    // bytes, whose digest it computes.
    use std::io::Write as _;
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let text = "a note's text, line after line;\n".repeat(2000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let digest = settee::store::attachment_digest(&gz);
    {
        let db = local(&dir, "enc");
        let staged = db
            .stage_attachment_encoded(
                &gz[..],
                settee::store::Encoding::Gzip,
                text.len() as u64,
                Some(&digest),
            )
            .unwrap();
        db.put_staged_attachment("t", None, "n.txt", "text/plain", staged)
            .unwrap();
        db.flush().unwrap();
    }
    let l = settee::Local::from_store(local(&dir, "enc"));
    let target = TestDb::named("gzpush");
    let create = settee::replicate::ReplicateOptions {
        create_target: true,
        ..Default::default()
    };
    let push = super::run(&l, &super::remote(&server, target.name()), create).await;
    assert_eq!(
        (push.stats.docs_written, push.stats.doc_write_failures),
        (1, 0),
        "{push:?}"
    );
    let (stub, bytes) = on_server(&target, "t", "n.txt").await;
    assert!(
        bytes == text.as_bytes(),
        "the server serves the decoded text"
    );
    assert_eq!(stub["length"], text.len(), "{stub}");
    if settee_testkit::leaves::ServerKind::from_env() == settee_testkit::leaves::ServerKind::CouchDb
    {
        assert_eq!(stub["digest"], digest, "{stub}");
        assert_eq!(stub["encoding"], "gzip", "{stub}");
        assert_eq!(stub["encoded_length"], gz.len(), "{stub}");
    } else {
        assert_eq!(
            stub["digest"],
            settee::store::attachment_digest(text.as_bytes()),
            "{stub}"
        );
        assert_eq!(stub.get("encoding"), None, "{stub}");
    }
}
