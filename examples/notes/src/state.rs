//! Each note's sync badge (synced, waiting to upload, rejected with the server's reason,
//! conflict, local only) and the counts the page shows. What the sync is doing globally
//! (syncing, offline, retrying) is `sync.rs`'s; this module only answers "is this note on
//! the server".
//!
//! The badges are Settee's per-document sync state with the configured server, shown as it
//! is: the app keeps no bookkeeping of its own about what the server has or refused.
//! - one note: `Local::sync_state(remote, id)` (O(1), offline);
//! - every note that is not synced, when a server is set: `Local::unsynced(remote)` (the
//!   cost is in the unsynced notes, not the store), then `Local::sync_state_changes(remote)`,
//!   the store's live stream of per-document changes (a write here, the push confirming or
//!   the server refusing a revision), which a follower task turns into badge changes;
//! - the exact unsynced count: `Local::sync_status(remote)` (one read). The store keeps a
//!   rejection until a later revision is accepted (or the note is deleted here).
//!
//! Conflicts the server already holds are the sync state's `Conflicted`. Without a server
//! (local only), a note's conflict is the store's `_conflicts`; the set of conflicted notes
//! (for the conflict count) is read at start and updated on every change of a note.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use settee::{AllDocsOptions, Documents, Local, ReadOptions, Remote, SyncState};
use tokio::sync::Notify;

use crate::note::ID_PREFIX;
use crate::queries::INDEX_DDOC;
use crate::Result;

/// A note's sync state as the page shows it on the note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Badge {
    /// The server has every revision of the note.
    Synced,
    /// A local change the server does not have yet ("waiting to upload").
    Unpushed,
    /// The server refused the current revision.
    Rejected {
        /// The server's reason (its `validate_doc_update` message, for instance).
        reason: String,
    },
    /// The note has several current versions (edited on two devices while apart).
    Conflict,
    /// No server is configured (or the sync's filter leaves the note out): the note lives
    /// in this store only.
    LocalOnly,
}

impl Badge {
    /// The badge of a note in Settee's sync state `state`.
    pub fn of_state(state: &SyncState) -> Badge {
        match state {
            SyncState::Synced => Badge::Synced,
            SyncState::Unpushed { .. } => Badge::Unpushed,
            SyncState::Rejected { error, reason, .. } => Badge::Rejected {
                reason: if reason.is_empty() {
                    error.clone()
                } else {
                    reason.clone()
                },
            },
            SyncState::Conflicted { .. } => Badge::Conflict,
            SyncState::NotReplicated => Badge::LocalOnly,
            // The server has a version this device could not take: not synced, and why.
            SyncState::PullFailed { error, reason, .. } => Badge::Rejected {
                reason: format!(
                    "not downloaded: {}",
                    if reason.is_empty() { error } else { reason }
                ),
            },
        }
    }
}

/// The counts shown beside the global state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Notes (deletions included) the server does not have: waiting or rejected.
    pub unsynced: usize,
    /// Notes in conflict.
    pub conflicts: usize,
    /// Notes the server refused (their badge is rejected).
    pub rejected: usize,
}

/// What the last sync of a server said, read from the store without a network.
#[derive(Debug, Clone, Default)]
pub struct LastSync {
    /// When the last push checkpoint was written (RFC 3339).
    pub push: Option<String>,
    /// When the last pull checkpoint was written.
    pub pull: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The server.
    remote: Option<Remote>,
    /// Bumped by every [`Tracker::set_remote`]: a follower of an earlier server stops.
    generation: u64,
    /// Notes with several live versions in the store.
    conflicted: HashSet<String>,
    /// Every note that is not synced, with its badge, as published (or about to be).
    sent: BTreeMap<String, Badge>,
    /// Badges changed since the publisher last took them.
    pending: BTreeMap<String, Badge>,
}

impl Inner {
    fn settled(&self) -> Badge {
        if self.remote.is_some() {
            Badge::Synced
        } else {
            Badge::LocalOnly
        }
    }

    /// Takes `badge` as note `id`'s badge now, noting it for the pages if it changed.
    fn set(&mut self, id: &str, badge: Badge) {
        let settled = self.settled();
        if badge == settled {
            if self.sent.remove(id).is_some() {
                self.pending.insert(id.to_owned(), badge);
            }
        } else if self.sent.get(id) != Some(&badge) {
            self.sent.insert(id.to_owned(), badge.clone());
            self.pending.insert(id.to_owned(), badge);
        }
    }
}

/// Gives each note's badge from Settee's sync state, and keeps the badges of the notes that
/// are not synced for the pages (following the store's sync-state stream).
#[derive(Debug)]
pub struct Tracker {
    db: Local,
    inner: Mutex<Inner>,
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Tracker {
    /// Reads the store's conflicted notes (scans the notes).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn open(db: Local) -> Result<Tracker> {
        let all = db
            .all_docs(&AllDocsOptions {
                include_docs: true,
                conflicts: true,
                startkey: Some(ID_PREFIX.to_owned()),
                endkey: Some(format!("{ID_PREFIX}\u{10ffff}")),
                ..Default::default()
            })
            .await?;
        let conflicted = all
            .rows
            .iter()
            .filter_map(|r| r.doc.as_ref())
            .filter(|d| has_conflicts(d))
            .filter_map(|d| d.get("_id")?.as_str().map(str::to_owned))
            .collect();
        Ok(Tracker {
            db,
            inner: Mutex::new(Inner {
                conflicted,
                ..Default::default()
            }),
            follower: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still consistent enough
        // to show badges: recover it instead of failing every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Badges against a new server (or none): reads every note that is not synced with it
    /// (`Local::unsynced`), then follows the store's sync-state changes with it, waking
    /// `changed` whenever badges changed.
    pub async fn set_remote(self: &Arc<Self>, remote: Option<Remote>, changed: Arc<Notify>) {
        if let Some(old) = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            old.abort();
        }
        let generation = {
            let mut inner = self.lock();
            inner.generation += 1;
            inner.generation
        };
        let local = &self.db;
        let Some(remote) = remote else {
            let mut inner = self.lock();
            inner.remote = None;
            let now: BTreeMap<String, Badge> = inner
                .conflicted
                .iter()
                .map(|id| (id.clone(), Badge::Conflict))
                .collect();
            replace(&mut inner, now);
            drop(inner);
            changed.notify_one();
            return;
        };
        let server = &remote;
        // Subscribe before reading what is unsynced: a change in between comes after the
        // snapshot and carries the note's state when it is read, so it repeats or advances.
        let stream = match local.sync_state_changes(server) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "following the notes' sync state");
                return;
            }
        };
        let mut now = BTreeMap::new();
        match local.unsynced(server) {
            Ok(rows) => {
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = rows.next().await {
                    match row {
                        Ok((id, state)) if id.starts_with(ID_PREFIX) => {
                            now.insert(id, Badge::of_state(&state));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the unsynced notes");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the unsynced notes"),
        }
        {
            let mut inner = self.lock();
            if inner.generation != generation {
                return;
            }
            // A conflict the server holds too is not "unsynced": its state is `Conflicted`.
            for id in inner.conflicted.clone() {
                now.entry(id).or_insert(Badge::Conflict);
            }
            inner.remote = Some(remote);
            replace(&mut inner, now);
        }
        changed.notify_one();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut chunks = std::pin::pin!(stream.ready_chunks(500));
            while let Some(chunk) = chunks.next().await {
                {
                    let mut inner = this.lock();
                    if inner.generation != generation {
                        return;
                    }
                    for item in chunk {
                        match item {
                            Ok((id, state)) if id.starts_with(ID_PREFIX) => {
                                let badge = match state {
                                    Some(s) => Badge::of_state(&s),
                                    None => inner.settled(),
                                };
                                inner.set(&id, badge);
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "reading a note's sync state"),
                        }
                    }
                }
                changed.notify_one();
            }
        });
        *self.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// A note changed in the store: re-reads whether it is in conflict (for the conflict
    /// count, and the badge when no server is set).
    ///
    /// # Errors
    /// The store's errors.
    pub async fn note_changed(&self, id: &str) -> Result<()> {
        let conflicted = self.is_conflicted(id).await?;
        let mut inner = self.lock();
        if conflicted {
            inner.conflicted.insert(id.to_owned());
        } else {
            inner.conflicted.remove(id);
        }
        if inner.remote.is_none() {
            let badge = if conflicted {
                Badge::Conflict
            } else {
                Badge::LocalOnly
            };
            inner.set(id, badge);
        }
        Ok(())
    }

    /// The badge of note `id` now, whose document has conflicts (`_conflicts`) or not:
    /// Settee's sync state with the server, or without one, local only or conflict.
    /// One read, offline.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn badge(&self, id: &str, conflicted: bool) -> Result<Badge> {
        let remote = self.lock().remote.clone();
        Ok(match remote {
            Some(remote) => match self.db.sync_state(&remote, id).await? {
                Some(state) => Badge::of_state(&state),
                None => Badge::Synced,
            },
            None if conflicted => Badge::Conflict,
            None => Badge::LocalOnly,
        })
    }

    /// The badge of note `id` now, reading whether it is in conflict.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn badge_of(&self, id: &str) -> Result<Badge> {
        let conflicted = self.is_conflicted(id).await?;
        self.badge(id, conflicted).await
    }

    /// Whether note `id` has several live versions (`false` for a missing or deleted one).
    async fn is_conflicted(&self, id: &str) -> Result<bool> {
        let opts = ReadOptions {
            conflicts: true,
            ..Default::default()
        };
        match self.db.get(id, &opts).await {
            Ok(doc) => Ok(has_conflicts(&doc)),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The badges as published (every note that is not synced), for a page's first update.
    pub fn published(&self) -> BTreeMap<String, Badge> {
        self.lock().sent.clone()
    }

    /// The badges that changed since the last call (a note that became synced is listed as
    /// [`Badge::Synced`]).
    pub fn take_changed(&self) -> BTreeMap<String, Badge> {
        std::mem::take(&mut self.lock().pending)
    }

    /// The counts shown beside the global state, and the last sync's times: the unsynced
    /// count is Settee's `sync_status` with the server (exact, one read), less the app's
    /// index design document when that is what is waiting.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn counts(&self) -> Result<(Counts, LastSync)> {
        let (remote, conflicts, rejected) = {
            let inner = self.lock();
            let rejected = inner
                .sent
                .values()
                .filter(|b| matches!(b, Badge::Rejected { .. }))
                .count();
            (inner.remote.clone(), inner.conflicted.len(), rejected)
        };
        let Some(remote) = remote else {
            return Ok((
                Counts {
                    unsynced: 0,
                    conflicts,
                    rejected: 0,
                },
                LastSync::default(),
            ));
        };
        let status = self
            .db
            .sync_status(&remote)
            .await
            .map_err(|e| crate::Error::Internal(format!("reading the sync status: {e}")))?;
        let ddoc_waits = self
            .db
            .sync_state(&remote, INDEX_DDOC)
            .await?
            .is_some_and(|s| !s.is_synced());
        let unsynced = status.unpushed.saturating_sub(u64::from(ddoc_waits));
        Ok((
            Counts {
                unsynced: usize::try_from(unsynced).unwrap_or(usize::MAX),
                conflicts,
                rejected,
            },
            LastSync {
                push: status.last_push,
                pull: status.last_pull,
            },
        ))
    }
}

/// Makes `now` the published badges, noting every difference for the pages.
fn replace(inner: &mut Inner, now: BTreeMap<String, Badge>) {
    let settled = inner.settled();
    let gone: Vec<String> = inner
        .sent
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        inner.pending.insert(id, settled.clone());
    }
    for (id, badge) in &now {
        if inner.sent.get(id) != Some(badge) {
            inner.pending.insert(id.clone(), badge.clone());
        }
    }
    inner.sent = now;
}

pub(crate) fn has_conflicts(doc: &Value) -> bool {
    doc.get("_conflicts")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Local) {
        let dir = tempfile::tempdir().unwrap();
        let db = Local::open(dir.path().join("s")).unwrap();
        (dir, db)
    }

    #[test]
    fn every_sync_state_has_its_badge() {
        let rev: settee::Rev = "1-a".parse().unwrap();
        assert_eq!(Badge::of_state(&SyncState::Synced), Badge::Synced);
        assert_eq!(
            Badge::of_state(&SyncState::Unpushed {
                revs: vec![rev.clone()]
            }),
            Badge::Unpushed
        );
        assert_eq!(
            Badge::of_state(&SyncState::Rejected {
                rev: rev.clone(),
                error: "forbidden".into(),
                reason: "no".into()
            }),
            Badge::Rejected {
                reason: "no".into()
            }
        );
        assert_eq!(
            Badge::of_state(&SyncState::Rejected {
                rev: rev.clone(),
                error: "forbidden".into(),
                reason: String::new()
            }),
            Badge::Rejected {
                reason: "forbidden".into()
            }
        );
        assert_eq!(
            Badge::of_state(&SyncState::Conflicted {
                winner: rev,
                losers: vec![]
            }),
            Badge::Conflict
        );
    }

    /// Polls `check` until it holds, for up to 10 s.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn badges_and_count_follow_the_stores_sync_state_with_the_server() {
        let (_d, local) = store();
        // What the server says is written into the store's sync state with the store's
        // own calls, as a sync would: the facade has no call that plays the server.
        let db = local.store().unwrap().clone();
        let r1 = db.put(json!({"_id": "note:a"})).unwrap().rev.unwrap();
        let remote = crate::Remote::parse("http://127.0.0.1:9/notes", None, None)
            .unwrap()
            .open()
            .unwrap();
        let name = settee::replicate::Peer::identity(&remote.to_peer());
        db.register_remote(&name, serde_json::Map::new()).unwrap();
        let t = Arc::new(Tracker::open(local.clone()).await.unwrap());
        t.set_remote(Some(remote), Arc::new(Notify::new())).await;
        assert_eq!(t.published()["note:a"], Badge::Unpushed);
        assert_eq!(t.counts().await.unwrap().0.unsynced, 1);

        // The server refuses r1: the stream brings the rejection with its reason.
        let refused = settee::store::Rejection {
            id: "note:a".into(),
            rev: r1.clone(),
            error: "forbidden".into(),
            reason: "titles are required".into(),
        };
        db.record_remote_revs(&name, &BTreeMap::new(), &[refused])
            .unwrap();
        let rejected = Badge::Rejected {
            reason: "titles are required".into(),
        };
        eventually("the rejection is published", || {
            t.published().get("note:a") == Some(&rejected)
        })
        .await;
        assert_eq!(t.badge_of("note:a").await.unwrap(), rejected);
        assert_eq!(t.take_changed()["note:a"], rejected);
        assert_eq!(t.counts().await.unwrap().0.unsynced, 1);

        // A later revision accepted by the server ends it: the note is synced.
        let r2 = db
            .put(json!({"_id": "note:a", "_rev": r1.to_string()}))
            .unwrap()
            .rev
            .unwrap();
        let held = BTreeMap::from([("note:a".to_owned(), vec![r2])]);
        db.record_remote_revs(&name, &held, &[]).unwrap();
        eventually("the note is synced", || t.published().is_empty()).await;
        assert_eq!(t.badge_of("note:a").await.unwrap(), Badge::Synced);
        assert_eq!(t.take_changed()["note:a"], Badge::Synced);
        assert_eq!(t.counts().await.unwrap().0.unsynced, 0);
    }

    #[tokio::test]
    async fn conflicts_are_seen_at_open_and_on_change_without_a_server() {
        let (_d, local) = store();
        let db = local.store().unwrap().clone();
        db.bulk_docs(
            vec![
                json!({"_id": "note:a", "_rev": "1-a"}),
                json!({"_id": "note:a", "_rev": "1-b"}),
            ],
            false,
        )
        .unwrap();
        let t = Arc::new(Tracker::open(local.clone()).await.unwrap());
        t.set_remote(None, Arc::new(Notify::new())).await;
        assert_eq!(t.badge_of("note:a").await.unwrap(), Badge::Conflict);
        assert_eq!(t.take_changed()["note:a"], Badge::Conflict);
        assert_eq!(t.counts().await.unwrap().0.conflicts, 1);
        db.delete("note:a", &"1-a".parse().unwrap()).unwrap();
        t.note_changed("note:a").await.unwrap();
        assert_eq!(t.badge_of("note:a").await.unwrap(), Badge::LocalOnly);
        assert_eq!(t.take_changed()["note:a"], Badge::LocalOnly);
        assert!(t.published().is_empty());
        assert_eq!(t.counts().await.unwrap().0.conflicts, 0);
    }
}
