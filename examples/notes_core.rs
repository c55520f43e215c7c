//! The core of a notes service, written as an application developer writes it, with the
//! `settee` facade only: typed notes with an image attachment, a Mango index and a sorted
//! query, a live sync with a CouchDB database, per-note sync badges, a conflict made on
//! purpose and merged as `Note`, and an offline error told apart from the others.
//!
//! ```text
//! cargo run --example notes_core -- http://127.0.0.1:5984/notes-example admin
//! ```
//!
//! The database URL, user and password come from the arguments (`URL [USER [PASSWORD]]`) or
//! from `SETTEE_EXAMPLE_URL`, `SETTEE_EXAMPLE_USER` and `SETTEE_EXAMPLE_PASSWORD` (better for
//! a password: it stays out of the process list). The example reads the environment; the
//! library never does. The database is created when missing, and destroyed at the end if the
//! example created it. Every step checks its outcome: the program exits non-zero on anything
//! unexpected, which is how `tests/notes_core.rs` runs it.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use settee::replicate::Direction;
use settee::{
    AttachmentUpload, Doc, Documents, Event, FindRequest, Local, ReadOptions, Remote,
    ReplicateOptions, RetryPolicy, Selector, Sort, SyncState,
};

/// A note, as the application knows it. Attachments and other `_` members are the
/// document's, kept by [`Doc`] beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    title: String,
    body: String,
    tags: Vec<String>,
    /// When the note was last edited, in the application's clock (seconds).
    updated_at: u64,
}

/// The smallest PNG there is (one transparent pixel): the note's image.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// How long the live sync may take to catch up before the example calls it a hang.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> AnyResult<()> {
    let config = Config::from_args_or_env()?;
    let dir = tempfile::tempdir()?;
    let notes = Local::open(dir.path().join("notes.settee"))?;
    let mut server = Remote::builder(&config.url);
    if let Some((user, password)) = &config.credentials {
        server = server.credentials(user, password);
    }
    let server = server.build()?;
    let created = !server.exists().await?;
    if created {
        server.create().await?;
    }
    println!(
        "local store {}, server database {}",
        notes.path().display(),
        server.url()
    );

    attachment_survives_a_typed_edit(&notes).await?;
    index_and_query(&notes).await?;
    live_sync_until_caught_up(&notes, &server).await?;
    badges(&notes, &server).await?;
    conflict_merged_as_note(&notes, &server).await?;
    // The same query on the server, by the same generic code, now that both sides hold the
    // same notes: the index synced with them (it is a design document).
    let on_server = newest_tagged(&server, "work").await?;
    assert_eq!(on_server, newest_tagged(&notes, "work").await?);
    assert_eq!(on_server, ["roadmap 2025", "standup"]);
    println!("the server answers the query alike: {on_server:?}");
    offline_error_by_kind(&notes).await?;

    if created {
        server.destroy().await?;
        println!("destroyed {}", server.url());
    }
    notes.destroy().await?;
    println!("notes core: every step as expected");
    Ok(())
}

/// Where the server is, from the arguments or the environment.
struct Config {
    url: String,
    credentials: Option<(String, String)>,
}

impl Config {
    fn from_args_or_env() -> AnyResult<Config> {
        let mut args = std::env::args().skip(1);
        let mut arg_or_env = |var: &str| args.next().or_else(|| std::env::var(var).ok());
        let url = arg_or_env("SETTEE_EXAMPLE_URL")
            .ok_or("usage: notes_core DATABASE_URL [USER [PASSWORD]] (or SETTEE_EXAMPLE_URL)")?;
        let user = arg_or_env("SETTEE_EXAMPLE_USER");
        let password = arg_or_env("SETTEE_EXAMPLE_PASSWORD");
        Ok(Config {
            url,
            credentials: user.map(|u| (u, password.unwrap_or_default())),
        })
    }
}

fn note(title: &str, tags: &[&str], updated_at: u64) -> Note {
    Note {
        title: title.into(),
        body: format!("the body of {title}"),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        updated_at,
    }
}

/// An attachment's bytes, read to the end.
async fn attachment_bytes<D: Documents>(db: &D, id: &str, name: &str) -> AnyResult<Vec<u8>> {
    let mut att = db.get_attachment(id, name, None).await?;
    let mut data = Vec::new();
    while let Some(chunk) = att.body.next().await {
        data.extend_from_slice(&chunk?);
    }
    Ok(data)
}

/// Writes three notes, gives the first an image, then edits it through `Doc<Note>` alone: the
/// image is still there.
async fn attachment_survives_a_typed_edit(notes: &Local) -> AnyResult<()> {
    let first = notes
        .put_doc(&Doc::new("note:1", note("groceries", &["home"], 1)))
        .await?;
    notes
        .put_doc(&Doc::new("note:2", note("standup", &["work"], 2)))
        .await?;
    notes
        .put_doc(&Doc::new("note:3", note("roadmap", &["work", "plans"], 3)))
        .await?;
    let image =
        AttachmentUpload::from_bytes("image.png", "image/png", Bytes::from_static(PIXEL_PNG));
    let with_image = notes
        .put_attachment("note:1", first.rev.as_ref(), image)
        .await?;
    println!("note:1 has image.png at {with_image}");

    let mut doc: Doc<Note> = notes.get_doc("note:1").await?;
    doc.body.title = "groceries for the weekend".into();
    doc.body.updated_at = 4;
    let edited = notes.put_doc(&doc).await?;
    println!("note:1 edited as a Note at {}", rev_of(&edited));
    assert_eq!(
        attachment_bytes(notes, "note:1", "image.png").await?,
        PIXEL_PNG,
        "a typed edit must keep the note's image"
    );
    Ok(())
}

fn rev_of<T>(doc: &Doc<T>) -> String {
    doc.rev
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// The titles of the notes tagged `tag`, newest first (a Mango query sorted on the index).
async fn newest_tagged<D: Documents>(db: &D, tag: &str) -> AnyResult<Vec<String>> {
    let req = FindRequest {
        selector: Selector::parse(&json!({
            "updated_at": {"$gt": 0},
            "tags": {"$elemMatch": {"$eq": tag}},
        }))?,
        sort: Sort::desc(["updated_at"])?,
        ..Default::default()
    };
    let found = db.find_docs::<Note>(&req).await?;
    Ok(found.docs.into_iter().map(|d| d.body.title).collect())
}

/// An index on `updated_at`, and the work notes newest first through it.
async fn index_and_query(notes: &Local) -> AnyResult<()> {
    let index =
        json!({"index": {"fields": ["updated_at"]}, "ddoc": "by-time", "name": "updated_at"});
    let created = notes.create_index(&index).await?;
    println!("index: {created:?}");
    let titles = newest_tagged(notes, "work").await?;
    println!("work notes, newest first: {titles:?}");
    assert_eq!(titles, ["roadmap", "standup"]);
    Ok(())
}

/// A live sync with the server, its events printed with the ids they carried, stopped once
/// both directions are caught up and the push has carried every local document.
async fn live_sync_until_caught_up(notes: &Local, server: &Remote) -> AnyResult<()> {
    let expected: BTreeSet<String> = ["_design/by-time", "note:1", "note:2", "note:3"]
        .map(String::from)
        .into();
    let opts = ReplicateOptions {
        continuous: true,
        ..Default::default()
    };
    let mut sync = notes.sync(server, opts);
    let mut pushed = BTreeSet::new();
    let mut paused = BTreeSet::new();
    let caught_up = tokio::time::timeout(CATCH_UP_DEADLINE, async {
        while let Some(event) = sync.next().await {
            match &event {
                Event::Change { direction, ids, .. } => {
                    println!("sync {direction:?}: wrote {ids:?}");
                    if *direction == Direction::Push {
                        pushed.extend(ids.iter().cloned());
                    }
                }
                Event::Paused { direction, .. } => {
                    println!("sync {direction:?}: caught up");
                    paused.insert(format!("{direction:?}"));
                }
                Event::Error {
                    direction,
                    message,
                    retrying,
                    ..
                } => {
                    println!("sync {direction:?}: error {message} (retrying: {retrying})");
                    if !retrying {
                        return false;
                    }
                }
                _ => {}
            }
            if paused.len() == 2 && pushed.is_superset(&expected) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        caught_up,
        Ok(true),
        "the live sync must push {expected:?} and catch up (pushed {pushed:?})"
    );
    sync.cancel();
    let summary = sync.finish().await?;
    println!(
        "live sync stopped: pushed {}, pulled {}",
        summary.push.stats.docs_written, summary.pull.stats.docs_written
    );
    Ok(())
}

/// The badges a notes list shows: each note's sync state, and the store's counts.
async fn badges(notes: &Local, server: &Remote) -> AnyResult<()> {
    for id in ["note:1", "note:2", "note:3"] {
        let state = notes.sync_state(server, id).await?;
        println!(
            "badge {id}: {}",
            state.as_ref().map_or("none", SyncState::name)
        );
        assert_eq!(state, Some(SyncState::Synced), "{id} after the sync");
    }
    let mut draft = notes.get_doc::<Note>("note:2").await?;
    draft.body.body.push_str(", edited offline");
    draft.body.updated_at = 5;
    let draft = notes.put_doc(&draft).await?;
    let state = notes.sync_state(server, "note:2").await?;
    println!("badge note:2 after an edit: {state:?}");
    assert_eq!(
        state,
        Some(SyncState::Unpushed {
            revs: draft.rev.into_iter().collect()
        })
    );
    let status = notes.status(server).await?;
    println!(
        "status: {} unpushed, {} rejected, {:?} unpulled",
        status.local.unpushed, status.local.rejected, status.unpulled
    );
    assert_eq!(
        (
            status.local.unpushed,
            status.local.rejected,
            status.unpulled
        ),
        (1, 0, Some(0))
    );
    Ok(())
}

/// One one-shot sync, which must succeed.
async fn sync_once(notes: &Local, server: &Remote) -> AnyResult<()> {
    let summary = notes
        .sync(server, ReplicateOptions::default())
        .finish()
        .await?;
    println!(
        "one-shot sync: pushed {}, pulled {}",
        summary.push.stats.docs_written, summary.pull.stats.docs_written
    );
    Ok(())
}

/// The same note edited on the server and here, then synced: a conflict, read as `Note`s
/// and merged into one.
async fn conflict_merged_as_note(notes: &Local, server: &Remote) -> AnyResult<()> {
    sync_once(notes, server).await?;
    let mut theirs: Doc<Note> = server.get_doc("note:3").await?;
    theirs.body.tags.push("from-the-web".into());
    theirs.body.updated_at = 6;
    server.put_doc(&theirs).await?;
    let mut ours: Doc<Note> = notes.get_doc("note:3").await?;
    ours.body.title = "roadmap 2025".into();
    ours.body.updated_at = 7;
    notes.put_doc(&ours).await?;
    sync_once(notes, server).await?;

    let leaves = notes.leaves::<Note>("note:3").await?;
    println!(
        "note:3 is in conflict: {:?}",
        leaves
            .iter()
            .map(|l| (rev_of(l), &l.body.title))
            .collect::<Vec<_>>()
    );
    assert_eq!(leaves.len(), 2, "both edits are leaves");
    let badge = notes.sync_state(server, "note:3").await?;
    assert!(
        matches!(badge, Some(SyncState::Conflicted { .. })),
        "badge {badge:?}"
    );
    // Merge: the newest title, every tag, built on the winner (leaves' first).
    let mut merged = leaves[0].clone();
    let newest = leaves
        .iter()
        .max_by_key(|l| l.body.updated_at)
        .ok_or("a conflict has leaves")?;
    merged.body.title = newest.body.title.clone();
    merged.body.updated_at = newest.body.updated_at + 1;
    let tags: BTreeSet<String> = leaves.iter().flat_map(|l| l.body.tags.clone()).collect();
    merged.body.tags = tags.into_iter().collect();
    let merged = notes.merge_conflict(&merged).await?;
    println!("note:3 merged at {}: {:?}", rev_of(&merged), merged.body);

    let after = notes.leaves::<Note>("note:3").await?;
    assert_eq!(after.len(), 1, "one live leaf after the merge");
    assert_eq!(after[0].body, merged.body);
    assert_eq!(merged.body.title, "roadmap 2025");
    assert_eq!(merged.body.tags, ["from-the-web", "plans", "work"]);

    sync_once(notes, server).await?;
    let on_server = server
        .get_doc_with::<Note>(
            "note:3",
            &ReadOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(
        (&on_server.body, on_server.conflicts.len()),
        (&merged.body, 0),
        "the server has the merge and no conflict"
    );
    assert_eq!(
        notes.sync_state(server, "note:3").await?,
        Some(SyncState::Synced)
    );
    println!("the server has the merged note:3 and no conflict");
    Ok(())
}

/// A server that cannot be reached: the error says offline, which an app shows as "offline"
/// rather than as a failure, and the store still answers.
async fn offline_error_by_kind(notes: &Local) -> AnyResult<()> {
    let port = {
        // A port nothing listens on: bound, then closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let unreachable = Remote::builder(format!("http://127.0.0.1:{port}/notes"))
        .retry(RetryPolicy::none())
        .build()?;
    match unreachable.get_doc::<Note>("note:1").await {
        Err(e) if e.kind() == settee::ErrorKind::Offline => {
            println!("offline, as expected: {e}");
        }
        Err(e) => return Err(format!("expected an offline error, got {} ({e})", e.kind()).into()),
        Ok(doc) => return Err(format!("an unreachable server gave {doc:?}").into()),
    }
    let still_here: Doc<Note> = notes.get_doc("note:1").await?;
    println!(
        "offline, the store still has note:1: {}",
        still_here.body.title
    );
    Ok(())
}
