//! What the replicator relies on: `new_edits=false`, `_revs_diff`, `_bulk_get` and
//! attachments (inline data, stubs, digests, `atts_since`), with CouchDB's documented shapes
//! (replication/protocol.rst, api/database/bulk-api.rst, api/database/misc.rst).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{db, get, put_rev, rev};
use serde_json::json;
use settee_store::{BulkGetOptions, BulkGetRequest, GetOptions};

#[test]
fn new_edits_false_merges_given_history_and_existing_rev_is_silent_success() {
    let (_d, db) = db();
    let doc = json!({"_id": "a", "_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}, "v": 3});
    let res = db.bulk_docs(vec![doc.clone()], false).unwrap();
    assert_eq!(
        serde_json::to_value(&res).unwrap(),
        json!([{"ok": true, "id": "a", "rev": "3-c"}])
    );
    let seq = db.info().unwrap().update_seq;
    // Again: no new sequence, same answer.
    let res = db.bulk_docs(vec![doc], false).unwrap();
    assert!(res[0].is_ok());
    assert_eq!(db.info().unwrap().update_seq, seq);
    let got = db
        .get(
            "a",
            &GetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        got["_revisions"],
        json!({"start": 3, "ids": ["c", "b", "a"]})
    );
    assert_eq!(got["v"], 3);
}

#[test]
fn new_edits_false_without_rev_is_bad_request() {
    let (_d, db) = db();
    let res = db.bulk_docs(vec![json!({"_id": "a"})], false).unwrap();
    assert_eq!(res[0].error.as_deref(), Some("bad_request"));
    assert_eq!(
        res[0].reason.as_deref(),
        Some("When `new_edits: false`, the document needs `_rev` or `_revisions` specified")
    );
}

#[test]
fn new_edits_false_creates_conflicts_without_409() {
    let (_d, db) = db();
    let mine = put_rev(&db, json!({"_id": "a", "v": "mine"}));
    let res = db
        .bulk_docs(
            vec![json!({"_id": "a", "_rev": "1-ffffffffffffffffffffffffffffffff", "v": "theirs"})],
            false,
        )
        .unwrap();
    assert!(res[0].is_ok());
    let doc = db
        .get(
            "a",
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], "1-ffffffffffffffffffffffffffffffff");
    assert_eq!(doc["_conflicts"], json!([mine.to_string()]));
}

#[test]
fn two_tombstone_branches_of_one_id_in_one_batch_are_both_merged() {
    // apache/pouchdb#2056: both deleted branches must be kept.
    let (_d, db) = db();
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "a", "_revisions": {"start": 2, "ids": ["x", "r"]}, "_deleted": true}),
                json!({"_id": "a", "_revisions": {"start": 2, "ids": ["y", "r"]}, "_deleted": true}),
            ],
            false,
        )
        .unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    let all = db
        .open_revs("a", settee_store::OpenRevs::All, &GetOptions::default())
        .unwrap();
    assert_eq!(all.len(), 2);
    let info = db.info().unwrap();
    assert_eq!(
        (info.doc_count, info.doc_del_count, info.update_seq),
        (0, 1, 2)
    );
}

#[test]
fn revs_diff_reports_missing_and_possible_ancestors_only_for_ids_with_gaps() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![json!({"_id": "a", "_revisions": {"start": 2, "ids": ["b", "a"]}})],
        false,
    )
    .unwrap();
    db.bulk_docs(vec![json!({"_id": "full", "_rev": "1-q"})], false)
        .unwrap();
    let asked = BTreeMap::from([
        ("a".to_string(), vec![rev("2-b"), rev("3-c"), rev("1-a")]),
        ("full".to_string(), vec![rev("1-q")]),
        ("new".to_string(), vec![rev("1-n"), rev("1-n")]),
    ]);
    let diff = db.revs_diff(asked).unwrap();
    assert_eq!(diff.keys().collect::<Vec<_>>(), ["a", "new"]);
    assert_eq!(diff["a"].missing, [rev("3-c")]);
    assert_eq!(diff["a"].possible_ancestors, [rev("2-b")]);
    assert_eq!(diff["new"].missing, [rev("1-n")]);
    assert!(diff["new"].possible_ancestors.is_empty());
}

#[test]
fn bulk_get_returns_ok_and_error_entries_in_couchdb_shape() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![json!({"_id": "a", "_revisions": {"start": 2, "ids": ["b", "a"]}, "v": 1})],
        false,
    )
    .unwrap();
    db.bulk_docs(
        vec![json!({"_id": "a", "_revisions": {"start": 2, "ids": ["c", "a"]}, "v": 2})],
        false,
    )
    .unwrap();
    let reqs = vec![
        BulkGetRequest {
            id: "a".into(),
            rev: Some(rev("2-b")),
            atts_since: vec![],
        },
        BulkGetRequest {
            id: "a".into(),
            rev: Some(rev("5-z")),
            atts_since: vec![],
        },
        BulkGetRequest {
            id: "a".into(),
            rev: None,
            atts_since: vec![],
        },
        BulkGetRequest {
            id: "nope".into(),
            rev: None,
            atts_since: vec![],
        },
    ];
    let res = db
        .bulk_get(
            &reqs,
            &BulkGetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    let js = serde_json::to_value(&res).unwrap();
    assert_eq!(
        js[0],
        json!({"id": "a", "docs": [{"ok": {"_id": "a", "_rev": "2-b", "v": 1, "_revisions": {"start": 2, "ids": ["b", "a"]}}}]})
    );
    assert_eq!(
        js[1],
        json!({"id": "a", "docs": [{"error": {"id": "a", "rev": "5-z", "error": "not_found", "reason": "missing"}}]})
    );
    // Without rev: every leaf (a conflicted doc gives several docs).
    assert_eq!(js[2]["docs"].as_array().unwrap().len(), 2);
    assert_eq!(js[2]["docs"][0]["ok"]["_rev"], "2-c");
    assert_eq!(js[3]["docs"][0]["error"]["error"], "not_found");
}

#[test]
fn bulk_get_latest_follows_the_branch_to_its_leaf() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![json!({"_id": "a", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}})],
        false,
    )
    .unwrap();
    let reqs = vec![BulkGetRequest {
        id: "a".into(),
        rev: Some(rev("2-b")),
        atts_since: vec![],
    }];
    let res = db
        .bulk_get(
            &reqs,
            &BulkGetOptions {
                latest: true,
                ..Default::default()
            },
        )
        .unwrap();
    let js = serde_json::to_value(&res).unwrap();
    assert_eq!(js[0]["docs"][0]["ok"]["_rev"], "3-c");
}

// "hello" has md5 5d41402abc4b2a76b9719d911017c592, base64 XUFAKrxLKna5cZ2REBfFkg==.
const HELLO_DIGEST: &str = "md5-XUFAKrxLKna5cZ2REBfFkg==";

#[test]
fn inline_attachment_is_stored_and_returned_as_stub_or_data() {
    let (_d, db) = db();
    let r1 = put_rev(
        &db,
        json!({"_id": "a", "_attachments": {"t.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}}),
    );
    let doc = get(&db, "a");
    assert_eq!(
        doc["_attachments"]["t.txt"],
        json!({"content_type": "text/plain", "digest": HELLO_DIGEST, "length": 5, "revpos": 1, "stub": true})
    );
    let full = db
        .get(
            "a",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        full["_attachments"]["t.txt"],
        json!({"content_type": "text/plain", "digest": HELLO_DIGEST, "revpos": 1, "data": "aGVsbG8="})
    );
    // A later revision carrying the stub keeps the attachment (and its revpos).
    let r2 = put_rev(
        &db,
        json!({"_id": "a", "_rev": r1.to_string(), "v": 2, "_attachments": {"t.txt": {"stub": true}}}),
    );
    let doc = db
        .get(
            "a",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], r2.to_string());
    assert_eq!(doc["_attachments"]["t.txt"]["revpos"], 1);
    assert_eq!(doc["_attachments"]["t.txt"]["data"], "aGVsbG8=");
    // Leaving _attachments out drops the attachment, as in CouchDB.
    let r3 = put_rev(&db, json!({"_id": "a", "_rev": r2.to_string()}));
    let doc = db
        .get(
            "a",
            &GetOptions {
                rev: Some(r3),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(doc.get("_attachments").is_none());
}

#[test]
fn stub_for_unknown_attachment_is_412_missing_stub() {
    let (_d, db) = db();
    let r1 = put_rev(&db, json!({"_id": "a"}));
    let e = db
        .put(json!({"_id": "a", "_rev": r1.to_string(), "_attachments": {"x": {"stub": true}}}))
        .unwrap_err();
    assert_eq!((e.name(), e.status()), ("missing_stub", 412));
    // Replication: a stub whose digest the store lacks fails that doc only, nothing written.
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "b", "_rev": "1-b", "_attachments": {"x": {"stub": true, "digest": "md5-AAAAAAAAAAAAAAAAAAAAAA==", "revpos": 1}}}),
                json!({"_id": "c", "_rev": "1-c"}),
            ],
            false,
        )
        .unwrap();
    assert_eq!(res[0].error.as_deref(), Some("missing_stub"));
    assert!(res[1].is_ok());
    assert!(db.get("b", &GetOptions::default()).is_err());
}

#[test]
fn replicated_stub_refers_to_attachment_stored_once_by_digest() {
    let (_d, db) = db();
    db.bulk_docs(
        vec![json!({"_id": "a", "_rev": "1-a", "_attachments": {"t": {"content_type": "text/plain", "data": "aGVsbG8=", "revpos": 1}}})],
        false,
    )
    .unwrap();
    // Another doc (or a later rev) that sends only a stub with the same digest.
    let res = db
        .bulk_docs(
            vec![json!({"_id": "b", "_revisions": {"start": 2, "ids": ["b2", "b1"]}, "_attachments": {"copy": {"content_type": "text/plain", "stub": true, "digest": HELLO_DIGEST, "revpos": 1, "length": 5}}})],
            false,
        )
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let doc = db
        .get(
            "b",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["copy"]["data"], "aGVsbG8=");
    assert_eq!(doc["_attachments"]["copy"]["revpos"], 1);
}

#[test]
fn atts_since_omits_data_the_caller_has() {
    let (_d, db) = db();
    // rev 1 adds "old", rev 3 adds "new"; the caller has 2-b.
    db.bulk_docs(
        vec![
            json!({"_id": "a", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}, "_attachments": {
                "old": {"content_type": "text/plain", "data": "b2xk", "revpos": 1},
                "new": {"content_type": "text/plain", "data": "bmV3", "revpos": 3}
            }}),
        ],
        false,
    )
    .unwrap();
    let reqs = vec![BulkGetRequest {
        id: "a".into(),
        rev: Some(rev("3-c")),
        atts_since: vec![rev("2-b")],
    }];
    let res = db
        .bulk_get(
            &reqs,
            &BulkGetOptions {
                revs: true,
                attachments: true,
                latest: true,
            },
        )
        .unwrap();
    let js = serde_json::to_value(&res).unwrap();
    let atts = &js[0]["docs"][0]["ok"]["_attachments"];
    assert_eq!(atts["old"]["stub"], true);
    assert!(atts["old"].get("data").is_none());
    assert_eq!(atts["new"]["data"], "bmV3");
    // An atts_since rev the tree does not know: everything is sent.
    let reqs = vec![BulkGetRequest {
        id: "a".into(),
        rev: Some(rev("3-c")),
        atts_since: vec![rev("2-zz")],
    }];
    let js = serde_json::to_value(
        db.bulk_get(
            &reqs,
            &BulkGetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        js[0]["docs"][0]["ok"]["_attachments"]["old"]["data"],
        "b2xk"
    );
}

/// The attachments of revision `rev` of `a` as `_bulk_get` gives them with `atts_since`.
fn atts_with_since(db: &settee_store::Database, rev_: &str, since: &[&str]) -> serde_json::Value {
    let reqs = vec![BulkGetRequest {
        id: "a".into(),
        rev: Some(rev(rev_)),
        atts_since: since.iter().map(|r| rev(r)).collect(),
    }];
    let opts = BulkGetOptions {
        attachments: true,
        ..Default::default()
    };
    let js = serde_json::to_value(db.bulk_get(&reqs, &opts).unwrap()).unwrap();
    js[0]["docs"][0]["ok"]["_attachments"].clone()
}

#[test]
fn atts_since_counts_only_revisions_on_the_fetched_revisions_own_path() {
    // Issue 10, finding 1: `1-x` has "old"; the other side edited it to `2-s`; here `2-a`
    // added "a.bin", then `3-a`. A reader holding `2-s` lacks "a.bin" although `2-s` is at
    // position 2, so "a.bin" must come as data; "old" (revpos 1) is on 3-a's path too, but
    // `2-s` is not an ancestor of `3-a`, so it proves nothing about "old" either.
    let (_d, db) = db();
    let old = json!({"content_type": "text/plain", "data": "b2xk", "revpos": 1});
    let bin = json!({"content_type": "application/octet-stream", "data": "AAECAw==", "revpos": 2});
    db.bulk_docs(
        vec![
            json!({"_id": "a", "_revisions": {"start": 3, "ids": ["a3", "a2", "x"]},
                "_attachments": {"old": old, "a.bin": bin}}),
            json!({"_id": "a", "_revisions": {"start": 2, "ids": ["s", "x"]},
                "_attachments": {"old": old}}),
        ],
        false,
    )
    .unwrap();
    let atts = atts_with_since(&db, "3-a3", &["2-s"]);
    assert_eq!(atts["a.bin"]["data"], "AAECAw==", "{atts}");
    assert_eq!(atts["old"]["data"], "b2xk", "{atts}");
    // The shared ancestor counts: "old" is a stub, "a.bin" (revpos 2) is data.
    let atts = atts_with_since(&db, "3-a3", &["2-s", "1-x"]);
    assert_eq!(atts["old"]["stub"], true, "{atts}");
    assert_eq!(atts["a.bin"]["data"], "AAECAw==", "{atts}");
    // An ancestor on the path at position 2, and the revision itself.
    for since in [&["2-a2"][..], &["1-x", "2-a2", "2-s"], &["3-a3"]] {
        let atts = atts_with_since(&db, "3-a3", since);
        assert_eq!(atts["a.bin"]["stub"], true, "{since:?}: {atts}");
        assert_eq!(atts["old"]["stub"], true, "{since:?}: {atts}");
    }
}

#[test]
fn replicated_stub_with_an_unknown_digest_resolves_by_name_and_revpos_on_its_ancestor() {
    // Apache CouchDB sends a compressible attachment's stub with the digest of its gzipped
    // bytes, which this store never computed: the stub must still find the attachment on the
    // revision's nearest stored ancestor, by name and revpos, as CouchDB resolves stubs.
    let (_d, db) = db();
    db.bulk_docs(
        vec![json!({"_id": "a", "_rev": "1-a", "_attachments": {"t": {"content_type": "text/plain", "data": "aGVsbG8=", "revpos": 1}}})],
        false,
    )
    .unwrap();
    let couch_digest = "md5-oNFRO/agMpK3OYvCMK6muQ==";
    let res = db
        .bulk_docs(
            vec![
                json!({"_id": "a", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}, "_attachments": {"t": {"content_type": "text/plain", "stub": true, "digest": couch_digest, "revpos": 1, "length": 5}}}),
                // The same name with another revpos is another attachment: refused.
                json!({"_id": "a", "_revisions": {"start": 2, "ids": ["z", "a"]}, "_attachments": {"t": {"content_type": "text/plain", "stub": true, "digest": couch_digest, "revpos": 2}}}),
            ],
            false,
        )
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(res[1].error.as_deref(), Some("missing_stub"), "{res:?}");
    let doc = db
        .get(
            "a",
            &GetOptions {
                rev: Some(rev("3-c")),
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["t"]["data"], "aGVsbG8=");
    assert_eq!(doc["_attachments"]["t"]["digest"], HELLO_DIGEST);
    assert_eq!(doc["_attachments"]["t"]["revpos"], 1);
}

#[test]
fn bad_attachment_data_is_bad_request() {
    let (_d, db) = db();
    let e = db
        .put(json!({"_id": "a", "_attachments": {"x": {"data": "not base64!!"}}}))
        .unwrap_err();
    assert_eq!(e.name(), "bad_request");
}

/// CouchDB refuses an attachment name starting with `_` (400, nothing written).
#[test]
fn attachment_name_starting_with_underscore_is_refused() {
    let (_d, db) = db();
    let e = db
        .put(json!({"_id": "a", "_attachments": {"_x": {"content_type": "text/plain", "data": "aGk="}}}))
        .unwrap_err();
    assert_eq!(e.name(), "bad_request");
    assert!(e.to_string().contains("'_x'"), "{e}");
    assert!(db.get("a", &Default::default()).is_err(), "nothing written");
}

/// Issue 10: every revision form Apache CouchDB 3.5 stores with `new_edits=false` is stored
/// and read back unchanged (parsed documents and JSON text alike); the histories CouchDB
/// stores but no replica can represent (positions below 0) are that document's error, and
/// the other documents of the call are written.
#[test]
fn revisions_couchdb_stores_are_stored_and_unrepresentable_ones_fail_alone() {
    let (_d, db) = db();
    let long = "9f".repeat(150);
    let docs = vec![
        json!({"_id": "long", "_rev": format!("1-{long}"), "v": 1}),
        json!({"_id": "zero", "_rev": "0-abc", "v": 2}),
        json!({"_id": "bang", "_rev": "1-xyz!", "v": 3}),
        json!({"_id": "empty", "_rev": "1-", "v": 4}),
        json!({"_id": "odd", "_rev": "2-a b\n\u{0}\u{e9}", "_revisions": {"start": 2, "ids": ["a b\n\u{0}\u{e9}", ""]}}),
        json!({"_id": "to-zero", "_rev": "1-b", "_revisions": {"start": 1, "ids": ["b", "a"]}}),
        json!({"_id": "below-zero", "_rev": "0-b", "_revisions": {"start": 0, "ids": ["b", "a"]}}),
        json!({"_id": "negative", "_revisions": {"start": -1, "ids": ["b"]}}),
        json!({"_id": "huge", "_rev": "9007199254740993-x", "v": 5}),
    ];
    let text: Vec<Box<serde_json::value::RawValue>> = docs
        .iter()
        .map(|d| serde_json::value::to_raw_value(d).unwrap())
        .collect();
    let (_d2, db2) = common::db();
    for (store, res) in [
        (&db, db.bulk_docs(docs.clone(), false).unwrap()),
        (&db2, db2.bulk_docs_json(&text, false).unwrap()),
    ] {
        let failed: Vec<&str> = res
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(failed, ["below-zero", "negative"], "{res:?}");
        assert!(res
            .iter()
            .filter(|r| r.error.is_some())
            .all(|r| r.error.as_deref() == Some("bad_request")));
        for (id, rev, revisions) in [
            (
                "long",
                format!("1-{long}"),
                json!({"start": 1, "ids": [long]}),
            ),
            ("zero", "0-abc".into(), json!({"start": 0, "ids": ["abc"]})),
            (
                "bang",
                "1-xyz!".into(),
                json!({"start": 1, "ids": ["xyz!"]}),
            ),
            ("empty", "1-".into(), json!({"start": 1, "ids": [""]})),
            (
                "odd",
                "2-a b\n\u{0}\u{e9}".into(),
                json!({"start": 2, "ids": ["a b\n\u{0}\u{e9}", ""]}),
            ),
            (
                "to-zero",
                "1-b".into(),
                json!({"start": 1, "ids": ["b", "a"]}),
            ),
            (
                "huge",
                "9007199254740993-x".into(),
                json!({"start": 9007199254740993u64, "ids": ["x"]}),
            ),
        ] {
            let got = store
                .get(
                    id,
                    &GetOptions {
                        revs: true,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(got["_rev"], rev.as_str(), "{id}");
            assert_eq!(got["_revisions"], revisions, "{id}");
        }
        // A new edit on top of position 0 is position 1.
        let edited = store
            .put(json!({"_id": "zero", "_rev": "0-abc", "v": 9}))
            .unwrap();
        assert_eq!(edited.rev.unwrap().pos(), 1);
        store.verify().unwrap();
    }
}
