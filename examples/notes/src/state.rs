//! Each note's sync badge (synced, waiting to upload, rejected with the server's reason,
//! conflict, local only) and the counts the page shows. What the sync is doing globally
//! (syncing, offline, retrying) is `sync.rs`'s; this module only answers "is this note on
//! the server".
//!
//! FIXME(#11): provisional. Settee has no per-document sync state yet, so the app derives
//! it from what today's API offers, in this module alone:
//! - *waiting to upload*: the note changed in the local store after the sequence the live
//!   push has passed (its `Change`/`Checkpoint` events, or the push checkpoint at start).
//!   A note that arrived by the pull counts as waiting for the moment it takes the push to
//!   pass it (the push then finds the server has it). Issue 11 records which revisions the
//!   server holds and makes this exact;
//! - *rejected*: the push's failures (events, and the checkpoint's `doc_failures`), which
//!   apply while the note has not been written since the push refused it (its local
//!   sequence is not past the push position of the failure; servers do not always say which
//!   revision they refused); lost if the app restarts after a session with no failures
//!   (issue 11 keeps them durably);
//! - *conflict*: the store's `_conflicts`, kept as a set of ids updated on every change.
//!
//! When issue 11 lands, [`Tracker`] becomes a thin wrapper over `Db::sync_state(id)`,
//! `Db::unsynced(remote)` and its live stream; its interface to the rest of the app
//! ([`Tracker::view`], [`StateView::badge`], [`Tracker::changed_badges`]) stays.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;
use settee::replicate::DocFailure;
use settee::store::{AllDocsOptions, ChangesOptions, GetOptions};
use settee::Database;

use crate::note::ID_PREFIX;
use crate::Result;

/// A note's sync state as the page shows it on the note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Badge {
    /// The server has the note's current revision.
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
    /// No server is configured: the note lives in this store only.
    LocalOnly,
}

/// The counts shown beside the global state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Notes (deletions included) the server does not have: waiting or rejected.
    pub unsynced: usize,
    /// Notes in conflict.
    pub conflicts: usize,
}

#[derive(Debug, Clone)]
struct Rejection {
    /// The revision refused, when the server said.
    rev: Option<String>,
    reason: String,
    /// The push's position when it reported the failure: a version of the note written
    /// after it is not the one refused.
    upto: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether a server is configured.
    remote: bool,
    /// Local sequence up to which the push has replicated everything.
    push_seq: u64,
    rejected: HashMap<String, Rejection>,
    conflicted: HashSet<String>,
    /// The badges last sent to pages (only notes that are not synced).
    sent: BTreeMap<String, Badge>,
}

/// Tracks what it needs to tell each note's badge. Cheap to query: the work is proportional
/// to the notes changed since the push's position, not to the store.
#[derive(Debug)]
pub struct Tracker {
    db: Database,
    inner: Mutex<Inner>,
}

/// A consistent reading of the tracker, for badging many notes at once (a list).
#[derive(Debug, Clone)]
pub struct StateView {
    remote: bool,
    /// Notes changed after the push position, with their winning revision and whether it
    /// is a deletion.
    unpushed: HashMap<String, (String, bool)>,
    /// Rejected notes whose rejection applies to their current revision: id to (that
    /// revision, the server's reason).
    rejected: HashMap<String, (String, String)>,
    conflicted: HashSet<String>,
}

impl Tracker {
    /// Reads the store's conflicted notes. Blocking (scans the store once).
    ///
    /// # Errors
    /// The store's errors.
    pub fn open(db: Database) -> Result<Tracker> {
        let all = db.all_docs(&AllDocsOptions {
            include_docs: true,
            conflicts: true,
            startkey: Some(ID_PREFIX.to_owned()),
            endkey: Some(format!("{ID_PREFIX}\u{10ffff}")),
            ..Default::default()
        })?;
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
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still consistent enough
        // to show badges: recover it instead of failing every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking against a new server (or none), from the start of its push.
    pub fn reset(&self, remote: bool) {
        let mut inner = self.lock();
        inner.remote = remote;
        inner.push_seq = 0;
        inner.rejected.clear();
    }

    /// The push has replicated everything up to `seq` (a local sequence).
    pub fn push_progress(&self, seq: u64) {
        let mut inner = self.lock();
        inner.push_seq = inner.push_seq.max(seq);
    }

    /// The server refused these documents; the push reported it at position `upto` (the
    /// `last_seq` of its progress event).
    pub fn rejected(&self, failures: &[DocFailure], upto: u64) {
        self.record(failures, upto, true);
    }

    /// The failures a push checkpoint lists (every failure of its session so far), at the
    /// checkpoint's position: only documents not known yet are taken, since an older
    /// failure listed again must keep the position it was reported at.
    pub fn rejected_in_checkpoint(&self, failures: &[DocFailure], upto: u64) {
        self.record(failures, upto, false);
    }

    fn record(&self, failures: &[DocFailure], upto: u64, replace: bool) {
        let mut inner = self.lock();
        for f in failures {
            if !replace && inner.rejected.contains_key(&f.id) {
                continue;
            }
            inner.rejected.insert(
                f.id.clone(),
                Rejection {
                    rev: f.rev.clone(),
                    reason: if f.reason.is_empty() {
                        f.error.clone()
                    } else {
                        f.reason.clone()
                    },
                    upto,
                },
            );
        }
    }

    /// A note changed in the store: re-reads whether it is in conflict. Blocking.
    ///
    /// # Errors
    /// The store's errors.
    pub fn note_changed(&self, id: &str) -> Result<()> {
        let conflicted = match self.db.get(
            id,
            &GetOptions {
                conflicts: true,
                ..Default::default()
            },
        ) {
            Ok(doc) => has_conflicts(&doc),
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        let mut inner = self.lock();
        if conflicted {
            inner.conflicted.insert(id.to_owned());
        } else {
            inner.conflicted.remove(id);
        }
        Ok(())
    }

    /// A consistent reading for badging notes. Blocking: reads the store's changes after
    /// the push position, and each rejected note.
    ///
    /// # Errors
    /// The store's errors.
    pub fn view(&self) -> Result<StateView> {
        let (remote, since, rejections, conflicted) = {
            let inner = self.lock();
            (
                inner.remote,
                inner.push_seq,
                inner.rejected.clone(),
                inner.conflicted.clone(),
            )
        };
        let mut unpushed = HashMap::new();
        let mut rejected = HashMap::new();
        if remote {
            let changes = self.db.changes(&ChangesOptions {
                since,
                skip_pending: true,
                ..Default::default()
            })?;
            for c in changes.results {
                if !c.id.starts_with(ID_PREFIX) {
                    continue;
                }
                let rev = c.changes.first().map(|r| r.to_string()).unwrap_or_default();
                unpushed.insert(c.id, (rev, c.deleted));
            }
            for (id, r) in rejections {
                if let Some((rev, seq)) = self.current(&id)? {
                    let applies = match &r.rev {
                        Some(refused) => *refused == rev,
                        None => seq <= r.upto,
                    };
                    if applies {
                        rejected.insert(id, (rev, r.reason));
                    }
                }
            }
        }
        Ok(StateView {
            remote,
            unpushed,
            rejected,
            conflicted,
        })
    }

    /// A live note's current revision and local sequence.
    fn current(&self, id: &str) -> Result<Option<(String, u64)>> {
        let opts = GetOptions {
            local_seq: true,
            ..Default::default()
        };
        match self.db.get(id, &opts) {
            Ok(doc) => Ok(Some((
                doc.get("_rev")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                doc.get("_local_seq").and_then(Value::as_u64).unwrap_or(0),
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The badges last published (every note that is not synced, as pages were told).
    pub fn published(&self) -> BTreeMap<String, Badge> {
        self.lock().sent.clone()
    }

    /// The counts shown beside the global state. Blocking.
    ///
    /// # Errors
    /// The store's errors.
    pub fn counts(&self) -> Result<Counts> {
        Ok(self.view()?.counts())
    }

    /// The badges that changed since the last call (notes that became synced are listed as
    /// [`Badge::Synced`]), and the counts. Blocking.
    ///
    /// # Errors
    /// The store's errors.
    pub fn changed_badges(&self) -> Result<(BTreeMap<String, Badge>, Counts)> {
        let view = self.view()?;
        let now = view.unsynced_badges();
        let counts = view.counts();
        let mut inner = self.lock();
        let mut changed = BTreeMap::new();
        for (id, badge) in &now {
            if inner.sent.get(id) != Some(badge) {
                changed.insert(id.clone(), badge.clone());
            }
        }
        for id in inner.sent.keys() {
            if !now.contains_key(id) {
                changed.insert(
                    id.clone(),
                    if view.remote {
                        Badge::Synced
                    } else {
                        Badge::LocalOnly
                    },
                );
            }
        }
        inner.sent = now;
        Ok((changed, counts))
    }
}

impl StateView {
    /// The badge of a note whose current revision is `rev`.
    pub fn badge(&self, id: &str, rev: &str) -> Badge {
        if self.conflicted.contains(id) {
            return Badge::Conflict;
        }
        if !self.remote {
            return Badge::LocalOnly;
        }
        if let Some((refused, reason)) = self.rejected.get(id) {
            if refused == rev {
                return Badge::Rejected {
                    reason: reason.clone(),
                };
            }
        }
        if self.unpushed.contains_key(id) {
            return Badge::Unpushed;
        }
        Badge::Synced
    }

    /// Whether a server is configured.
    pub fn has_remote(&self) -> bool {
        self.remote
    }

    /// Every note that is not synced, with its badge.
    fn unsynced_badges(&self) -> BTreeMap<String, Badge> {
        let mut out = BTreeMap::new();
        for id in &self.conflicted {
            out.insert(id.clone(), Badge::Conflict);
        }
        if !self.remote {
            return out;
        }
        let waiting = self.unpushed.iter().map(|(id, (rev, _))| (id, rev));
        let refused = self.rejected.iter().map(|(id, (rev, _))| (id, rev));
        for (id, rev) in waiting.chain(refused) {
            out.entry(id.clone()).or_insert_with(|| self.badge(id, rev));
        }
        out
    }

    /// The counts shown beside the global state.
    fn counts(&self) -> Counts {
        let mut unsynced: HashSet<&str> = HashSet::new();
        if self.remote {
            unsynced.extend(self.unpushed.keys().map(String::as_str));
            unsynced.extend(self.rejected.keys().map(String::as_str));
        }
        Counts {
            unsynced: unsynced.len(),
            conflicts: self.conflicted.len(),
        }
    }
}

fn has_conflicts(doc: &Value) -> bool {
    doc.get("_conflicts")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("s")).unwrap();
        (dir, db)
    }

    #[test]
    fn note_changed_after_the_push_position_waits_to_upload() {
        let (_d, db) = store();
        let a = db.put(json!({"_id": "note:a"})).unwrap().rev.unwrap();
        let t = Tracker::open(db.clone()).unwrap();
        t.reset(true);
        assert_eq!(
            t.view().unwrap().badge("note:a", &a.to_string()),
            Badge::Unpushed
        );
        t.push_progress(db.info().unwrap().update_seq);
        assert_eq!(
            t.view().unwrap().badge("note:a", &a.to_string()),
            Badge::Synced
        );
        let (_, counts) = t.changed_badges().unwrap();
        assert_eq!(counts.unsynced, 0);
    }

    #[test]
    fn rejection_lasts_until_the_next_revision() {
        let (_d, db) = store();
        let r1 = db.put(json!({"_id": "note:a"})).unwrap().rev.unwrap();
        let t = Tracker::open(db.clone()).unwrap();
        let seq = db.info().unwrap().update_seq;
        t.reset(true);
        t.push_progress(seq);
        t.rejected(
            &[DocFailure {
                id: "note:a".into(),
                rev: Some(r1.to_string()),
                error: "forbidden".into(),
                reason: "no".into(),
            }],
            seq,
        );
        let (changed, counts) = t.changed_badges().unwrap();
        assert_eq!(
            changed["note:a"],
            Badge::Rejected {
                reason: "no".into()
            }
        );
        assert_eq!(counts.unsynced, 1);
        let r2 = db
            .put(json!({"_id": "note:a", "_rev": r1.to_string()}))
            .unwrap()
            .rev
            .unwrap();
        assert_eq!(
            t.view().unwrap().badge("note:a", &r2.to_string()),
            Badge::Unpushed
        );
        t.push_progress(db.info().unwrap().update_seq);
        let (changed, counts) = t.changed_badges().unwrap();
        assert_eq!(changed["note:a"], Badge::Synced);
        assert_eq!(counts.unsynced, 0);
    }

    #[test]
    fn rejection_without_a_revision_ends_when_the_note_is_written_again() {
        let (_d, db) = store();
        let r1 = db.put(json!({"_id": "note:a"})).unwrap().rev.unwrap();
        let t = Tracker::open(db.clone()).unwrap();
        let seq = db.info().unwrap().update_seq;
        t.reset(true);
        t.push_progress(seq);
        let refused = DocFailure {
            id: "note:a".into(),
            rev: None,
            error: "forbidden".into(),
            reason: "no".into(),
        };
        t.rejected(std::slice::from_ref(&refused), seq);
        // A checkpoint later lists the same failure again, at a later position.
        let r2_seq = seq + 1;
        assert_eq!(
            t.view().unwrap().badge("note:a", &r1.to_string()),
            Badge::Rejected {
                reason: "no".into()
            }
        );
        let r2 = db
            .put(json!({"_id": "note:a", "_rev": r1.to_string()}))
            .unwrap()
            .rev
            .unwrap();
        assert_eq!(
            t.view().unwrap().badge("note:a", &r2.to_string()),
            Badge::Unpushed
        );
        // The push takes the new revision; its checkpoint still lists the old failure.
        assert_eq!(db.info().unwrap().update_seq, r2_seq);
        t.push_progress(r2_seq);
        t.rejected_in_checkpoint(std::slice::from_ref(&refused), r2_seq);
        assert_eq!(
            t.view().unwrap().badge("note:a", &r2.to_string()),
            Badge::Synced
        );
        assert_eq!(t.counts().unwrap().unsynced, 0);
    }

    #[test]
    fn conflicts_are_seen_at_open_and_on_change() {
        let (_d, db) = store();
        db.bulk_docs(
            vec![
                json!({"_id": "note:a", "_rev": "1-a"}),
                json!({"_id": "note:a", "_rev": "1-b"}),
            ],
            false,
        )
        .unwrap();
        let t = Tracker::open(db.clone()).unwrap();
        assert_eq!(t.view().unwrap().badge("note:a", "1-b"), Badge::Conflict);
        db.delete("note:a", &"1-a".parse().unwrap()).unwrap();
        t.note_changed("note:a").unwrap();
        assert_eq!(t.view().unwrap().badge("note:a", "1-b"), Badge::LocalOnly);
    }
}
