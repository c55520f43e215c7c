//! Issue 22, the library as an app developer meets it: one test per finding the facade
//! shows, on a local store and on the test server where the finding concerns both. Finding 1
//! (a typed edit keeps the attachments) is `tests/typed_attachments.rs`'s; finding 8 is the
//! lead's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use settee::replicate::Direction;
use settee::{
    AllDocsOptions, AttachmentUpload, ChangesFeed, ChangesRequest, Doc, Documents, Event, Local,
    ReadOptions, Remote, ReplicateOptions, RetryPolicy,
};
use settee_testkit::TestDb;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    title: String,
    tags: Vec<String>,
}

fn note(title: &str) -> Note {
    Note {
        title: title.into(),
        tags: vec![],
    }
}

/// A new database on the test server (deleted when the guard drops), with credentials.
async fn remote(prefix: &str) -> (Remote, TestDb) {
    let guard = TestDb::named(prefix);
    let server = guard.server();
    let (user, password) = server.credentials().unwrap_or_default();
    let db = Remote::builder(guard.url())
        .credentials(user, password)
        .build()
        .unwrap();
    db.create().await.unwrap();
    (db, guard)
}

/// A new local store in a temporary directory (removed when the guard drops).
fn local() -> (Local, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Local::open(dir.path().join("db")).unwrap(), dir)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A leaf written beside document `id`'s as a replication writes it (`new_edits: false`):
/// a conflict. `1-fff…` wins among first revisions on both kinds of database.
const THEIRS: &str = "1-ffffffffffffffffffffffffffffffff";

async fn add_conflicting_leaf(local: Option<&Local>, remote: Option<&TestDb>, id: &str) {
    let doc = json!({"_id": id, "_rev": THEIRS, "title": "theirs", "tags": ["web"]});
    if let Some(local) = local {
        let res = local.store().unwrap().bulk_docs(vec![doc.clone()], false);
        assert!(res.unwrap()[0].error.is_none());
    }
    if let Some(guard) = remote {
        let body = json!({"docs": [doc], "new_edits": false}).to_string();
        let path = format!("/{}/_bulk_docs", guard.name());
        let (status, answer) = guard.server().raw_request("POST", &path, Some(&body));
        assert_eq!(status, 201, "{answer}");
    }
}

// Finding 4: `Local` and `Remote` are types of their own; what both answer is `Documents`.

/// Application code written once: writes three notes, edits one, and reads back what a
/// notes list shows.
async fn notes_list<D: Documents>(db: &D) -> Vec<(String, String, u64)> {
    for (id, title) in [("n1", "one"), ("n2", "two"), ("n3", "three")] {
        db.put_doc(&Doc::new(id, note(title))).await.unwrap();
    }
    let mut two: Doc<Note> = db.get_doc("n2").await.unwrap();
    two.body.title = "two, edited".into();
    db.put_doc(&two).await.unwrap();
    let ids = db.all_docs(&AllDocsOptions::default()).await.unwrap();
    let mut list = Vec::new();
    for row in ids.rows {
        let doc: Doc<Note> = db.get_doc(&row.key).await.unwrap();
        let generation = doc.rev.unwrap().to_string();
        let generation = generation.split('-').next().unwrap().parse().unwrap();
        list.push((doc.id, doc.body.title, generation));
    }
    list
}

#[tokio::test]
async fn issue_22_one_generic_function_runs_on_local_and_remote() {
    let (store, _dir) = local();
    let (server, _guard) = remote("api-generic").await;
    let here = notes_list(&store).await;
    let there = notes_list(&server).await;
    assert_eq!(
        here,
        [
            ("n1".to_owned(), "one".to_owned(), 1),
            ("n2".to_owned(), "two, edited".to_owned(), 2),
            ("n3".to_owned(), "three".to_owned(), 1),
        ]
    );
    assert_eq!(here, there);
}

// Finding 5: calls shaped for a library, not a command line.

async fn read_a_revision_and_delete_it<D: Documents>(db: &D, kind: &str) {
    let first = db.put(json!({"_id": "d", "v": 1})).await.unwrap();
    let first: settee::Rev = first["rev"].as_str().unwrap().parse().unwrap();
    let second = db
        .put(json!({"_id": "d", "_rev": first.to_string(), "v": 2}))
        .await
        .unwrap();
    let second: settee::Rev = second["rev"].as_str().unwrap().parse().unwrap();
    let old = db
        .get(
            "d",
            &ReadOptions {
                rev: Some(first.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (old["v"].as_i64(), old["_rev"].as_str()),
        (Some(1), Some(first.to_string().as_str())),
        "{kind}"
    );
    let stale = db.delete("d", Some(&first)).await.unwrap_err();
    assert!(stale.is_conflict(), "{kind}: {stale}");
    let gone = db.delete("d", Some(&second)).await.unwrap();
    assert!(
        gone["rev"].as_str().unwrap().starts_with("3-"),
        "{kind}: {gone}"
    );
    let err = db.get("d", &ReadOptions::default()).await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: {err}");
}

#[tokio::test]
async fn issue_22_get_at_a_rev_and_delete_with_a_rev_on_both() {
    let (store, _dir) = local();
    read_a_revision_and_delete_it(&store, "local").await;
    let (server, _guard) = remote("api-rev").await;
    read_a_revision_and_delete_it(&server, "remote").await;
}

/// `_all_docs` pages of two ids between `b` and `f`, until a short page.
async fn all_docs_pages<D: Documents>(db: &D) -> Vec<Vec<String>> {
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        db.put(json!({"_id": id})).await.unwrap();
    }
    let mut pages = Vec::new();
    for page in 0.. {
        let opts = AllDocsOptions {
            startkey: Some("b".into()),
            endkey: Some("f".into()),
            limit: Some(2),
            skip: page * 2,
            ..Default::default()
        };
        let rows = db.all_docs(&opts).await.unwrap().rows;
        pages.push(rows.into_iter().map(|r| r.key).collect::<Vec<_>>());
        if pages.last().unwrap().len() < 2 || page > 10 {
            break;
        }
    }
    pages
}

#[tokio::test]
async fn issue_22_all_docs_pages_alike_locally_and_on_the_server() {
    let (store, _dir) = local();
    let (server, _guard) = remote("api-alldocs").await;
    let here = all_docs_pages(&store).await;
    assert_eq!(here, [vec!["b", "c"], vec!["d", "e"], vec!["f"]]);
    assert_eq!(here, all_docs_pages(&server).await);
}

/// The changes feed read two rows at a time to its end: the ids in order.
async fn changes_in_pages<D: Documents>(db: &D) -> Vec<String> {
    for id in ["p1", "p2", "p3", "p4", "p5"] {
        db.put(json!({"_id": id})).await.unwrap();
    }
    let mut req = ChangesRequest {
        limit: Some(2),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for _ in 0..10 {
        let page = db.changes(&req).await.unwrap();
        assert!(page.results.len() <= 2, "{:?}", page.results);
        if page.results.is_empty() {
            return ids;
        }
        ids.extend(page.results.into_iter().map(|c| c.id));
        req.since = Some(page.last_seq);
    }
    panic!("the changes feed did not end: {ids:?}");
}

#[tokio::test]
async fn issue_22_changes_page_to_the_end_on_both() {
    let (store, _dir) = local();
    let (server, _guard) = remote("api-changes").await;
    let here = changes_in_pages(&store).await;
    assert_eq!(here, ["p1", "p2", "p3", "p4", "p5"]);
    // Each document once on the server too; a CouchDB database of several shards gives
    // them in its own order.
    let mut there = changes_in_pages(&server).await;
    there.sort();
    assert_eq!(here, there);
}

#[tokio::test]
async fn issue_22_wrong_password_is_unauthorized_on_first_use() {
    let (_, guard) = remote("api-wrong-password").await;
    let Some((user, _)) = guard.server().credentials() else {
        panic!("this test needs a server with credentials");
    };
    let db = Remote::builder(guard.url())
        .credentials(user, "not the password")
        .build()
        .unwrap(); // nothing sent yet
    let err = db
        .get("anything", &ReadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), settee::ErrorKind::Unauthorized, "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("check the user name and password"),
        "{message}"
    );
    assert!(!message.contains("not the password"), "{message}");
}

/// Set by `issue_22_settee_password_in_the_environment_is_not_read` for the copy of this
/// binary it runs: the database the child checks.
const CHILD_DB: &str = "SETTEE_LIBRARY_API_CHILD_DB";

#[test]
fn issue_22_settee_password_in_the_environment_is_not_read() {
    // The variable is set for a child process (this binary again): setting it in this
    // process would race with the other tests reading the environment.
    let guard = TestDb::create("api-env-password");
    let Some((_, password)) = guard.server().credentials() else {
        panic!("this test needs a server with credentials");
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_with_settee_password_set",
            "--nocapture",
        ])
        .env(CHILD_DB, guard.url_with_user())
        .env("SETTEE_PASSWORD", password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child of `issue_22_settee_password_in_the_environment_is_not_read` (does nothing
/// unless [`CHILD_DB`] is set).
#[tokio::test]
async fn child_reads_with_settee_password_set() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    // `http://admin@host/db`: a user name and no password.
    let err = Remote::new(&url).unwrap().check().await.unwrap_err();
    assert_eq!(
        err.kind(),
        settee::ErrorKind::Unauthorized,
        "Remote::new: {err:?}"
    );
    let db = settee::Db::open(&url).unwrap();
    let err = db.get("x", &ReadOptions::default()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        settee::ErrorKind::Unauthorized,
        "Db::open: {err:?}"
    );
    // The variable does hold the password: asked for, it is used.
    let asked = Remote::builder(&url)
        .password_from_env("SETTEE_PASSWORD")
        .build()
        .unwrap();
    asked.check().await.unwrap();
}

// Finding 6: one way to sync, with consistent retries.

/// A one-shot sync with a server that is not there: the errors each direction reported,
/// and how the sync ended.
async fn sync_with_nobody(store: &Local, port: u16, create_target: bool) -> (Vec<String>, String) {
    let nobody = Remote::builder(format!("http://127.0.0.1:{port}/nobody"))
        .build()
        .unwrap();
    let opts = ReplicateOptions {
        create_target,
        retry: RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        ..Default::default()
    };
    let mut sync = store.sync(&nobody, opts);
    let mut errors = Vec::new();
    let deadline = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = sync.next().await {
            if let Event::Error {
                direction,
                name,
                retrying,
                ..
            } = event
            {
                errors.push(format!("{direction:?} {name} retrying={retrying}"));
            }
        }
    });
    deadline.await.expect("a one-shot sync with nobody ends");
    errors.sort();
    let end = sync.finish().await.unwrap_err();
    (errors, format!("{} {}", end.name(), end))
}

#[tokio::test]
async fn issue_22_one_shot_sync_retries_alike_with_and_without_create_target() {
    let (store, _dir) = local();
    store.put(json!({"_id": "a"})).await.unwrap();
    let port = closed_port();
    let (created_events, created_end) = sync_with_nobody(&store, port, true).await;
    let (plain_events, plain_end) = sync_with_nobody(&store, port, false).await;
    // The same end after the same attempts: the first and two retries.
    assert_eq!(created_end, plain_end);
    assert!(plain_end.contains("after 3 attempts"), "{plain_end}");
    // Each attempt is reported, the last one as not retrying.
    let retried = plain_events
        .iter()
        .filter(|e| e.ends_with("retrying=true"))
        .count();
    let last = plain_events
        .iter()
        .filter(|e| e.ends_with("retrying=false"))
        .count();
    assert!(retried >= 2 && last >= 1, "{plain_events:?}");
    // With `create_target` the attempts to create the target are reported alike.
    let created_retried = created_events
        .iter()
        .filter(|e| e.ends_with("retrying=true"))
        .count();
    assert_eq!(created_retried, 2, "{created_events:?}");
    assert!(
        created_events.iter().any(|e| e.ends_with("retrying=false")),
        "{created_events:?}"
    );
}

#[tokio::test]
async fn issue_22_sync_change_events_list_the_ids_written() {
    let (store, _dir) = local();
    let (server, _guard) = remote("api-sync-ids").await;
    for id in ["mine-1", "mine-2"] {
        store.put(json!({"_id": id})).await.unwrap();
    }
    for id in ["theirs-1", "theirs-2", "theirs-3"] {
        server.put(json!({"_id": id})).await.unwrap();
    }
    let mut sync = store.sync(&server, ReplicateOptions::default());
    let (mut pushed, mut pulled) = (BTreeSet::new(), BTreeSet::new());
    while let Some(event) = sync.next().await {
        if let Event::Change { direction, ids, .. } = event {
            match direction {
                Direction::Push => pushed.extend(ids),
                Direction::Pull => pulled.extend(ids),
            }
        }
    }
    sync.finish().await.unwrap();
    assert_eq!(
        pushed,
        BTreeSet::from(["mine-1".to_owned(), "mine-2".to_owned()])
    );
    assert_eq!(
        pulled,
        ["theirs-1", "theirs-2", "theirs-3"]
            .map(String::from)
            .into()
    );
}

// Finding 7: typed reads all the way.

async fn typed_conflict_round<D: Documents>(db: &D, kind: &str) {
    let ours: Doc<Note> = db.get_doc("c").await.unwrap();
    // A given revision, typed: the losing leaf.
    let leaves = db.leaves::<Note>("c").await.unwrap();
    assert_eq!(
        leaves
            .iter()
            .map(|l| l.rev.clone().unwrap().to_string())
            .collect::<Vec<_>>()[0],
        THEIRS,
        "{kind}: the winner first"
    );
    assert_eq!(leaves[0].rev, ours.rev, "{kind}: get_doc reads the winner");
    assert_eq!(leaves.len(), 2, "{kind}");
    let loser = db
        .get_doc_with::<Note>(
            "c",
            &ReadOptions {
                rev: leaves[1].rev.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(loser.body, note("ours"), "{kind}");
    let mut merged = leaves[0].clone();
    merged.body.title = "merged".into();
    merged.body.tags.push("local".into());
    let merged = db.merge_conflict(&merged).await.unwrap();
    let after = db.leaves::<Note>("c").await.unwrap();
    assert_eq!(after.len(), 1, "{kind}: one live leaf");
    assert_eq!(
        (&after[0].body, &after[0].rev),
        (&merged.body, &merged.rev),
        "{kind}"
    );
    assert_eq!(merged.body.tags, ["web", "local"], "{kind}");
}

#[tokio::test]
async fn issue_22_conflict_read_as_leaves_and_merged_as_t_on_both() {
    let (store, _dir) = local();
    store.put_doc(&Doc::new("c", note("ours"))).await.unwrap();
    add_conflicting_leaf(Some(&store), None, "c").await;
    typed_conflict_round(&store, "local").await;

    let (server, guard) = remote("api-conflict").await;
    server.put_doc(&Doc::new("c", note("ours"))).await.unwrap();
    add_conflicting_leaf(None, Some(&guard), "c").await;
    typed_conflict_round(&server, "remote").await;
    // The server itself says so: one live leaf.
    let (_, body) =
        guard
            .server()
            .raw_request("GET", &format!("/{}/c?open_revs=all", guard.name()), None);
    let leaves: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let live = leaves
        .iter()
        .filter(|l| l["ok"]["_deleted"] != json!(true))
        .count();
    assert_eq!(live, 1, "{body}");
}

async fn typed_delete_attachments_and_changes<D: Documents>(db: &D, kind: &str) {
    let kept = db.put_doc(&Doc::new("k", note("kept"))).await.unwrap();
    let doomed = db.put_doc(&Doc::new("x", note("doomed"))).await.unwrap();
    let mut edited = doomed.clone();
    edited.body.title = "doomed, edited".into();
    let edited = db.put_doc(&edited).await.unwrap();
    let stale = db.delete_doc(&doomed).await.unwrap_err();
    assert!(stale.is_conflict(), "{kind}: a stale rev: {stale:?}");
    let tombstone = db.delete_doc(&edited).await.unwrap();
    assert!(tombstone.to_string().starts_with("3-"), "{kind}");
    let err = db.get_doc::<Note>("x").await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: {err:?}");

    let upload = |name: &str| {
        AttachmentUpload::from_bytes(name, "text/plain", bytes::Bytes::from(name.to_owned()))
    };
    let rev = db
        .put_attachment("k", kept.rev.as_ref(), upload("a.txt"))
        .await
        .unwrap();
    let rev = db
        .put_attachment("k", Some(&rev), upload("b.txt"))
        .await
        .unwrap();
    let rev = db.remove_attachment("k", &rev, "a.txt").await.unwrap();
    assert!(rev.to_string().starts_with("4-"), "{kind}");
    let err = db.get_attachment("k", "a.txt", None).await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: {err}");
    let mut b = db.get_attachment("k", "b.txt", None).await.unwrap();
    assert_eq!(
        b.body.next().await.unwrap().unwrap().as_ref(),
        b"b.txt",
        "{kind}"
    );
    let err = db.remove_attachment("k", &rev, "a.txt").await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: removing it twice: {err}");

    let changes: Vec<_> = db
        .changes_docs::<Note>(ChangesFeed::default())
        .try_collect()
        .await
        .unwrap();
    let mut seen: Vec<_> = changes
        .iter()
        .map(|c| (c.id.as_str(), c.doc.as_ref().map(|d| d.body.title.as_str())))
        .collect();
    // In id order: a CouchDB database of several shards gives changes in its own order.
    seen.sort();
    assert_eq!(seen, [("k", Some("kept")), ("x", None)], "{kind}");
}

#[tokio::test]
async fn issue_22_typed_delete_attachment_removal_and_typed_changes_on_both() {
    let (store, _dir) = local();
    typed_delete_attachments_and_changes(&store, "local").await;
    let (server, _guard) = remote("api-typed").await;
    typed_delete_attachments_and_changes(&server, "remote").await;
}

#[tokio::test]
async fn issue_22_local_destroy_removes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone");
    let store = Local::open(&path).unwrap();
    store.put(json!({"_id": "a"})).await.unwrap();
    assert!(path.exists());
    store.destroy().await.unwrap();
    assert!(!path.exists(), "{} is still there", path.display());
    let reopened = Local::builder(&path).create(false).open().unwrap_err();
    assert_eq!(reopened.name(), "not_found", "{reopened}");
}

#[tokio::test]
async fn issue_22_remote_create_and_destroy() {
    let guard = TestDb::named("api-create");
    let (user, password) = guard.server().credentials().unwrap_or_default();
    let db = Remote::builder(guard.url())
        .credentials(user, password)
        .build()
        .unwrap();
    assert!(!db.exists().await.unwrap());
    db.create().await.unwrap();
    assert!(db.exists().await.unwrap());
    let again = db.create().await.unwrap_err();
    assert_eq!(again.name(), "file_exists", "{again}");
    db.destroy().await.unwrap();
    assert!(!db.exists().await.unwrap());
    let (status, _) = guard
        .server()
        .raw_request("GET", &format!("/{}", guard.name()), None);
    assert_eq!(status, 404);
}

// Issue 23: a local store's attachment write streams into the store's chunks; a stream
// that does not give the length it announced writes nothing.

#[tokio::test]
async fn a_local_attachment_streams_in_and_out_and_a_wrong_length_writes_nothing() {
    let (store, _dir) = local();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let rev = store
        .put_attachment_from(
            "n",
            None,
            "big.bin",
            "application/octet-stream",
            std::io::Cursor::new(bytes.clone()),
            Some(bytes.len() as u64),
        )
        .await
        .unwrap();
    let att = store.get_attachment("n", "big.bin", None).await.unwrap();
    assert_eq!(att.length, Some(bytes.len() as u64));
    let chunks: Vec<bytes::Bytes> = att.body.try_collect().await.unwrap();
    assert!(
        chunks.len() > 1,
        "read in one piece: {} chunk(s)",
        chunks.len()
    );
    assert!(chunks.iter().all(|c| c.len() <= settee::store::CHUNK_SIZE));
    assert_eq!(chunks.concat(), bytes);

    // Announced 10 bytes more than the stream gives: refused, and the document is as it was.
    let err = store
        .put_attachment_from(
            "n",
            Some(&rev),
            "short.bin",
            "application/octet-stream",
            std::io::Cursor::new(vec![1u8; 100]),
            Some(110),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), settee::ErrorKind::BadRequest, "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    let doc = store.get("n", &Default::default()).await.unwrap();
    assert_eq!(doc["_rev"], rev.to_string());
    assert!(doc["_attachments"].get("short.bin").is_none(), "{doc}");
}
