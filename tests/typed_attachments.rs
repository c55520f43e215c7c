//! Issue 22, finding 1: a typed read-modify-write (`get_doc::<T>`, edit, `put_doc`) keeps
//! the document's attachments although `T` has no field for them, on a local store and on
//! the test server, and a sync after such an edit keeps the attachment on the server. What
//! the server holds is read from the server itself (its JSON and the attachment's bytes).

#![allow(clippy::unwrap_used)]

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use settee::store::attachment_digest;
use settee::{AttachmentStub, AttachmentUpload, Doc, Documents, ReadOptions, Rev};
use settee_testkit::{TestDb, TestServer};

/// A note as an app types it: no attachment field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    title: String,
}

const IMAGE: &[u8] = b"\x89PNG\r\n\x1a\n not really an image";

fn note(title: &str) -> Note {
    Note {
        title: title.into(),
    }
}

/// Adds `image.png` to `id` on top of `rev`.
async fn attach(db: &impl settee::Documents, id: &str, rev: &Rev) -> Rev {
    let chunks = futures::stream::iter([Ok(bytes::Bytes::from_static(IMAGE))]);
    let upload = AttachmentUpload {
        name: "image.png".into(),
        content_type: "image/png".into(),
        length: IMAGE.len() as u64,
        body: Box::pin(chunks),
        encoding: None,
    };
    db.put_attachment(id, Some(rev), upload).await.unwrap()
}

/// The bytes of `id`'s `image.png` as the database serves them, or its error's name.
async fn image(db: &impl settee::Documents, id: &str) -> Result<Vec<u8>, String> {
    let att = db
        .get_attachment(id, "image.png", None)
        .await
        .map_err(|e| e.name().to_owned())?;
    let chunks: Vec<bytes::Bytes> = att.body.try_collect().await.unwrap();
    Ok(chunks.concat())
}

/// The winning revision's JSON as the database itself answers it (stubs, no typed layer).
async fn raw(db: &impl settee::Documents, id: &str) -> Value {
    db.get(id, &ReadOptions::default()).await.unwrap()
}

/// A fresh database on the test server (deleted when the guard drops) and its `Db`.
async fn remote(prefix: &str) -> (settee::Remote, TestDb) {
    let guard = TestDb::create(prefix);
    let db = settee::Remote::new(&TestServer::get().db_url_with_credentials(guard.name())).unwrap();
    (db, guard)
}

fn local(dir: &tempfile::TempDir) -> settee::Local {
    settee::Local::open(dir.path().join("db")).unwrap()
}

/// Writes `note:1` with an image, edits its title through the typed API, and checks the
/// image is still the edited revision's, with the same digest and bytes; then removes it
/// from `Doc::attachments` on purpose, and it is gone.
async fn typed_edit_keeps_image(db: &impl settee::Documents, kind: &str) {
    let first = db
        .put_doc(&Doc::new("note:1", note("draft")))
        .await
        .unwrap();
    let with_image = attach(db, "note:1", first.rev.as_ref().unwrap()).await;
    let before = raw(db, "note:1").await["_attachments"]["image.png"].clone();
    assert_eq!(before["digest"], attachment_digest(IMAGE), "{kind}");

    let mut doc = db.get_doc::<Note>("note:1").await.unwrap();
    let stub = AttachmentStub::new(
        "image/png",
        attachment_digest(IMAGE),
        IMAGE.len() as u64,
        with_image.pos(),
    );
    assert_eq!(doc.attachments.get("image.png"), Some(&stub), "{kind}");
    assert_eq!(doc.attachments.len(), 1, "{kind}");
    assert!(!doc.deleted, "{kind}");
    doc.body.title = "final".into();
    let saved = db.put_doc(&doc).await.unwrap();
    assert_eq!(saved.attachments, doc.attachments, "{kind}");

    let after = raw(db, "note:1").await;
    assert_eq!(
        after["_rev"],
        saved.rev.as_ref().unwrap().to_string(),
        "{kind}"
    );
    assert_eq!(after["title"], "final", "{kind}");
    assert_eq!(
        after["_attachments"]["image.png"], before,
        "{kind}: the typed edit dropped or changed the attachment: {after}"
    );
    assert_eq!(image(db, "note:1").await.as_deref(), Ok(IMAGE), "{kind}");
    let again = db.get_doc::<Note>("note:1").await.unwrap();
    assert_eq!(again.attachments, saved.attachments, "{kind}");

    // Removing the entry removes the attachment, on purpose.
    let mut doc = again;
    doc.attachments.remove("image.png");
    let removed = db.put_doc(&doc).await.unwrap();
    let after = raw(db, "note:1").await;
    assert_eq!(
        after["_rev"],
        removed.rev.as_ref().unwrap().to_string(),
        "{kind}"
    );
    assert_eq!(after.get("_attachments"), None, "{kind}: {after}");
    assert_eq!(
        image(db, "note:1").await,
        Err("not_found".to_owned()),
        "{kind}"
    );

    // A typed deletion, and the tombstone read back by its revision says it is one.
    let mut doc = removed;
    doc.deleted = true;
    let tombstone = db.put_doc(&doc).await.unwrap();
    assert!(
        db.get_doc::<Note>("note:1")
            .await
            .unwrap_err()
            .is_not_found(),
        "{kind}"
    );
    let args = ReadOptions {
        rev: tombstone.rev.clone(),
        ..Default::default()
    };
    let read = Doc::<Value>::from_json(db.get("note:1", &args).await.unwrap()).unwrap();
    assert!(read.deleted, "{kind}: {read:?}");
    assert_eq!(read.rev, tombstone.rev, "{kind}");
}

/// The same through `put_docs`, beside a document without attachments.
async fn typed_bulk_edit_keeps_image(db: &impl settee::Documents, kind: &str) {
    let first = db
        .put_doc(&Doc::new("note:2", note("draft")))
        .await
        .unwrap();
    attach(db, "note:2", first.rev.as_ref().unwrap()).await;
    db.put_doc(&Doc::new("note:3", note("plain")))
        .await
        .unwrap();
    let mut docs: Vec<Doc<Note>> = db
        .get_docs(&["note:2", "note:3"])
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for d in &mut docs {
        d.body.title = "bulk".into();
    }
    let saved: Vec<Doc<Note>> = db
        .put_docs(&docs)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        saved[0].attachments["image.png"].digest,
        attachment_digest(IMAGE),
        "{kind}"
    );
    assert!(saved[1].attachments.is_empty(), "{kind}");
    let after = raw(db, "note:2").await;
    assert_eq!(after["title"], "bulk", "{kind}");
    assert_eq!(
        after["_attachments"]["image.png"]["digest"],
        attachment_digest(IMAGE),
        "{kind}"
    );
    assert_eq!(image(db, "note:2").await.as_deref(), Ok(IMAGE), "{kind}");
}

#[tokio::test]
async fn issue_22_typed_edit_keeps_attachments_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = local(&dir);
    typed_edit_keeps_image(&db, "local").await;
    typed_bulk_edit_keeps_image(&db, "local").await;
}

#[tokio::test]
async fn issue_22_typed_edit_keeps_attachments_on_the_server() {
    let (db, _guard) = remote("typed-att").await;
    typed_edit_keeps_image(&db, "remote").await;
    typed_bulk_edit_keeps_image(&db, "remote").await;
}

/// The data loss as the issue saw it: a typed edit on a device, then a sync: the server
/// must still serve the image, on the edited revision.
#[tokio::test]
async fn issue_22_sync_after_a_typed_edit_keeps_the_image_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let device = local(&dir);
    let (server, _guard) = remote("typed-att-sync").await;
    let first = device
        .put_doc(&Doc::new("note:1", note("draft")))
        .await
        .unwrap();
    attach(&device, "note:1", first.rev.as_ref().unwrap()).await;
    sync_once(&device, &server).await;
    assert_eq!(image(&server, "note:1").await.as_deref(), Ok(IMAGE));

    let mut doc = device.get_doc::<Note>("note:1").await.unwrap();
    doc.body.title = "final".into();
    let saved = device.put_doc(&doc).await.unwrap();
    sync_once(&device, &server).await;

    let on_server = raw(&server, "note:1").await;
    assert_eq!(on_server["_rev"], saved.rev.as_ref().unwrap().to_string());
    assert_eq!(on_server["title"], "final");
    assert_eq!(
        on_server["_attachments"]["image.png"]["digest"],
        attachment_digest(IMAGE),
        "{on_server}"
    );
    assert_eq!(image(&server, "note:1").await.as_deref(), Ok(IMAGE));
}

async fn sync_once(local: &settee::Local, remote: &settee::Remote) {
    let summary = local
        .sync(remote, Default::default())
        .finish()
        .await
        .unwrap();
    assert!(summary.push.stats.docs_written > 0, "{summary:?}");
}
