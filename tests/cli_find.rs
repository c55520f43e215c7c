//! `settee find` and `settee index` on a local store and on the test server (Apache CouchDB,
//! whose Mango rules Settee follows): the same
//! commands, the same answers, CouchDB's errors as exit code 1 with the error on stderr.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::process::Output;

use common::json_lines as lines;
use serde_json::{json, Value};
use settee_testkit::TestDb;

fn run(args: &[&str], password: Option<&str>) -> Output {
    match password {
        Some(p) => common::settee().env("SETTEE_PASSWORD", p),
        None => common::settee(),
    }
    .run(args)
}

fn ok(args: &[&str], password: Option<&str>) -> Vec<Value> {
    let out = run(args, password);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&out)
}

/// The whole scenario on one database (a path or a URL).
fn scenario(db: &str, password: Option<&str>) {
    for i in 0..12 {
        let nb = if i % 3 == 0 { "work" } else { "home" };
        let doc =
            json!({"_id": format!("n{i:02}"), "notebook": nb, "updated_at": 100 + (i * 7) % 12});
        ok(&["put", db, &doc.to_string()], password);
    }
    // A sort needs an index: CouchDB's error, exit code 1.
    let out = run(
        &[
            "find",
            db,
            r#"{"notebook": "work"}"#,
            "--sort",
            "notebook:desc",
            "--sort",
            "updated_at:desc",
        ],
        password,
    );
    assert_eq!(out.status.code(), Some(1), "{db}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no_usable_index"),
        "{db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = ok(
        &[
            "index",
            "create",
            db,
            "notebook",
            "updated_at",
            "--ddoc",
            "nb",
            "--name",
            "by-nb",
        ],
        password,
    );
    assert_eq!(
        created,
        [json!({"result": "created", "id": "_design/nb", "name": "by-nb"})],
        "{db}"
    );
    let list = ok(&["index", "list", db], password);
    assert_eq!(list[0]["name"], "_all_docs", "{db}");
    assert!(list.iter().any(|i| i["name"] == "by-nb"), "{db}: {list:?}");
    let found = ok(
        &[
            "find",
            db,
            r#"{"notebook": "work"}"#,
            "--sort",
            "notebook:desc",
            "--sort",
            "updated_at:desc",
            "--limit",
            "3",
            "--fields",
            "_id,updated_at",
        ],
        password,
    );
    let mut expected: Vec<(i64, String)> = (0..12)
        .filter(|i| i % 3 == 0)
        .map(|i| (100 + (i * 7) % 12, format!("n{i:02}")))
        .collect();
    expected.sort();
    expected.reverse();
    assert_eq!(
        found,
        expected[..3]
            .iter()
            .map(|(u, id)| json!({"_id": id, "updated_at": u}))
            .collect::<Vec<_>>(),
        "{db}"
    );
    let explained = ok(
        &[
            "find",
            db,
            r#"{"notebook": "work"}"#,
            "--sort",
            "notebook",
            "--sort",
            "updated_at",
            "--explain",
        ],
        password,
    );
    assert_eq!(explained[0]["index"]["name"], "by-nb", "{db}");
    // Sorting by notebook alone cannot use [notebook, updated_at] (documents without
    // updated_at are not in it): CouchDB explains that with no index.
    let explained = ok(
        &[
            "find",
            db,
            r#"{"notebook": "work"}"#,
            "--sort",
            "notebook",
            "--explain",
        ],
        password,
    );
    assert_eq!(explained[0]["index"], Value::Null, "{db}");
    assert_eq!(
        explained[0]["index_candidates"][0]["analysis"]["reasons"][0]["name"], "field_mismatch",
        "{db}"
    );
    // Without an index for the selector: every document read, and a warning on stderr.
    let out = run(
        &["find", db, r#"{"updated_at": {"$gt": 105}}"#, "--skip", "1"],
        password,
    );
    assert!(out.status.success(), "{db}");
    assert_eq!(lines(&out).len(), 5, "{db}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No matching index found"),
        "{db}"
    );
    let bad = run(&["find", db, r#"{"updated_at": {"$bogus": 1}}"#], password);
    assert_eq!(bad.status.code(), Some(1), "{db}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("$bogus"),
        "{db}"
    );
    ok(&["index", "delete", db, "nb", "by-nb"], password);
    let list = ok(&["index", "list", db], password);
    assert_eq!(list.len(), 1, "{db}: {list:?}");
}

#[test]
fn find_and_index_commands_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes");
    scenario(db.to_str().unwrap(), None);
}

#[test]
fn find_and_index_commands_on_a_server() {
    let server = common::couchdb_server();
    let name_db = TestDb::named("clifind");
    let name = name_db.name();
    let url = server.db_url_with_user(name);
    let password = server.password();
    let admin = server.db_url_with_credentials(name);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let remote = settee_couch_db(&admin);
    rt.block_on(remote.create()).unwrap();
    scenario(&url, password);
    rt.block_on(remote.delete()).unwrap();
}

fn settee_couch_db(url: &str) -> settee::couch::RemoteDb {
    settee::couch::RemoteDb::from_url(url).unwrap()
}
