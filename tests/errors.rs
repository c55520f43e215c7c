//! Issue 22, finding 3: one error vocabulary. The same operation fails with the same
//! `kind()` and the same `name()` on a local store and on the test server (Apache CouchDB):
//! not found (a document, a database), conflict, `no_usable_index`, an invalid selector, a
//! document that does not fit its type; and the server's own failures have their kinds
//! (a wrong password, a validation function's `forbidden`, a server nobody answers on).

#![allow(clippy::unwrap_used)]

mod common;

use serde::Deserialize;
use serde_json::{json, Value};
use settee::{Db, Documents, Error, ErrorKind, FindRequest, ReadOptions};
use settee_testkit::{TestDb, TestServer};

/// A fresh local store and a fresh database on the test server (deleted when the guard
/// drops).
struct Both {
    local: Db,
    remote: Db,
    _dir: tempfile::TempDir,
    _deleted_on_drop: TestDb,
}

fn both(prefix: &str) -> Both {
    let server = common::couchdb_server();
    let dir = tempfile::tempdir().unwrap();
    let local = Db::Local(settee::Local::open(dir.path().join("db")).unwrap());
    let guard = TestDb::create(prefix);
    let remote = Db::open(&server.db_url_with_credentials(guard.name())).unwrap();
    Both {
        local,
        remote,
        _dir: dir,
        _deleted_on_drop: guard,
    }
}

/// What an app matches on.
fn seen(e: &Error) -> (ErrorKind, String) {
    (e.kind(), e.name().to_owned())
}

/// Runs `op` on both databases: it must fail on both, with `kind` and `name`.
async fn same_on_both<F, Fut>(dbs: &Both, kind: ErrorKind, name: &str, op: F) -> [Error; 2]
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = settee::Result<Value>>,
{
    let mut errors = Vec::new();
    for (which, db) in [("local", &dbs.local), ("remote", &dbs.remote)] {
        let err = match op(db.clone()).await {
            Err(e) => e,
            Ok(v) => panic!("{which}: expected {kind} {name}, got {v}"),
        };
        assert_eq!(seen(&err), (kind, name.to_owned()), "{which}: {err}");
        errors.push(err);
    }
    errors.try_into().unwrap()
}

#[tokio::test]
async fn a_missing_document_is_not_found_with_the_same_reason() {
    let dbs = both("err-notfound");
    let [local, remote] = same_on_both(&dbs, ErrorKind::NotFound, "not_found", |db| async move {
        db.get("note:404", &ReadOptions::default()).await
    })
    .await;
    assert_eq!(local.reason().as_deref(), Some("missing"));
    assert_eq!(remote.reason().as_deref(), Some("missing"));
    assert!(local.is_not_found() && remote.is_not_found());
}

#[tokio::test]
async fn a_missing_database_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-created");
    let local = settee::Local::builder(&path)
        .create(false)
        .open()
        .unwrap_err();
    assert_eq!(
        seen(&local),
        (ErrorKind::NotFound, "not_found".into()),
        "{local}"
    );

    let server = common::couchdb_server();
    let absent = TestDb::named("err-nodb");
    let remote = Db::open(&server.db_url_with_credentials(absent.name())).unwrap();
    let remote = remote.get("x", &ReadOptions::default()).await.unwrap_err();
    assert_eq!(seen(&remote), seen(&local), "{remote}");
}

#[tokio::test]
async fn a_stale_write_is_a_conflict() {
    let dbs = both("err-conflict");
    for db in [&dbs.local, &dbs.remote] {
        db.put(json!({"_id": "note:1"})).await.unwrap();
    }
    let [local, remote] = same_on_both(&dbs, ErrorKind::Conflict, "conflict", |db| async move {
        db.put(json!({"_id": "note:1", "title": "no _rev"})).await
    })
    .await;
    assert!(local.is_conflict() && remote.is_conflict());
}

#[tokio::test]
async fn a_sort_without_an_index_is_no_usable_index() {
    let dbs = both("err-sort");
    let req = FindRequest::parse(&json!({"selector": {"title": {"$gt": null}}, "sort": ["title"]}))
        .unwrap();
    same_on_both(&dbs, ErrorKind::BadRequest, "no_usable_index", |db| {
        let req = req.clone();
        async move { db.find(&req).await.map(|found| json!(found.docs)) }
    })
    .await;
}

#[tokio::test]
async fn an_invalid_selector_has_the_servers_name_locally() {
    let dbs = both("err-selector");
    let query = json!({"selector": {"title": {"$nope": 1}}});
    // Locally the query is checked when it is parsed; the server checks it in `_find`.
    let local = Error::from(FindRequest::parse(&query).unwrap_err());
    let Db::Remote(server) = &dbs.remote else {
        panic!("a URL opens a remote database")
    };
    let remote = Error::from(server.couch().find(&query).await.unwrap_err());
    assert_eq!(
        seen(&remote),
        (ErrorKind::BadRequest, "invalid_operator".into()),
        "{remote}"
    );
    assert_eq!(seen(&local), seen(&remote), "{local}");
}

#[tokio::test]
async fn a_document_that_does_not_fit_the_type_is_decode_with_serdes_reason() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Note {
        title: String,
    }
    let dbs = both("err-decode");
    for (which, db) in [("local", &dbs.local), ("remote", &dbs.remote)] {
        db.put(json!({"_id": "note:1", "title": 5})).await.unwrap();
        let err = db.get_doc::<Note>("note:1").await.unwrap_err();
        assert_eq!(
            seen(&err),
            (ErrorKind::Decode, "doc_decode".into()),
            "{which}: {err}"
        );
        let message = err.to_string();
        assert!(
            message
                .starts_with("doc_decode: document \"note:1\" does not fit the requested type: ")
                && message.contains("invalid type: integer `5`, expected a string"),
            "{which}: {message}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized() {
    let server = TestServer::get();
    let Some(user) = server.user() else {
        panic!("the test server has no admin user: a wrong password cannot be tried")
    };
    let guard = TestDb::create("err-auth");
    let url = format!(
        "{}/{}",
        server
            .url()
            .replacen("://", &format!("://{user}:definitely-wrong@"), 1),
        guard.name()
    );
    let err = Db::open(&url)
        .unwrap()
        .get("x", &ReadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        seen(&err),
        (ErrorKind::Unauthorized, "unauthorized".into()),
        "{err}"
    );
    assert!(!err.to_string().contains("definitely-wrong"), "{err}");
}

#[tokio::test]
async fn a_validation_functions_forbidden_is_forbidden_on_every_write_path() {
    let server = common::couchdb_server();
    let guard = TestDb::named("err-forbidden");
    let db = common::guarded_remote(&server.db_url_with_credentials(guard.name())).await;
    // A single write (PUT) and a bulk write (`_bulk_docs`, where the refusal is one
    // document's) say the same.
    let put = db
        .put(json!({"_id": "s1", "secret": true}))
        .await
        .unwrap_err();
    let bulk = db
        .put_docs(&[settee::Doc::new("s2", json!({"secret": true}))])
        .await
        .unwrap()
        .remove(0)
        .unwrap_err();
    for err in [put, bulk] {
        assert_eq!(
            seen(&err),
            (ErrorKind::Forbidden, "forbidden".into()),
            "{err}"
        );
        assert_eq!(err.reason().as_deref(), Some("no secrets here"), "{err}");
    }
}

#[tokio::test]
async fn a_server_nobody_answers_on_is_offline() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = Db::open(&format!("http://127.0.0.1:{port}/notes")).unwrap();
    let err = db.get("note:1", &ReadOptions::default()).await.unwrap_err();
    assert_eq!(
        seen(&err),
        (ErrorKind::Offline, "transport".into()),
        "{err}"
    );
    assert_eq!(err.reason(), None);
    let Error::Couch(couch) = &err else {
        panic!("expected the client's error, got {err:?}")
    };
    assert!(couch.is_offline());
}
