//! The application API of the facade, on a local store and on the test server (Apache
//! CouchDB: the Mango answers are compared with its rules) alike: typed
//! documents, Mango indexes and queries, live changes streams, replication events as a
//! stream (and cancellation by dropping the handle), bulk calls, attachments as byte
//! streams, conflict resolution, and the error predicates.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use settee::{
    AttachmentUpload, ChangesFeed, Db, Doc, Event, FindRequest, ReadOptions, ReplicateOptions,
    Resolution,
};
use settee_testkit::{TestDb, TestServer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    notebook: String,
    title: String,
    updated_at: u64,
    #[serde(default)]
    tags: Vec<String>,
}

fn note(i: u64) -> Note {
    Note {
        notebook: ["work", "home"][(i % 2) as usize].into(),
        title: format!("note {i}"),
        updated_at: 1000 + (i * 37) % 101,
        tags: vec![format!("t{}", i % 3)],
    }
}

/// A fresh remote database (deleted when the guard drops) and its `Db`.
struct RemoteGuard {
    db: Db,
    _deleted_on_drop: TestDb,
}

async fn remote(prefix: &str) -> RemoteGuard {
    let server = common::couchdb_server();
    let guard = TestDb::named(prefix);
    let db = settee::Remote::new(&server.db_url_with_credentials(guard.name())).unwrap();
    db.create().await.unwrap();
    RemoteGuard {
        db: Db::Remote(db),
        _deleted_on_drop: guard,
    }
}

/// Runs `f` on a fresh local store and on a fresh database of the test server.
async fn on_both<F, Fut>(prefix: &str, f: F)
where
    F: Fn(Db, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("db")).unwrap();
    f(Db::Local(local), "local").await;
    let guard = remote(prefix).await;
    f(guard.db.clone(), "remote").await;
}

#[tokio::test]
async fn typed_documents_round_trip_on_store_and_server() {
    on_both("typed", |db, kind| async move {
        let saved = db.put_doc(&Doc::new("n1", note(1))).await.unwrap();
        let got: Doc<Note> = db.get_doc("n1").await.unwrap();
        assert_eq!(
            (got.body.clone(), got.rev.clone()),
            (note(1), saved.rev.clone()),
            "{kind}"
        );
        let mut edit = got.clone();
        edit.body.title = "edited".into();
        let edited = db.put_doc(&edit).await.unwrap();
        assert!(
            edited.rev.as_ref().unwrap().to_string().starts_with("2-"),
            "{kind}"
        );
        // The old revision again: a conflict, on both kinds.
        let err = db.put_doc(&got).await.unwrap_err();
        assert!(err.is_conflict(), "{kind}: {err}");
        let err = db.get_doc::<Note>("missing").await.unwrap_err();
        assert!(err.is_not_found(), "{kind}: {err}");
        // A document that does not fit the type is an error naming it.
        db.put(json!({"_id": "odd", "notebook": 5})).await.unwrap();
        let err = db.get_doc::<Note>("odd").await.unwrap_err();
        assert_eq!(err.name(), "doc_decode", "{kind}");
        assert!(err.to_string().contains("odd"), "{kind}: {err}");
        // Many at once.
        let written = db
            .put_docs(&[
                Doc::new("n2", note(2)),
                Doc::new("n3", note(3)),
                got.clone(),
            ])
            .await
            .unwrap();
        assert!(written[0].is_ok() && written[1].is_ok(), "{kind}");
        assert!(written[2].as_ref().unwrap_err().is_conflict(), "{kind}");
        let many = db.get_docs::<Note>(&["n3", "nope", "n1"]).await.unwrap();
        assert_eq!(many[0].as_ref().unwrap().body, note(3), "{kind}");
        assert!(many[1].as_ref().unwrap_err().is_not_found(), "{kind}");
        assert_eq!(many[2].as_ref().unwrap().body.title, "edited", "{kind}");
    })
    .await;
}

#[tokio::test]
async fn mango_queries_and_indexes_answer_alike_on_store_and_server() {
    on_both("mango", |db, kind| async move {
        let docs: Vec<Doc<Note>> = (0..40).map(|i| Doc::new(format!("n{i:02}"), note(i))).collect();
        for r in db.put_docs(&docs).await.unwrap() {
            r.unwrap();
        }
        let sorted = FindRequest::parse(&json!({
            "selector": {"notebook": "work"},
            "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
            "limit": 5
        }))
        .unwrap();
        // No index serves that sort yet: CouchDB's 400 no_usable_index, on both.
        let err = db.find(&sorted).await.unwrap_err();
        assert!(err.to_string().contains("no_usable_index"), "{kind}: {err}");
        let created = db
            .create_index(&json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "by-nb", "name": "nb"}))
            .await
            .unwrap();
        assert_eq!((created.result.as_str(), created.id.as_str()), ("created", "_design/by-nb"), "{kind}");
        let again = db
            .create_index(&json!({"index": {"fields": ["notebook", "updated_at"]}, "ddoc": "by-nb", "name": "nb"}))
            .await
            .unwrap();
        assert_eq!(again.result, "exists", "{kind}");
        let list = db.get_indexes().await.unwrap();
        assert!(list.indexes.iter().any(|i| i["name"] == "nb"), "{kind}: {list:?}");
        // Page through all work notes, newest first, 5 at a time.
        let mut expected: Vec<(u64, String)> = (0..40)
            .filter(|i| i % 2 == 0)
            .map(|i| (note(i).updated_at, format!("n{i:02}")))
            .collect();
        expected.sort();
        expected.reverse();
        let mut seen = Vec::new();
        let mut req = sorted.clone();
        loop {
            let page = db.find_docs::<Note>(&req).await.unwrap();
            assert!(page.warning.is_none(), "{kind}: {:?}", page.warning);
            if page.docs.is_empty() {
                break;
            }
            seen.extend(page.docs.iter().map(|d| (d.body.updated_at, d.id.clone())));
            req.bookmark = page.bookmark;
        }
        assert_eq!(seen, expected, "{kind}");
        let ex = db.explain(&sorted).await.unwrap();
        assert_eq!(ex["index"]["name"], "nb", "{kind}");
        assert_eq!(ex["mrargs"]["direction"], "rev", "{kind}");
        // Without a usable index: a scan, and a warning that says so.
        let scan = db
            .find(&FindRequest::parse(&json!({"selector": {"tags": {"$all": ["t1"]}}, "fields": ["_id"]})).unwrap())
            .await
            .unwrap();
        assert_eq!(scan.docs.len(), 13, "{kind}");
        assert!(scan.warning.unwrap().contains("No matching index found"), "{kind}");
        db.delete_index("by-nb", "nb").await.unwrap();
        assert!(db.find(&sorted).await.is_err(), "{kind}");
        let err = db.delete_index("by-nb", "nb").await.unwrap_err();
        assert!(err.is_not_found(), "{kind}: {err}");
    })
    .await;
}

#[tokio::test]
async fn live_changes_streams_deliver_writes_as_they_happen() {
    on_both("feed", |db, kind| async move {
        db.put(json!({"_id": "before"})).await.unwrap();
        let mut feed = Box::pin(db.changes_stream(ChangesFeed {
            live: true,
            include_docs: true,
            ..Default::default()
        }));
        let first = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.id, "before", "{kind}");
        db.put(json!({"_id": "after", "v": 1})).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.id.as_str(), &second.doc.unwrap()["v"]),
            ("after", &json!(1)),
            "{kind}"
        );
        // A feed that is not live ends once caught up, and resumes after a sequence.
        let done: Vec<_> = db
            .changes_stream(ChangesFeed {
                since: Some(first.seq.clone()),
                ..Default::default()
            })
            .collect()
            .await;
        let ids: Vec<String> = done.into_iter().map(|c| c.unwrap().id).collect();
        assert_eq!(ids, ["after"], "{kind}");
    })
    .await;
}

#[tokio::test]
async fn replication_events_are_a_stream_and_dropping_the_handle_stops_it_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("db")).unwrap();
    for i in 0..20 {
        local.put(json!({"_id": format!("d{i}")})).await.unwrap();
    }
    let guard = remote("events").await;
    let opts = ReplicateOptions {
        continuous: true,
        checkpoint_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let rep_id =
        settee::replicate::Replication::new(local.to_peer(), guard.db.to_peer(), opts.clone())
            .replication_id()
            .await
            .unwrap();
    let mut push =
        settee::replicate::Replication::new(local.to_peer(), guard.db.to_peer(), opts).spawn();
    let mut written = 0;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), push.next())
        .await
        .unwrap()
    {
        match event {
            Event::Change { stats, .. } => written = stats.docs_written,
            Event::Paused { .. } if written >= 20 => break,
            Event::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    // Dropping the handle cancels the replication (whose cancellation writes a final
    // checkpoint: `continuous_follows_new_writes_and_stops_cleanly` in settee-replicate).
    let token = push.cancel_token();
    assert!(!token.is_cancelled());
    drop(push);
    assert!(token.is_cancelled());
    let store = local.store().unwrap().clone();
    let id = format!("_local/{rep_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(ckpt) = store.get_local(&id) {
            if ckpt["source_last_seq"] == json!(20)
                || ckpt["history"][0]["recorded_seq"] == json!(20)
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at seq 20"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn attachments_go_in_and_out_as_byte_streams() {
    on_both("atts", |db, kind| async move {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<std::io::Result<bytes::Bytes>> = data
            .chunks(65_536)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let rev = db
            .put_attachment(
                "doc",
                None,
                AttachmentUpload {
                    name: "blob.bin".into(),
                    content_type: "application/octet-stream".into(),
                    length: data.len() as u64,
                    body: Box::pin(futures::stream::iter(chunks)),
                    encoding: None,
                },
            )
            .await
            .unwrap();
        // A second one on top keeps the first.
        let rev2 = db
            .put_attachment(
                "doc",
                Some(&rev),
                AttachmentUpload::from_bytes(
                    "b.txt",
                    "text/plain",
                    bytes::Bytes::from_static(b"hi"),
                ),
            )
            .await
            .unwrap();
        assert!(rev2.to_string().starts_with("2-"), "{kind}");
        let mut att = db.get_attachment("doc", "blob.bin", None).await.unwrap();
        let mut back = Vec::new();
        while let Some(chunk) = att.body.next().await {
            back.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(back, data, "{kind}");
        let err = db.get_attachment("doc", "nope", None).await.unwrap_err();
        assert!(err.is_not_found(), "{kind}: {err}");
        let doc = db.get("doc", &ReadOptions::default()).await.unwrap();
        assert_eq!(
            doc["_attachments"]["blob.bin"]["length"],
            json!(200_000),
            "{kind}"
        );
        // Stale revision: conflict.
        let stale = db
            .put_attachment(
                "doc",
                Some(&rev),
                AttachmentUpload::from_bytes(
                    "c.txt",
                    "text/plain",
                    bytes::Bytes::from_static(b"x"),
                ),
            )
            .await
            .unwrap_err();
        assert!(stale.is_conflict(), "{kind}: {stale}");
    })
    .await;
}

/// Makes `id` conflicted: our revision and a replicated one.
async fn conflicted(db: &Db, id: &str) -> (String, String) {
    let ours = db.put(json!({"_id": id, "title": "ours"})).await.unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = "1-ffffffffffffffffffffffffffffffff".to_owned();
    let doc = json!({"_id": id, "_rev": theirs, "title": "theirs"});
    match db {
        Db::Local(d) => {
            d.store().unwrap().bulk_docs(vec![doc], false).unwrap();
        }
        Db::Remote(r) => {
            r.couch().bulk_docs(&[doc], false).await.unwrap();
        }
    }
    (ours, theirs)
}

#[tokio::test]
async fn bulk_get_reads_revisions_and_leaves_alike_on_store_and_server() {
    use settee::store::{BulkGetDoc, BulkGetOptions, BulkGetRequest};
    on_both("bulkget", |db, kind| async move {
        let (ours, theirs) = conflicted(&db, "c").await;
        let first = db.put(json!({"_id": "p", "v": 1})).await.unwrap()["rev"]
            .as_str()
            .unwrap()
            .to_owned();
        let req = |id: &str, rev: Option<&str>| BulkGetRequest {
            id: id.into(),
            rev: rev.map(|r| r.parse().unwrap()),
            atts_since: vec![],
        };
        let opts = BulkGetOptions {
            revs: true,
            ..Default::default()
        };
        let out = db
            .bulk_get(
                &[
                    req("c", None),
                    req("p", Some(&first)),
                    req("nope", None),
                    req("p", Some("9-zzz")),
                ],
                &opts,
            )
            .await
            .unwrap();
        assert_eq!(out.len(), 4, "{kind}");
        let revs = |i: usize| -> Vec<String> {
            let mut r: Vec<String> = out[i]
                .docs
                .iter()
                .filter_map(|d| match d {
                    BulkGetDoc::Ok(doc) => Some(doc["_rev"].as_str().unwrap().to_owned()),
                    BulkGetDoc::Error(_) | BulkGetDoc::Missing(_) => None,
                })
                .collect();
            r.sort();
            r
        };
        let mut leaves = vec![ours.clone(), theirs.clone()];
        leaves.sort();
        assert_eq!(revs(0), leaves, "{kind}: every leaf without a rev");
        assert_eq!(revs(1), [first], "{kind}");
        match &out[1].docs[0] {
            BulkGetDoc::Ok(doc) => assert_eq!(doc["_revisions"]["start"], 1, "{kind}"),
            other => panic!("{kind}: {other:?}"),
        }
        for i in [2, 3] {
            match &out[i].docs[..] {
                [BulkGetDoc::Error(e)] => assert_eq!(e.error, "not_found", "{kind}: {e:?}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn resolve_conflict_keeps_or_merges_and_deletes_the_losers() {
    on_both("resolve", |db, kind| async move {
        let conflicts = |db: Db, id: &'static str| async move {
            let doc = db
                .get(
                    id,
                    &ReadOptions {
                        conflicts: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            (doc["title"].clone(), doc.get("_conflicts").cloned())
        };
        let (ours, theirs) = conflicted(&db, "merge-me").await;
        assert!(
            conflicts(db.clone(), "merge-me").await.1.is_some(),
            "{kind}"
        );
        let winner = db
            .resolve_conflict("merge-me", Resolution::Merge(json!({"title": "both"})))
            .await
            .unwrap();
        assert!(winner.to_string().starts_with("2-"), "{kind}");
        assert_eq!(
            conflicts(db.clone(), "merge-me").await,
            (json!("both"), None),
            "{kind}"
        );
        // No branch is lost: the loser ends in a tombstone.
        let leaves = db
            .open_revs("merge-me", &settee::OpenRevs::All, &ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(leaves.len(), 2, "{kind}: {leaves:?}");
        assert!(
            leaves.iter().any(|l| l["ok"]["_deleted"] == json!(true)),
            "{kind}"
        );
        let _ = ours;
        let (ours, _) = conflicted(&db, "keep-me").await;
        let kept = db
            .resolve_conflict("keep-me", Resolution::Keep(ours.parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(kept.to_string(), ours, "{kind}");
        assert_eq!(
            conflicts(db.clone(), "keep-me").await,
            (json!("ours"), None),
            "{kind}"
        );
        // Keeping a revision that is not a live leaf is a conflict, and changes nothing.
        let err = db
            .resolve_conflict("keep-me", Resolution::Keep(theirs.parse().unwrap()))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{kind}: {err}");
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_answer_is_unauthorized() {
    let server = TestServer::get();
    let Some(user) = server.user() else {
        panic!("the test server has no admin user: unauthorized cannot be checked");
    };
    let url = server
        .url()
        .replacen("://", &format!("://{user}:definitely-wrong@"), 1)
        + "/_users";
    let db = settee::Remote::new(&url).unwrap();
    let err = db.get("x", &ReadOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), settee::ErrorKind::Unauthorized, "{err}");
    assert!(!err.to_string().contains("definitely-wrong"), "{err}");
    let _: Value = json!(null);
}
