//! The remaining read options, one test each: `atts_since` on `get`, `latest` on
//! `open_revs`, `conflicts`/`attachments` with `include_docs` in `_all_docs` and `_changes`,
//! and `_bulk_get` without `attachments` (stubs).
#![allow(clippy::unwrap_used)]

mod common;

use common::{db, rev};
use serde_json::json;
use settee_store::{
    AllDocsOptions, BulkGetOptions, BulkGetRequest, ChangesOptions, GetOptions, OpenRevResult,
    OpenRevs,
};

/// `a` with two live leaves 2-b and 2-c (2-c wins); 2-c carries attachment `f` ("hello",
/// revpos 2) and 1-a is the common parent.
fn setup() -> (tempfile::TempDir, settee_store::Database) {
    let (d, db) = db();
    db.bulk_docs(
        vec![
            json!({"_id": "a", "_revisions": {"start": 2, "ids": ["b", "a"]}, "v": "b"}),
            json!({"_id": "a", "_revisions": {"start": 2, "ids": ["c", "a"]}, "v": "c",
                   "_attachments": {"f": {"content_type": "text/plain", "data": "aGVsbG8=", "revpos": 2}}}),
        ],
        false,
    )
    .unwrap();
    (d, db)
}

#[test]
fn get_atts_since_inlines_only_newer_attachments() {
    let (_d, db) = setup();
    // The caller has 2-c: revpos 2 is not newer, so a stub.
    let doc = db
        .get(
            "a",
            &GetOptions {
                atts_since: vec![rev("2-c")],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["f"]["stub"], true);
    // The caller has only 1-a: revpos 2 is newer, so inline data without asking for
    // `attachments` (CouchDB: atts_since includes bodies changed since those revs).
    let doc = db
        .get(
            "a",
            &GetOptions {
                atts_since: vec![rev("1-a")],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["f"]["data"], "aGVsbG8=");
    // The caller has 2-b, another branch at the same position: it vouches for nothing of
    // 2-c's attachments, so data (a stub would name an attachment the caller may lack).
    let doc = db
        .get(
            "a",
            &GetOptions {
                atts_since: vec![rev("2-b")],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["f"]["data"], "aGVsbG8=");
}

#[test]
fn open_revs_latest_maps_an_inner_rev_to_its_leaves_once_each() {
    let (_d, db) = setup();
    let res = db
        .open_revs(
            "a",
            OpenRevs::Revs(vec![rev("1-a"), rev("2-b")]),
            &GetOptions {
                latest: true,
                ..Default::default()
            },
        )
        .unwrap();
    let revs: Vec<String> = res
        .iter()
        .map(|r| match r {
            OpenRevResult::Ok(d) => d["_rev"].as_str().unwrap().to_owned(),
            OpenRevResult::Missing(r) => format!("missing {r}"),
        })
        .collect();
    assert_eq!(revs, ["2-c", "2-b"]);
    // A document that does not exist: each listed rev is missing.
    let res = db
        .open_revs(
            "zz",
            OpenRevs::Revs(vec![rev("1-x")]),
            &GetOptions::default(),
        )
        .unwrap();
    assert_eq!(res, [OpenRevResult::Missing(rev("1-x"))]);
}

#[test]
fn all_docs_include_docs_with_conflicts_and_attachments() {
    let (_d, db) = setup();
    let r = db
        .all_docs(&AllDocsOptions {
            include_docs: true,
            conflicts: true,
            attachments: true,
            ..Default::default()
        })
        .unwrap();
    let doc = r.rows[0].doc.as_ref().unwrap();
    assert_eq!(doc["_rev"], "2-c");
    assert_eq!(doc["_conflicts"], json!(["2-b"]));
    assert_eq!(doc["_attachments"]["f"]["data"], "aGVsbG8=");
    assert_eq!(r.rows[0].value, Some(json!({"rev": "2-c"})));
}

#[test]
fn changes_include_docs_with_attachments() {
    let (_d, db) = setup();
    let ch = db
        .changes(&ChangesOptions {
            include_docs: true,
            attachments: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ch.results.len(), 1);
    assert_eq!(
        ch.results[0].doc.as_ref().unwrap()["_attachments"]["f"]["data"],
        "aGVsbG8="
    );
    let ch = db
        .changes(&ChangesOptions {
            include_docs: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        ch.results[0].doc.as_ref().unwrap()["_attachments"]["f"]["stub"],
        true
    );
}

#[test]
fn bulk_get_without_attachments_returns_stubs() {
    let (_d, db) = setup();
    let reqs = [BulkGetRequest {
        id: "a".into(),
        rev: Some(rev("2-c")),
        atts_since: vec![],
    }];
    let res = db.bulk_get(&reqs, &BulkGetOptions::default()).unwrap();
    let js = serde_json::to_value(&res).unwrap();
    assert_eq!(
        js[0]["docs"][0]["ok"]["_attachments"]["f"],
        json!({"content_type": "text/plain", "digest": "md5-XUFAKrxLKna5cZ2REBfFkg==", "length": 5, "revpos": 2, "stub": true})
    );
    assert!(js[0]["docs"][0]["ok"].get("_revisions").is_none());
}

#[test]
fn bulk_get_request_deserialises_from_couchdb_json() {
    let req: BulkGetRequest =
        serde_json::from_value(json!({"id": "a", "rev": "2-c", "atts_since": ["1-a"]})).unwrap();
    assert_eq!(req.rev, Some(rev("2-c")));
    assert_eq!(req.atts_since, [rev("1-a")]);
    let bare: BulkGetRequest = serde_json::from_value(json!({"id": "a"})).unwrap();
    assert!(bare.rev.is_none() && bare.atts_since.is_empty());
}
