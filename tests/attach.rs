//! `settee attach` and `settee get-attachment` through the real binary (issue 23): a big
//! file in and out of a local store and of CouchDB, byte for byte, with the digest CouchDB
//! itself computes; the type guessed from the extension; errors that name what failed.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use rand::RngCore;
use serde_json::Value;
use settee_testkit::TestDb;

mod common;

use common::{ok_json, run, settee_with_password};

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The issue's size: big enough that a whole-body copy anywhere on the way shows in memory,
/// small enough for CI.
const BIG: usize = 30 << 20;

#[test]
fn issue_23_big_file_in_and_out_of_a_store_and_couchdb_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; BIG];
    rand::thread_rng().fill_bytes(&mut data);
    let file = dir.path().join("recording.bin");
    std::fs::write(&file, &data).unwrap();

    // A local store.
    let store = dir.path().join("notes");
    let store = path_str(&store);
    let put = ok_json(&["put", store, r#"{"_id":"note:1","title":"talk"}"#]);
    let attached = ok_json(&["attach", store, "note:1", "talk.bin", path_str(&file)]);
    assert_eq!(attached["ok"], true);
    assert_eq!(attached["id"], "note:1");
    let rev = attached["rev"].as_str().unwrap();
    assert!(rev.starts_with("2-"), "on top of {}: {rev}", put["rev"]);
    let local_doc = ok_json(&["get", store, "note:1"]);
    assert_eq!(local_doc["title"], "talk", "the document's body is kept");
    let local_att = &local_doc["_attachments"]["talk.bin"];
    assert_eq!(local_att["length"], BIG as u64);
    assert_eq!(local_att["content_type"], "application/octet-stream");
    let out = dir.path().join("back.bin");
    let got = ok_json(&[
        "get-attachment",
        store,
        "note:1",
        "talk.bin",
        path_str(&out),
    ]);
    assert_eq!(got["length"], BIG as u64);
    assert!(std::fs::read(&out).unwrap() == data, "local bytes differ");

    // CouchDB: the same file, streamed up and down.
    let db = TestDb::create("cli-attach");
    let url = db.url_with_user();
    let cli = settee_with_password();
    let attached = cli.ok_json(&["attach", &url, "note:1", "talk.bin", path_str(&file)]);
    assert!(attached["rev"].as_str().unwrap().starts_with("1-"));
    let (status, body) = db
        .server()
        .raw_request("GET", &format!("/{}/note:1", db.name()), None);
    assert_eq!(status, 200, "{body}");
    let couch_doc: Value = serde_json::from_str(&body).unwrap();
    let couch_att = &couch_doc["_attachments"]["talk.bin"];
    assert_eq!(couch_att["length"], BIG as u64);
    assert_eq!(
        couch_att["digest"], local_att["digest"],
        "CouchDB's digest of the bytes it received is the store's"
    );
    let out = dir.path().join("from-couch.bin");
    cli.ok_json(&["get-attachment", &url, "note:1", "talk.bin", path_str(&out)]);
    assert!(std::fs::read(&out).unwrap() == data, "CouchDB bytes differ");
    let piped = cli.run(&["get-attachment", &url, "note:1", "talk.bin", "-"]);
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(piped.stdout == data, "stdout bytes differ");
}

#[test]
fn attach_guesses_the_type_keeps_other_attachments_and_names_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    let store = path_str(&store);
    let png = dir.path().join("Photo.PNG");
    std::fs::write(&png, b"\x89PNG not really").unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"some words").unwrap();

    let first = ok_json(&["attach", store, "n", "photo.png", path_str(&png)]);
    assert!(
        first["rev"].as_str().unwrap().starts_with("1-"),
        "a new document"
    );
    ok_json(&[
        "attach",
        store,
        "n",
        "raw",
        path_str(&notes),
        "--type",
        "text/x-mine",
    ]);
    let doc = ok_json(&["get", store, "n"]);
    let atts = doc["_attachments"].as_object().unwrap();
    assert_eq!(atts["photo.png"]["content_type"], "image/png");
    assert_eq!(atts["raw"]["content_type"], "text/x-mine");

    // A stale --rev: the error names the document, the attachment and what to do.
    let stale = run(&[
        "attach",
        store,
        "n",
        "again",
        path_str(&notes),
        "--rev",
        first["rev"].as_str().unwrap(),
    ]);
    assert_eq!(stale.status.code(), Some(1));
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(
        err.contains(r#"to document "n""#) && err.contains(r#""again""#),
        "{err}"
    );
    assert!(err.contains("conflict") && err.contains("--rev"), "{err}");

    // A missing attachment, on a server: the URL is named, the password is not, and no
    // file is left behind.
    let db = TestDb::create("cli-attach-missing");
    let cli = settee_with_password();
    let url = db.url_with_user();
    cli.ok_json(&["attach", &url, "n", "photo.png", path_str(&png)]);
    let out = dir.path().join("missing.bin");
    let missing = cli.run(&["get-attachment", &url, "n", "nope", path_str(&out)]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains(r#"attachment "nope" of document "n""#),
        "{err}"
    );
    assert!(
        err.contains(db.name()) && err.contains("not_found"),
        "{err}"
    );
    if let Some(password) = db.server().password() {
        assert!(!err.contains(password), "the password leaked: {err}");
    }
    assert!(!out.exists());
    assert!(!dir.path().join("missing.bin.settee-part").exists());
}
