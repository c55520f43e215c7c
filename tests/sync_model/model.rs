//! The model's state and its oracle: a [`Sequence`] (a store, a server database, the random
//! source and the log of steps taken), what each side holds (`local_leaves`,
//! `server_leaves`), and [`Sequence::check`], which compares the store's `unsynced()` list
//! with the oracle computed from both sides' revision trees. The steps that change either
//! side are `steps.rs`'s; running sequences is the test's (`sync_model.rs`).

#[allow(unused_imports)]
use settee::Documents as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use settee::couch::RemoteDb;
use settee::replicate::Filter;
use settee::store::Database;
use settee::store::{ChangesOptions, ChangesStyle, Durability, GetOptions, OpenOptions, OpenRevs};
use settee::{Rev, SyncState};

use crate::common::Server;
use settee_testkit::TestDb;

/// Document ids `d0`..: few, so that edits meet.
pub(crate) const DOCS: usize = 5;
/// How long reopening the store waits for its lock (see [`open_store`]).
const REOPEN_WAIT: Duration = Duration::from_secs(10);
/// The validation function of a sequence that validates: it refuses `bad` documents.
pub(crate) const GUARD: &str =
    "function (doc) { if (doc.bad) { throw({forbidden: 'bad documents are refused'}); } }";

/// One random sequence: its store and server database, and what the model knows.
pub(crate) struct Sequence {
    /// The server has the validation function that refuses `bad` documents.
    pub(crate) validate: bool,
    pub(crate) seed: u64,
    pub(crate) rng: StdRng,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: Option<Database>,
    pub(crate) remote: RemoteDb,
    /// The filter of the last sync: what the store reports as not replicated.
    pub(crate) filter: Filter,
    /// A simulated crash happened since the last complete unfiltered sync.
    pub(crate) suspect: bool,
    /// Counts the revision hashes this sequence made up (branches).
    pub(crate) hash: u64,
    pub(crate) log: Vec<String>,
    /// The server database, deleted when the sequence ends (also when it fails).
    _server_db: TestDb,
}

/// Opens the sequence's store. Every open but the first reopens a store just closed, or
/// one whose `settee sync` child was just killed: the lock wait is the tests' longer one
/// (the kernel releases a killed child's lock when it reaps it, later on a loaded machine).
pub(crate) fn open_store(path: &std::path::Path) -> Database {
    Database::open_with(OpenOptions {
        durability: Durability::Relaxed {
            flush_every: Duration::from_millis(100),
        },
        lock_wait: REOPEN_WAIT,
        ..OpenOptions::new(path)
    })
    .unwrap()
}

impl Sequence {
    pub(crate) fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    /// The local leaves of every document (tombstones too).
    pub(crate) fn local_leaves(&self) -> BTreeMap<String, Vec<Rev>> {
        let ch = self
            .db()
            .changes(&ChangesOptions {
                style: ChangesStyle::AllDocs,
                ..Default::default()
            })
            .unwrap();
        ch.results
            .into_iter()
            .map(|c| {
                let mut revs = c.changes;
                revs.sort();
                (c.id, revs)
            })
            .collect()
    }

    /// The winning revision's JSON as the changes feed renders it (what a selector sees).
    pub(crate) fn winner_doc(&self, id: &str) -> Option<Value> {
        self.db()
            .open_revs(id, OpenRevs::All, &GetOptions::default())
            .ok()?
            .into_iter()
            .find_map(|r| match r {
                settee::store::OpenRevResult::Ok(d) => Some(d),
                settee::store::OpenRevResult::Missing(_) => None,
            })
    }

    pub(crate) fn excluded(&self, id: &str) -> bool {
        match &self.filter {
            Filter::DocIds(ids) => !ids.iter().any(|d| d == id),
            Filter::Selector(_) => {
                self.winner_doc(id).and_then(|d| d.get("kind").cloned()) != Some(json!("a"))
            }
            _ => false,
        }
    }

    /// The oracle: local leaves the server lacks, by document, minus what the filter
    /// excludes.
    pub(crate) async fn oracle(&self) -> BTreeMap<String, Vec<Rev>> {
        let leaves = self.local_leaves();
        let diff = self.remote.revs_diff(&leaves).await.unwrap();
        diff.into_iter()
            .filter(|(id, d)| !d.missing.is_empty() && !self.excluded(id))
            .map(|(id, d)| {
                let mut m = d.missing;
                m.sort();
                (id, m)
            })
            .collect()
    }

    pub(crate) async fn unsynced(&self) -> Vec<(String, SyncState)> {
        settee::replicate::unsynced(self.db(), &self.remote)
            .map(|r| r.unwrap())
            .collect()
            .await
    }

    pub(crate) fn fail(&self, what: String) -> ! {
        panic!(
            "sequence seed {} (rerun: SETTEE_SYNC_MODEL_SEED={} SETTEE_SYNC_MODEL_SEQUENCES=1): {what}\nsteps: {:#?}",
            self.seed, self.seed, self.log
        )
    }

    pub(crate) async fn check(&self) {
        let oracle = self.oracle().await;
        let actual = self.unsynced().await;
        let ids: BTreeSet<&String> = actual.iter().map(|(id, _)| id).collect();
        let expected: BTreeSet<&String> = oracle.keys().collect();
        if self.suspect {
            if !ids.is_superset(&expected) {
                self.fail(format!(
                    "after a crash the store lists {ids:?}, less than the oracle {expected:?}"
                ));
            }
        } else if ids != expected {
            self.fail(format!(
                "the store lists {actual:?}, the oracle says {oracle:?} (filter {:?})",
                self.filter
            ));
        }
        for (id, state) in &actual {
            match state {
                SyncState::Unpushed { revs } if !self.suspect => {
                    if Some(revs) != oracle.get(id) {
                        self.fail(format!(
                            "{id}: store says unpushed {revs:?}, server lacks {:?}",
                            oracle.get(id)
                        ));
                    }
                }
                SyncState::Rejected { rev, error, reason } => {
                    if error != "forbidden" || reason != "bad documents are refused" {
                        self.fail(format!("{id}: rejected {error}: {reason}"));
                    }
                    let doc = self.db().get(
                        id,
                        &GetOptions {
                            rev: Some(rev.clone()),
                            ..Default::default()
                        },
                    );
                    // Compaction may have dropped the body of a revision that is no leaf.
                    if let Ok(doc) = doc {
                        if doc.get("bad") != Some(&json!(true)) {
                            self.fail(format!("{id}: rejected {rev}, which is not bad: {doc}"));
                        }
                    }
                }
                // After a crash the store may list more revisions, never fewer: one it does
                // not list would be one it calls synced while the server lacks it.
                SyncState::Unpushed { revs } => {
                    let mut lacks = oracle.get(id).into_iter().flatten();
                    if let Some(r) = lacks.find(|r| !revs.contains(r)) {
                        self.fail(format!(
                            "{id}: store says unpushed {revs:?}, and so synced {r}, which the server lacks"
                        ));
                    }
                }
                other => self.fail(format!("{id} is listed as {other:?}")),
            }
        }
        let status = settee::replicate::status(self.db(), &self.remote)
            .await
            .unwrap();
        if status.unpushed != actual.len() as u64 {
            self.fail(format!(
                "status says {} unpushed, the list has {}",
                status.unpushed,
                actual.len()
            ));
        }
        self.db()
            .verify()
            .unwrap_or_else(|e| self.fail(format!("verify: {e}")));
    }

    /// Every document's leaves on the server (tombstones too), from its `_changes`.
    pub(crate) async fn server_leaves(&self) -> BTreeMap<String, Vec<Rev>> {
        let all = self
            .remote
            .changes(&settee::couch::ChangesOptions {
                style: settee::couch::ChangesStyle::AllDocs,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut revs: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
        for c in all.results {
            if revs.insert(c.id.clone(), c.changes).is_some() {
                self.fail(format!("{} is twice in the server's _changes", c.id));
            }
        }
        revs
    }

    pub(crate) fn reopen(&mut self) {
        drop(self.db.take());
        self.db = Some(open_store(&self.dir.path().join("local")));
    }
}

/// A new server database (deleted when the guard drops), with the validation function that
/// refuses `bad` documents when `validate`.
///
/// The database is created by a blocking request in a blocking task, which finishes even when
/// the sequence's task is dropped meanwhile (a runtime shutting down after another sequence
/// failed): the guard then exists only once the server has created the database, and deletes
/// it after. An async `PUT /{db}` abandoned mid-flight could land after the guard's `DELETE`
/// and leave the database behind.
pub(crate) async fn server_database(
    server: &Server,
    prefix: &str,
    validate: bool,
) -> (TestDb, RemoteDb) {
    let prefix = prefix.to_owned();
    let db = tokio::task::spawn_blocking(move || TestDb::create(&prefix))
        .await
        .unwrap();
    let remote = RemoteDb::from_url(&server.db_url_with_password(db.name())).unwrap();
    if validate {
        remote
            .put(
                "_design/guard",
                &json!({"_id": "_design/guard", "validate_doc_update": GUARD}),
            )
            .await
            .unwrap();
    }
    (db, remote)
}

/// A fresh sequence: a new store and a new server database named after `prefix` (with the
/// validation function when `validate`).
pub(crate) async fn new_sequence(
    server: &Server,
    prefix: &str,
    seed: u64,
    validate: bool,
) -> Sequence {
    let dir = tempfile::tempdir().unwrap();
    let db = open_store(&dir.path().join("local"));
    let (server_db, remote) = server_database(server, prefix, validate).await;
    Sequence {
        validate,
        seed,
        rng: StdRng::seed_from_u64(seed),
        dir,
        db: Some(db),
        remote,
        filter: Filter::All,
        suspect: false,
        hash: 0,
        log: Vec::new(),
        _server_db: server_db,
    }
}
