//! Replication between two local stores: the whole protocol (checkpoints, revs_diff,
//! bulk_get, new_edits=false writes) without a network.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use std::collections::BTreeMap;

use futures::StreamExt;
use settee_replicate::{
    DocFailure, Event, Filter, Peer, ReplicateOptions, Replication, Role, Selector, SyncState,
};
use settee_revtree::{Rev, RevsDiff};
use settee_store::{Database, GetOptions, OpenRevs};
use settee_testkit::peer::{Wrap, Wrapped};

fn store(dir: &tempfile::TempDir, name: &str) -> Database {
    Database::open(dir.path().join(name)).unwrap()
}

/// Every document's `open_revs=all&revs=true` answer, sorted, plus its winner: what two
/// replicas must agree on.
fn snapshot(db: &Database) -> Vec<(String, String, Vec<Value>)> {
    let all = db.all_docs(&Default::default()).unwrap();
    let mut ids: Vec<String> = all.rows.iter().filter_map(|r| r.id.clone()).collect();
    // Deleted documents are not in all_docs: take them from changes.
    for c in db.changes(&Default::default()).unwrap().results {
        if !ids.contains(&c.id) {
            ids.push(c.id);
        }
    }
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let opts = GetOptions {
                revs: true,
                ..Default::default()
            };
            let mut leaves: Vec<Value> = db
                .open_revs(&id, OpenRevs::All, &opts)
                .unwrap()
                .into_iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect();
            leaves.sort_by_key(|v| v.to_string());
            let winner = db
                .get(
                    &id,
                    &GetOptions {
                        deleted_conflicts: true,
                        ..Default::default()
                    },
                )
                .map(|d| d["_rev"].as_str().unwrap().to_owned())
                .unwrap_or_else(|e| format!("deleted:{}", e.name()));
            (id, winner, leaves)
        })
        .collect()
}

/// Writes `n` notes, edits some, deletes some, makes conflicts, adds attachments.
fn populate(db: &Database, n: usize, tag: &str) {
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"_id": format!("note-{i:05}"), "title": format!("{tag} {i}"), "n": i}))
        .collect();
    let res = db.bulk_docs(docs, true).unwrap();
    for (i, r) in res.iter().enumerate() {
        let rev = r.rev.clone().unwrap();
        let id = format!("note-{i:05}");
        match i % 10 {
            0 => {
                db.delete(&id, &rev).unwrap();
            }
            1 => {
                db.put(json!({"_id": id, "_rev": rev.to_string(), "title": "edited", "n": i}))
                    .unwrap();
            }
            2 => {
                // A conflicting branch, as if replicated from elsewhere.
                db.bulk_docs(
                    vec![json!({"_id": id, "_rev": format!("2-{tag}conflict{i}"),
                        "_revisions": {"start": 2, "ids": [format!("{tag}conflict{i}"), rev.hash()]},
                        "title": "theirs"})],
                    false,
                )
                .unwrap();
            }
            3 => {
                db.put(
                    json!({"_id": id, "_rev": rev.to_string(), "title": "with file",
                    "_attachments": {"file.txt": {"content_type": "text/plain",
                        "data": "aGVsbG8gd29ybGQ="}}}),
                )
                .unwrap();
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn one_shot_copies_every_branch_and_resumes_from_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    populate(&a, 300, "x");

    let opts = ReplicateOptions {
        batch_size: 37,
        ..Default::default()
    };
    let first = Replication::new(a.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(first.stats.changes_read, 300);
    assert!(first.stats.docs_written >= 300);
    assert_eq!(first.stats.doc_write_failures, 0);
    assert_eq!(snapshot(&a), snapshot(&b));
    // Attachments arrive with their data.
    let doc = b
        .get(
            "note-00003",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_attachments"]["file.txt"]["data"], "aGVsbG8gd29ybGQ=");

    // Nothing changed: the second run reads nothing.
    let again = Replication::new(a.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(again.stats.changes_read, 0);
    assert_eq!(again.stats.docs_written, 0);
    assert_eq!(again.start_last_seq, first.end_last_seq);

    // New writes: only they are read.
    a.put(json!({"_id": "late", "v": 1})).unwrap();
    let third = Replication::new(a.clone(), b.clone(), opts)
        .run()
        .await
        .unwrap();
    assert_eq!(third.stats.changes_read, 1);
    assert_eq!(third.stats.docs_written, 1);
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[tokio::test]
async fn conflicting_offline_edits_end_as_the_same_conflict_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    let rev = a
        .put(json!({"_id": "shared", "text": "v1"}))
        .unwrap()
        .rev
        .unwrap();
    Replication::new(a.clone(), b.clone(), Default::default())
        .run()
        .await
        .unwrap();
    // Both edit 1-x while apart.
    a.put(json!({"_id": "shared", "_rev": rev.to_string(), "text": "from a"}))
        .unwrap();
    b.put(json!({"_id": "shared", "_rev": rev.to_string(), "text": "from b"}))
        .unwrap();
    let s = settee_replicate::sync(
        a.clone(),
        b.clone(),
        Default::default(),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    // Each direction moves the other side's edit. A revision can be counted twice when the
    // source changes under a running replication (the pull writes into the push's source,
    // which then lists the document again while its first write is still in flight): the
    // second write is a no-op, so only the count can differ, never the data.
    assert!(
        (1..=2).contains(&s.push.stats.docs_written),
        "{:?}",
        s.push.stats
    );
    assert!(
        (1..=2).contains(&s.pull.stats.docs_written),
        "{:?}",
        s.pull.stats
    );
    let opts = GetOptions {
        conflicts: true,
        ..Default::default()
    };
    let (da, db_) = (
        a.get("shared", &opts).unwrap(),
        b.get("shared", &opts).unwrap(),
    );
    assert_eq!(da, db_);
    assert_eq!(da["_conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[tokio::test]
async fn stub_the_target_refuses_is_fetched_again_with_its_data() {
    // The target's `2-a` is another replica's copy of that revision, without "a.bin" (a
    // replicated write stores what it is given). The source rightly sends "a.bin", unchanged
    // since `2-a`, as a stub; the target refuses it (`missing_stub`), and the replicator
    // fetches `3-a` again with the attachment's data, as CouchDB's replicator does.
    let dir = tempfile::tempdir().unwrap();
    let (src, tgt) = (store(&dir, "src"), store(&dir, "tgt"));
    let data = "AAECAwQFBgc=";
    src.bulk_docs(
        vec![json!({"_id": "d", "_revisions": {"start": 3, "ids": ["a3", "a2", "x"]},
            "_attachments": {"a.bin": {"content_type": "application/octet-stream", "data": data, "revpos": 2}}})],
        false,
    )
    .unwrap();
    tgt.bulk_docs(
        vec![
            json!({"_id": "d", "_revisions": {"start": 2, "ids": ["a2", "x"]}, "v": "other copy"}),
        ],
        false,
    )
    .unwrap();
    let summary = Replication::new(src.clone(), tgt.clone(), ReplicateOptions::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        summary.stats.doc_write_failures, 0,
        "{:?}",
        summary.doc_failures
    );
    assert_eq!(summary.stats.docs_written, 1);
    let got = tgt
        .get(
            "d",
            &GetOptions {
                attachments: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(got["_rev"], "3-a3");
    assert_eq!(got["_attachments"]["a.bin"]["data"], data);
    assert_eq!(got["_attachments"]["a.bin"]["revpos"], 2);
}

#[tokio::test]
async fn doc_ids_and_selector_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (store(&dir, "a"), store(&dir, "b"), store(&dir, "c"));
    for i in 0..50 {
        a.put(json!({"_id": format!("d{i:02}"), "kind": if i % 2 == 0 { "even" } else { "odd" }, "i": i}))
            .unwrap();
    }
    let ids = Filter::DocIds(vec!["d03".into(), "d07".into(), "nope".into()]);
    let r = Replication::new(
        a.clone(),
        b.clone(),
        ReplicateOptions {
            filter: ids,
            ..Default::default()
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(r.stats.docs_written, 2);
    assert_eq!(b.info().unwrap().doc_count, 2);

    let sel = Selector::parse(&json!({"kind": "even", "i": {"$gte": 40}})).unwrap();
    let r = Replication::new(
        a.clone(),
        c.clone(),
        ReplicateOptions {
            filter: Filter::Selector(sel),
            batch_size: 4,
            ..Default::default()
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(r.stats.docs_written, 5); // 40, 42, 44, 46, 48
    let got: Vec<String> = c
        .all_docs(&Default::default())
        .unwrap()
        .rows
        .into_iter()
        .filter_map(|r| r.id)
        .collect();
    assert_eq!(got, ["d40", "d42", "d44", "d46", "d48"]);
}

#[tokio::test]
async fn continuous_follows_new_writes_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    a.put(json!({"_id": "before"})).unwrap();
    let mut handle = Replication::new(
        a.clone(),
        b.clone(),
        ReplicateOptions {
            continuous: true,
            checkpoint_interval: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .spawn();
    // Caught up: a Paused event with nothing pending.
    loop {
        match handle.next_event().await.unwrap() {
            Event::Paused { pending, .. } => {
                assert_eq!(pending, Some(0));
                break;
            }
            Event::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert!(b.get("before", &Default::default()).is_ok());
    a.put(json!({"_id": "after"})).unwrap();
    // Wait for the Change event that counts "after", not for "after" in the store: the
    // store shows it a moment before the replication takes that batch's result, and a
    // cancel in between leaves the batch uncounted and outside the final checkpoint (by
    // design: the next run writes it again), which made this test flaky on a busy machine.
    let counted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match handle.next_event().await {
                Some(Event::Change { stats, .. }) if stats.docs_written == 2 => return,
                Some(Event::Error { message, .. }) => panic!("{message}"),
                Some(_) => {}
                None => panic!("the replication ended before writing \"after\""),
            }
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "no Change event counted \"after\" within 30 s"
    );
    assert!(b.get("after", &Default::default()).is_ok());
    handle.cancel();
    let summary = handle.finish().await.unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.stats.docs_written, 2);
    // The final checkpoint lets the next run start after "after".
    let next = Replication::new(a, b, Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(next.stats.changes_read, 0);
}

#[tokio::test]
async fn lost_target_checkpoint_falls_back_to_zero_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    populate(&a, 40, "y");
    let rep = Replication::new(a.clone(), b.clone(), Default::default());
    let id = rep.replication_id().await.unwrap();
    rep.run().await.unwrap();
    let cp = b.get_local(&id).unwrap();
    b.delete_local(&id, cp["_rev"].as_str().unwrap()).unwrap();
    let again = Replication::new(a.clone(), b.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        again.stats.changes_read, 40,
        "no common checkpoint: starts from 0"
    );
    assert_eq!(
        again.stats.docs_written, 0,
        "but the target already had every revision"
    );
    assert_eq!(snapshot(&a), snapshot(&b));
}

async fn unsynced_ids(a: &Database, b: &Database) -> Vec<String> {
    settee_replicate::unsynced(a, b)
        .map(|r| r.unwrap().0)
        .collect()
        .await
}

#[tokio::test]
async fn status_counts_exactly_what_the_other_store_lacks_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    for i in 0..10 {
        a.put(json!({"_id": format!("p{i}")})).unwrap();
    }
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!((st.unpushed, st.rejected), (10, 0));
    assert!(st.last_push.is_none());
    settee_replicate::sync(
        a.clone(),
        b.clone(),
        Default::default(),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    // Both ways: nothing unpushed from either side.
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!((st.unpushed, st.rejected, st.not_replicated), (0, 0, 0));
    assert!(st.last_push.is_some() && st.last_pull.is_some());
    assert_eq!(settee_replicate::unpulled(&a, &b).await.unwrap(), 0);
    assert_eq!(settee_replicate::status(&b, &a).await.unwrap().unpushed, 0);
    // One edit on each side: 1 and 1.
    let rev = a.get("p3", &GetOptions::default()).unwrap()["_rev"].clone();
    a.put(json!({"_id": "p3", "_rev": rev, "v": 2})).unwrap();
    b.put(json!({"_id": "from-b"})).unwrap();
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!(st.unpushed, 1);
    assert_eq!(unsynced_ids(&a, &b).await, ["p3"]);
    assert_eq!(settee_replicate::unpulled(&a, &b).await.unwrap(), 1);
    assert_eq!(
        settee_replicate::sync_state(&a, &b, "p3")
            .await
            .unwrap()
            .unwrap()
            .name(),
        "unpushed"
    );
    assert_eq!(
        settee_replicate::sync_state(&a, &b, "p4").await.unwrap(),
        Some(SyncState::Synced)
    );
    settee_replicate::sync(
        a.clone(),
        b.clone(),
        Default::default(),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(settee_replicate::status(&a, &b).await.unwrap().unpushed, 0);
    assert_eq!(settee_replicate::unpulled(&a, &b).await.unwrap(), 0);
    a.verify().unwrap();
}

/// A one-shot sync of `a` with `b` with `filter`.
async fn sync_with(a: &Database, b: &Database, filter: Filter) {
    let opts = ReplicateOptions {
        filter,
        ..Default::default()
    };
    settee_replicate::sync(a.clone(), b.clone(), opts, None, Default::default())
        .await
        .unwrap();
}

/// Issue 22 finding 8: a Mango index is a design document, so 14 unsynced notes read as 15
/// unpushed; `unpushed_design` says how many of those are design documents.
#[tokio::test]
async fn issue_22_unpushed_says_how_many_are_design_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    let counts = || async {
        let st = settee_replicate::status(&a, &b).await.unwrap();
        (st.unpushed, st.unpushed_design, st.not_replicated)
    };
    // Ids on both sides of `_design/` in id order ('Z' < '_' < 'n').
    for i in 0..7 {
        a.put(json!({"_id": format!("Note{i}"), "kind": "note"}))
            .unwrap();
        a.put(json!({"_id": format!("note{i}"), "kind": "note"}))
            .unwrap();
    }
    a.put(json!({"_id": "_design/idx", "language": "query"}))
        .unwrap();
    a.put_local(json!({"_id": "_local/x"})).unwrap();
    // Never synced (the remote is not registered yet).
    assert_eq!(counts().await, (15, 1, 0));
    sync_with(&a, &b, Filter::All).await;
    assert_eq!(counts().await, (0, 0, 0));
    // Synced before: two new design documents and one new note.
    a.put(json!({"_id": "_design/a"})).unwrap();
    a.put(json!({"_id": "_design/b"})).unwrap();
    a.put(json!({"_id": "note9", "kind": "note"})).unwrap();
    assert_eq!(counts().await, (3, 2, 0));
    // A selector that leaves the design documents out: they are not replicated, not unpushed.
    let notes = Selector::parse(&json!({"kind": "note"})).unwrap();
    sync_with(&a, &b, Filter::Selector(notes)).await;
    assert_eq!(counts().await, (0, 0, 2));
    sync_with(&a, &b, Filter::All).await;
    assert_eq!(counts().await, (0, 0, 0));
}

#[tokio::test]
async fn a_filtered_sync_reports_what_it_excludes_as_not_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    for i in 0..6 {
        a.put(json!({"_id": format!("f{i}"), "kind": if i % 2 == 0 { "note" } else { "draft" }}))
            .unwrap();
    }
    let opts = ReplicateOptions {
        filter: Filter::Selector(Selector::parse(&json!({"kind": "note"})).unwrap()),
        ..Default::default()
    };
    settee_replicate::sync(a.clone(), b.clone(), opts, None, Default::default())
        .await
        .unwrap();
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!((st.unpushed, st.not_replicated), (0, 3));
    assert!(unsynced_ids(&a, &b).await.is_empty());
    assert_eq!(
        settee_replicate::sync_state(&a, &b, "f1").await.unwrap(),
        Some(SyncState::NotReplicated)
    );
    assert_eq!(
        settee_replicate::sync_state(&a, &b, "f0").await.unwrap(),
        Some(SyncState::Synced)
    );
    // A doc_ids sync replaces the filter the pair is synced with.
    let opts = ReplicateOptions {
        filter: Filter::DocIds(vec!["f1".into()]),
        ..Default::default()
    };
    settee_replicate::sync(a.clone(), b.clone(), opts, None, Default::default())
        .await
        .unwrap();
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!((st.unpushed, st.not_replicated), (0, 2));
    assert_eq!(
        settee_replicate::sync_state(&a, &b, "f1").await.unwrap(),
        Some(SyncState::Synced)
    );
    // Unfiltered: everything goes.
    settee_replicate::sync(
        a.clone(),
        b.clone(),
        Default::default(),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    let st = settee_replicate::status(&a, &b).await.unwrap();
    assert_eq!((st.unpushed, st.not_replicated), (0, 0));
}

#[tokio::test]
async fn a_checkpoint_from_before_the_sync_state_is_not_trusted_once() {
    // A store that replicated before it kept sync state (an older build, here a peer that
    // ignores the sync-state hooks) has a checkpoint past its documents: the first run with
    // sync state starts from 0 and confirms them; later runs resume.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    for i in 0..5 {
        a.put(json!({"_id": format!("c{i}")})).unwrap();
    }
    let old_build = Wrapped(CountingDiffs {
        track: false,
        ..CountingDiffs::new(a.clone())
    });
    let first = Replication::new(old_build, b.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(first.stats.changes_read, 5);
    assert!(a.remotes().is_empty());
    assert_eq!(settee_replicate::status(&a, &b).await.unwrap().unpushed, 5);
    let again = Replication::new(a.clone(), b.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(
        again.stats.changes_read, 5,
        "the old checkpoint was not used"
    );
    assert_eq!(again.stats.docs_written, 0);
    assert_eq!(settee_replicate::status(&a, &b).await.unwrap().unpushed, 0);
    let third = Replication::new(a.clone(), b.clone(), Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(third.stats.changes_read, 0, "its own checkpoint resumes");
}

#[tokio::test]
async fn the_sync_state_stream_follows_a_live_push() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    let mut states = Box::pin(settee_replicate::sync_state_changes(&a, &b));
    let handle = Replication::new(
        a.clone(),
        b.clone(),
        ReplicateOptions {
            continuous: true,
            longpoll: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .spawn();
    a.put(json!({"_id": "live"})).unwrap();
    // Unpushed when written (unless the push was quicker than this read), then synced.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.contains(&"synced") {
        assert!(Instant::now() < deadline, "states seen: {seen:?}");
        let next = tokio::time::timeout(Duration::from_secs(20), states.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.0, "live");
        seen.push(next.1.unwrap().name());
    }
    handle.cancel();
    handle.finish().await.unwrap();
    assert!(b.get("live", &GetOptions::default()).is_ok());
}

/// A peer that counts the `_revs_diff` calls made to it and passes everything on (the
/// sync-state hooks only with `track`: without, it is a store as an older build used it).
#[derive(Clone)]
struct CountingDiffs {
    db: Database,
    diffs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    track: bool,
}

impl CountingDiffs {
    fn new(db: Database) -> CountingDiffs {
        CountingDiffs {
            db,
            diffs: Default::default(),
            track: true,
        }
    }

    fn diffs(&self) -> usize {
        self.diffs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Wrap for CountingDiffs {
    type Inner = Database;
    fn inner(&self) -> &Database {
        &self.db
    }
    async fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> settee_replicate::Result<BTreeMap<String, RevsDiff>> {
        self.diffs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Peer::revs_diff(&self.db, revs).await
    }
    async fn write(
        &self,
        docs: Vec<Box<serde_json::value::RawValue>>,
        origin: &str,
    ) -> settee_replicate::Result<Vec<DocFailure>> {
        let origin = if self.track { origin } else { "" };
        Peer::write(&self.db, docs, origin).await
    }
    // Without `track`, every sync-state hook does what a remote's does: nothing.
    async fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::track_peer(&self.db, other, role, filter, rep_id).await
    }
    async fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::record_peer_revs(&self.db, other, held, rejected).await
    }
    async fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::record_peer_lacks(&self.db, other, lacking).await
    }
    async fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::record_failures_from(&self.db, other, listed, failed).await
    }
    async fn failures_from(&self, other: &str) -> settee_replicate::Result<Vec<DocFailure>> {
        if !self.track {
            return Ok(Vec::new());
        }
        Peer::failures_from(&self.db, other).await
    }
    async fn refused_by(&self, other: &str) -> settee_replicate::Result<Vec<DocFailure>> {
        if !self.track {
            return Ok(Vec::new());
        }
        Peer::refused_by(&self.db, other).await
    }
    async fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> settee_replicate::Result<BTreeMap<String, Vec<Rev>>> {
        if !self.track {
            return Ok(BTreeMap::new());
        }
        Peer::not_held_by(&self.db, other, revs).await
    }
    async fn peer_holds_nothing(&self, other: &str) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::peer_holds_nothing(&self.db, other).await
    }
    async fn caught_up(&self, other: &str, role: Role, at: &str) -> settee_replicate::Result<()> {
        if !self.track {
            return Ok(());
        }
        Peer::caught_up(&self.db, other, role, at).await
    }
}

#[tokio::test]
async fn initial_upload_to_an_empty_target_skips_revs_diff_and_later_runs_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir, "a");
    populate(&a, 120, "x");
    let opts = ReplicateOptions {
        batch_size: 25,
        ..Default::default()
    };

    // Empty target: every revision is missing there, so nothing is asked.
    let b = Wrapped(CountingDiffs::new(store(&dir, "b")));
    let first = Replication::new(a.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(b.diffs(), 0);
    assert_eq!(first.stats.missing_checked, first.stats.missing_found);
    assert_eq!(snapshot(&a), snapshot(&b.db));

    // The target now has documents: the next run diffs (and writes only what is new).
    a.put(json!({"_id": "late", "v": 1})).unwrap();
    let second = Replication::new(a.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert!(b.diffs() > 0);
    assert_eq!(second.stats.changes_read, 1);
    assert_eq!(snapshot(&a), snapshot(&b.db));

    // A target that is not empty at the start is diffed from the first batch, and a
    // revision it already has is not written again.
    let c = Wrapped(CountingDiffs::new(store(&dir, "c")));
    let note = a
        .get(
            "note-00004",
            &GetOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    c.db.bulk_docs(vec![note], false).unwrap();
    let third = Replication::new(a.clone(), c.clone(), opts)
        .run()
        .await
        .unwrap();
    assert!(c.diffs() > 0);
    assert_eq!(third.stats.missing_found + 1, third.stats.missing_checked);
    assert_eq!(snapshot(&a), snapshot(&c.db));
}

#[tokio::test]
async fn dropping_the_handle_cancels_and_its_events_are_a_stream() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir, "a"), store(&dir, "b"));
    a.put(json!({"_id": "x"})).unwrap();
    let mut handle = Replication::new(
        a.clone(),
        b.clone(),
        ReplicateOptions {
            continuous: true,
            ..Default::default()
        },
    )
    .spawn();
    // The handle is a stream of events.
    while let Some(event) = handle.next().await {
        if let Event::Paused { .. } = event {
            break;
        }
    }
    let token = handle.cancel_token();
    drop(handle);
    assert!(token.is_cancelled());
    // Stopped: it released the stores' writers and wrote its checkpoint; a new one-shot run
    // finds nothing left to read.
    let next = Replication::new(a, b, Default::default())
        .run()
        .await
        .unwrap();
    assert_eq!(next.stats.changes_read, 0);
}

/// A local peer whose next `fail` writes of a checkpoint recording a source sequence above
/// `past` fail with a transient error, as a checkpoint write through a cut connection does.
/// (The checkpoint a session claims at its start records where it starts from.)
#[derive(Clone)]
struct FailingPutLocal {
    db: Database,
    fail: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    past: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Wrap for FailingPutLocal {
    type Inner = Database;
    fn inner(&self) -> &Database {
        &self.db
    }
    async fn put_local(&self, id: &str, doc: Value) -> settee_replicate::Result<String> {
        use std::sync::atomic::Ordering;
        let recorded = doc["source_last_seq"].as_u64().unwrap_or(0);
        let failing = recorded > self.past.load(Ordering::SeqCst)
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if failing {
            return Err(settee_replicate::Error::Checkpoint {
                peer: Peer::describe(&self.db),
                reason: "connection closed before message completed".into(),
            });
        }
        Peer::put_local(&self.db, id, doc).await
    }
}

/// The cause of `pull_survives_connections_cut_mid_run` failing on a busy machine: a cut
/// connection failed the final checkpoint's write to the source, and that write was not
/// retried, so a run that had written everything ended in an error. It is retried now, and
/// the next run resumes from it.
#[tokio::test]
async fn a_transient_failure_of_the_final_checkpoint_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir, "a");
    populate(&a, 50, "x");
    let source = Wrapped(FailingPutLocal {
        db: a.clone(),
        fail: Default::default(),
        past: Default::default(),
    });
    let opts = ReplicateOptions {
        // No checkpoint while running: the only one is the final one.
        checkpoint_interval: Duration::from_secs(3600),
        retry: settee_replicate::RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retries: 2,
        },
        ..Default::default()
    };
    let b = store(&dir, "b");
    source.fail.store(2, std::sync::atomic::Ordering::SeqCst);
    let summary = Replication::new(source.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(source.fail.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(summary.stats.changes_read, 50);
    let again = Replication::new(source.clone(), b.clone(), opts.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(
        again.stats.changes_read, 0,
        "resumed from the final checkpoint"
    );

    // A failure that persists still ends the run, after the policy's attempts.
    a.put(json!({"_id": "late"})).unwrap();
    source.past.store(50, std::sync::atomic::Ordering::SeqCst);
    source.fail.store(10, std::sync::atomic::Ordering::SeqCst);
    let err = Replication::new(source.clone(), b.clone(), opts)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "gave up after 3 attempts");
    assert_eq!(err.name(), "checkpoint_failure");
}
