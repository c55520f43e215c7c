//! The model test of issue 11 against the real server: random sequences of local edits,
//! server edits, deletions, conflicts on both sides, attachments, filtered and unfiltered
//! syncs, documents the server's validation function refuses, reopening the store, and syncs
//! cut short by a simulated crash (the remote took a push but the store never heard back);
//! `kill.rs` adds the real crash, a `settee sync` child SIGKILLed mid-run.
//! After every step the store's `unsynced()` list is compared with an oracle computed from
//! both sides' revision trees: the local leaves the server does not hold (the server's
//! `_revs_diff`), minus the documents the pair's filter excludes. They must be equal (ids,
//! and the revisions of each unpushed document; a rejected document must be one whose
//! refused revision is a `bad` one), except after a simulated crash, where the store may
//! only list more (the safe direction) until the next unfiltered sync has run. Every
//! sequence ends with an unfiltered sync, after which only refused documents are listed
//! and nothing is unpulled.
//!
//! At least 200 sequences per run (`SETTEE_SYNC_MODEL_SEQUENCES` to change it); the base seed
//! is printed, rerun one with `SETTEE_SYNC_MODEL_SEED=<seed> SETTEE_SYNC_MODEL_SEQUENCES=1`.
//!
//! Every test here runs against either server; Apache CouchDB is the reference, and
//! scripts/test.sh runs the kill test and the validation-function test again against
//! pouchdb-server. FIXME(#21): not the random model yet: against pouchdb-server 4.2.0 a
//! sequence fails now and then (a tombstone pulled by a sync cut short stays listed as
//! unpushed after complete syncs, seed 5495292346188439323, every time; a complete sync
//! leaving a revision unpulled, seed 13504186226855241022, once in three runs), which
//! CouchDB never showed. Where they differ on purpose: against pouchdb-server
//! the sequences run without the validation function, so without refusals: pouchdb-server
//! 4.2.0 with a `validate_doc_update` design document silently drops a replicated
//! (`new_edits=false`) revision that conflicts with the stored one while answering success,
//! so the server does not hold what it confirmed (see
//! `a_validation_function_and_replicated_conflicting_branches`).

#![allow(clippy::unwrap_used)]

mod common;
// The real crash: `settee sync` as a child process, SIGKILLed mid-run.
#[path = "sync_model/kill.rs"]
mod kill;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{unique_db, Server};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use settee::couch::RemoteDb;
use settee::replicate::{
    ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer, PeerInfo,
    ReplicateOptions, Role, Selector,
};
use settee::revtree::{RevsDiff, Seq};
use settee::store::{ChangesOptions, ChangesStyle, Durability, GetOptions, OpenOptions, OpenRevs};
use settee::{Database, Rev, SyncState};

const DEFAULT_SEQUENCES: usize = 200;
/// Sequences run at once (each has its own store and server database).
const PARALLEL: usize = 16;
/// Document ids `d0`..: few, so that edits meet.
const DOCS: usize = 5;
/// How long reopening the store waits for its lock (see [`open_store`]).
const REOPEN_WAIT: Duration = Duration::from_secs(10);
const GUARD: &str =
    "function (doc) { if (doc.bad) { throw({forbidden: 'bad documents are refused'}); } }";

/// The local store as a peer whose sync-state hook fails after `allow` calls without
/// recording anything: a process that died after the remote took a push, before the store
/// heard back.
#[derive(Clone)]
struct Crashing {
    db: Database,
    allow: Arc<AtomicUsize>,
}

impl Peer for Crashing {
    fn describe(&self) -> String {
        Peer::describe(&self.db)
    }
    fn identity(&self) -> String {
        Peer::identity(&self.db)
    }
    fn is_local(&self) -> bool {
        true
    }
    async fn info(&self) -> settee::replicate::Result<PeerInfo> {
        Peer::info(&self.db).await
    }
    async fn create(&self) -> settee::replicate::Result<()> {
        Peer::create(&self.db).await
    }
    async fn changes(&self, req: &ChangesRequest) -> settee::replicate::Result<ChangesBatch> {
        Peer::changes(&self.db, req).await
    }
    async fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> settee::replicate::Result<BTreeMap<String, RevsDiff>> {
        Peer::revs_diff(&self.db, revs).await
    }
    async fn fetch(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> settee::replicate::Result<Vec<Fetched>> {
        Peer::fetch(&self.db, reqs, max_bytes).await
    }
    async fn filter_code(&self, name: &str) -> settee::replicate::Result<String> {
        Peer::filter_code(&self.db, name).await
    }
    async fn write(
        &self,
        docs: Vec<Box<RawValue>>,
        origin: &str,
    ) -> settee::replicate::Result<Vec<DocFailure>> {
        Peer::write(&self.db, docs, origin).await
    }
    async fn commit(&self) -> settee::replicate::Result<()> {
        Peer::commit(&self.db).await
    }
    async fn get_local(&self, id: &str) -> settee::replicate::Result<Option<Value>> {
        Peer::get_local(&self.db, id).await
    }
    async fn put_local(&self, id: &str, doc: Value) -> settee::replicate::Result<String> {
        Peer::put_local(&self.db, id, doc).await
    }
    async fn pending_since(&self, since: &Seq) -> Option<u64> {
        Peer::pending_since(&self.db, since).await
    }
    async fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> settee::replicate::Result<()> {
        Peer::track_peer(&self.db, other, role, filter, rep_id).await
    }
    async fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> settee::replicate::Result<()> {
        let left = self.allow.load(Ordering::SeqCst);
        if left == 0 {
            return Err(settee::replicate::Error::BadRequest {
                reason: "simulated crash".into(),
            });
        }
        self.allow.store(left - 1, Ordering::SeqCst);
        Peer::record_peer_revs(&self.db, other, held, rejected).await
    }
}

struct Sequence {
    /// The server has the validation function that refuses `bad` documents.
    validate: bool,
    seed: u64,
    rng: StdRng,
    dir: tempfile::TempDir,
    db: Option<Database>,
    remote: RemoteDb,
    /// The filter of the last sync: what the store reports as not replicated.
    filter: Filter,
    /// A simulated crash happened since the last complete unfiltered sync.
    suspect: bool,
    hash: u64,
    log: Vec<String>,
}

/// Opens the sequence's store. Every open but the first reopens a store just closed, or
/// one whose `settee sync` child was just killed: the lock wait is the tests' longer one
/// (the kernel releases a killed child's lock when it reaps it, later on a loaded machine).
fn open_store(path: &std::path::Path) -> Database {
    Database::open_with(OpenOptions {
        durability: Durability::Relaxed {
            flush_every: Duration::from_millis(100),
        },
        lock_wait: REOPEN_WAIT,
        ..OpenOptions::new(path)
    })
    .unwrap()
}

/// A replicated revision's new attachments carry the revision's position as their `revpos`,
/// as a replicator sends them (CouchDB stores a missing one as 0, which makes every later
/// `atts_since` turn the attachment into a stub).
fn set_revpos(doc: &mut Value, pos: u64) {
    if let Some(atts) = doc.get_mut("_attachments").and_then(Value::as_object_mut) {
        for a in atts.values_mut() {
            a["revpos"] = json!(pos);
        }
    }
}

fn parse_rev(v: &Value) -> Rev {
    v.as_str().unwrap().parse().unwrap()
}

impl Sequence {
    fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    fn id(&mut self) -> String {
        format!("d{}", self.rng.gen_range(0..DOCS))
    }

    fn body(&mut self, allow_bad: bool) -> Value {
        let kind = if self.rng.gen_bool(0.5) { "a" } else { "b" };
        let mut body = json!({"kind": kind, "n": self.rng.gen::<u32>()});
        if allow_bad && self.rng.gen_bool(0.2) {
            body["bad"] = json!(true);
        }
        if self.rng.gen_bool(0.15) {
            let bytes: Vec<u8> = (0..self.rng.gen_range(1..300))
                .map(|_| self.rng.gen())
                .collect();
            body["_attachments"] = json!({"f.bin": {"content_type": "application/octet-stream",
                "data": base64::engine::general_purpose::STANDARD.encode(bytes)}});
        }
        body
    }

    fn new_hash(&mut self) -> String {
        self.hash += 1;
        format!("{:016x}{:016x}", self.seed, self.hash)
    }

    /// The local leaves of every document (tombstones too).
    fn local_leaves(&self) -> BTreeMap<String, Vec<Rev>> {
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
    fn winner_doc(&self, id: &str) -> Option<Value> {
        self.db()
            .open_revs(id, OpenRevs::All, &GetOptions::default())
            .ok()?
            .into_iter()
            .find_map(|r| match r {
                settee::store::OpenRevResult::Ok(d) => Some(d),
                settee::store::OpenRevResult::Missing(_) => None,
            })
    }

    fn excluded(&self, id: &str) -> bool {
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
    async fn oracle(&self) -> BTreeMap<String, Vec<Rev>> {
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

    async fn unsynced(&self) -> Vec<(String, SyncState)> {
        settee::replicate::unsynced(self.db(), &self.remote)
            .map(|r| r.unwrap())
            .collect()
            .await
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "sequence seed {} (rerun: SETTEE_SYNC_MODEL_SEED={} SETTEE_SYNC_MODEL_SEQUENCES=1): {what}\nsteps: {:#?}",
            self.seed, self.seed, self.log
        )
    }

    async fn check(&self) {
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

    async fn sync(&mut self, filter: Filter, crash_after: Option<usize>) -> bool {
        self.filter = filter.clone();
        let opts = ReplicateOptions {
            filter,
            batch_size: self.rng.gen_range(1..8),
            ..Default::default()
        };
        let db = self.db().clone();
        let result = match crash_after {
            None => {
                settee::replicate::sync(db, self.remote.clone(), opts, None, Default::default())
                    .await
            }
            Some(n) => {
                let peer = Crashing {
                    db,
                    allow: Arc::new(AtomicUsize::new(n)),
                };
                settee::replicate::sync(peer, self.remote.clone(), opts, None, Default::default())
                    .await
            }
        };
        match (result, crash_after) {
            (Ok(_), _) => true,
            (Err(e), Some(_)) if settee::replicate::error_chain(&e).contains("simulated crash") => {
                false
            }
            (Err(e), _) => self.fail(format!(
                "sync failed: {}",
                settee::replicate::error_chain(&e)
            )),
        }
    }

    /// The server's winning revision of `id`, `None` when it has none (404, deleted
    /// included). Any other error fails the test with its message: taken for "none", it
    /// made the following edit a 409.
    async fn server_winner(&self, id: &str) -> Option<Value> {
        match self.remote.get(id, &Default::default()).await {
            Ok(doc) => Some(doc),
            Err(e) if e.is_not_found() => None,
            Err(e) => self.fail(format!("reading {id} from the server: {e}")),
        }
    }

    async fn step(&mut self) {
        let op = self.rng.gen_range(0..14);
        self.step_op(op).await;
    }

    /// Step `op`: 0..=8 edit one side (local edits, deletions and branches, then the
    /// server's), 9..=11 sync, 12 a sync cut short in-process, 13 a reopen or compaction.
    async fn step_op(&mut self, op: u32) {
        let id = self.id();
        let local = self.db().get(id.as_str(), &GetOptions::default()).ok();
        match op {
            0..=2 => {
                let mut doc = self.body(true);
                doc["_id"] = json!(id);
                if self.rng.gen_bool(0.3) {
                    // Fix a bad document, or make one.
                    doc["bad"] = json!(self.rng.gen_bool(0.3));
                }
                if let Some(cur) = &local {
                    doc["_rev"] = cur["_rev"].clone();
                }
                self.log.push(format!("local edit {id} {doc}"));
                self.db().put(doc).unwrap();
            }
            3 => {
                if let Some(cur) = local {
                    self.log.push(format!("local delete {id}"));
                    self.db().delete(&id, &parse_rev(&cur["_rev"])).unwrap();
                }
            }
            4 => {
                // A conflicting branch, as if replicated from elsewhere (no origin).
                let h = self.new_hash();
                let mut doc = self.body(true);
                let leaves = self.local_leaves().get(&id).cloned().unwrap_or_default();
                let parent = leaves.first().cloned();
                let (start, ids) = match &parent {
                    Some(p) => (p.pos() + 1, json!([h, p.hash()])),
                    None => (1, json!([h])),
                };
                doc["_id"] = json!(id);
                doc["_rev"] = json!(format!("{start}-{h}"));
                doc["_revisions"] = json!({"start": start, "ids": ids});
                set_revpos(&mut doc, start);
                self.log.push(format!("local branch {id} {start}-{h}"));
                let res = self.db().bulk_docs(vec![doc], false).unwrap();
                assert!(res[0].is_ok(), "{res:?}");
            }
            5..=6 => {
                let mut doc = self.body(false);
                doc["_id"] = json!(id);
                self.log.push(format!("server edit {id}"));
                // A write the previous step's cut-short sync had already sent can land on
                // the server after it ended (an interrupted client's request is still
                // processed), between the read of the winner and this edit: a 409 then
                // means "read it again", as for any client racing another.
                let mut tries = 0;
                loop {
                    match self.server_winner(&id).await {
                        Some(cur) => doc["_rev"] = cur["_rev"].clone(),
                        None => {
                            if let Some(m) = doc.as_object_mut() {
                                m.remove("_rev");
                            }
                        }
                    }
                    match self.remote.put(&id, &doc).await {
                        Ok(_) => break,
                        Err(e) if e.status() == Some(409) && tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        Err(e) => self.fail(format!("server edit of {id}: {e}")),
                    }
                }
            }
            7 => {
                if let Some(cur) = self.server_winner(&id).await {
                    self.log.push(format!("server delete {id}"));
                    self.remote
                        .delete_doc(&id, &parse_rev(&cur["_rev"]))
                        .await
                        .unwrap();
                }
            }
            8 => {
                let h = self.new_hash();
                let mut doc = self.body(false);
                let parent = self.server_winner(&id).await.map(|d| parse_rev(&d["_rev"]));
                let (start, ids) = match &parent {
                    Some(p) => (p.pos() + 1, json!([h, p.hash()])),
                    None => (1, json!([h])),
                };
                doc["_id"] = json!(id);
                doc["_rev"] = json!(format!("{start}-{h}"));
                doc["_revisions"] = json!({"start": start, "ids": ids});
                set_revpos(&mut doc, start);
                self.log.push(format!("server branch {id} {start}-{h}"));
                let res = self.remote.bulk_docs(&[doc], false).await.unwrap();
                assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
            }
            9..=11 => {
                let filter = match self.rng.gen_range(0..10) {
                    0..=5 => Filter::All,
                    6 | 7 => Filter::Selector(Selector::parse(&json!({"kind": "a"})).unwrap()),
                    _ => Filter::DocIds(
                        (0..DOCS)
                            .filter(|_| self.rng.gen_bool(0.5))
                            .map(|i| format!("d{i}"))
                            .collect(),
                    ),
                };
                self.log.push(format!("sync {:?}", filter.to_json()));
                self.sync(filter.clone(), None).await;
                if filter == Filter::All {
                    self.suspect = false;
                }
            }
            12 => {
                let n = self.rng.gen_range(0..3);
                self.log
                    .push(format!("sync that crashes after {n} records, reopen"));
                let completed = self.sync(Filter::All, Some(n)).await;
                // A crash before the end may have lost confirmations: the store may list more
                // than the oracle until the next unfiltered sync.
                self.suspect = !completed;
                self.reopen();
            }
            _ => {
                if self.rng.gen_bool(0.5) {
                    self.log.push("reopen".into());
                    self.reopen();
                } else {
                    self.log.push("compact".into());
                    self.db().compact().unwrap();
                }
            }
        }
    }

    /// Every document's leaves on the server (tombstones too), from its `_changes`.
    async fn server_leaves(&self) -> BTreeMap<String, Vec<Rev>> {
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

    fn reopen(&mut self) {
        drop(self.db.take());
        self.db = Some(open_store(&self.dir.path().join("local")));
    }
}

/// Whether the server is pouchdb-server (see the module comment).
async fn is_pouchdb_server(server: &Server) -> bool {
    let remote = RemoteDb::from_url(&server.db_url_with_password("any")).unwrap();
    let info = remote.client().server_info().await.unwrap();
    info.vendor
        .is_some_and(|v| v.to_string().contains("PouchDB"))
}

/// A fresh sequence: a new store and a new server database (with the validation function
/// when `validate`).
async fn new_sequence(server: &Server, seed: u64, validate: bool) -> Sequence {
    let dir = tempfile::tempdir().unwrap();
    let db = open_store(&dir.path().join("local"));
    let name = unique_db("model");
    let remote = RemoteDb::from_url(&server.db_url_with_password(&name)).unwrap();
    remote.create().await.unwrap();
    if validate {
        remote
            .put(
                "_design/guard",
                &json!({"_id": "_design/guard", "validate_doc_update": GUARD}),
            )
            .await
            .unwrap();
    }
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
    }
}

/// The end of every sequence: a complete unfiltered sync, after which only refused documents
/// stay listed and nothing is unpulled; then the server database goes. Returns how many
/// documents stay listed.
async fn finish(mut seq: Sequence) -> usize {
    seq.log.push("final sync".into());
    seq.sync(Filter::All, None).await;
    seq.suspect = false;
    seq.check().await;
    let left = seq.unsynced().await;
    if let Some((id, s)) = left
        .iter()
        .find(|(_, s)| s.name() != "rejected" || !seq.validate)
    {
        seq.fail(format!("after a complete sync {id} is still {s:?}"));
    }
    let unpulled = settee::replicate::unpulled(seq.db(), &seq.remote)
        .await
        .unwrap();
    if unpulled != 0 {
        let missing = seq.db().revs_diff(seq.server_leaves().await).unwrap();
        seq.fail(format!(
            "after a complete sync {unpulled} documents are unpulled: the store lacks {missing:?}"
        ));
    }
    seq.remote.delete().await.unwrap();
    left.len()
}

async fn run_sequence(server: &Server, seed: u64, validate: bool) -> (usize, usize) {
    let mut seq = new_sequence(server, seed, validate).await;
    let steps = seq.rng.gen_range(6..16);
    for _ in 0..steps {
        seq.step().await;
        seq.check().await;
    }
    (steps, finish(seq).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_11_unsynced_equals_the_oracle_after_every_step_of_random_sequences() {
    let server = Arc::new(Server::get());
    let n: usize = std::env::var("SETTEE_SYNC_MODEL_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEQUENCES);
    let base: u64 = std::env::var("SETTEE_SYNC_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let validate = !is_pouchdb_server(&server).await;
    eprintln!("sync model: {n} sequences from seed {base} (validation function: {validate})");
    let results: Vec<(usize, usize)> = futures::stream::iter(0..n as u64)
        .map(|i| {
            let server = server.clone();
            async move {
                tokio::spawn(
                    async move { run_sequence(&server, base.wrapping_add(i), validate).await },
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let steps: usize = results.iter().map(|r| r.0).sum();
    let refused: usize = results.iter().map(|r| r.1).sum();
    eprintln!("sync model: {n} sequences, {steps} steps, {refused} documents refused at the end");
    assert_eq!(results.len(), n);
    assert!(
        refused > 0 || !validate || n < 20,
        "no sequence exercised a rejection"
    );
}

/// Why the model runs without a validation function on pouchdb-server. Apache CouchDB (the
/// reference) stores both replicated branches of a document under a validation function that
/// accepts them; pouchdb-server answers success to the second, conflicting one and drops it.
/// FIXME: pouchdb-server's bug, not ours; if its branch starts failing, pouchdb-server was
/// fixed and the model can validate there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_function_and_replicated_conflicting_branches() {
    let server = Server::get();
    let pouchdb = is_pouchdb_server(&server).await;
    let remote = RemoteDb::from_url(&server.db_url_with_password(&unique_db("drops"))).unwrap();
    remote.create().await.unwrap();
    remote
        .put(
            "_design/guard",
            &json!({"_id": "_design/guard", "validate_doc_update": GUARD}),
        )
        .await
        .unwrap();
    let branch = |h: &str| json!({"_id": "x", "_rev": format!("1-{h}"), "_revisions": {"start": 1, "ids": [h]}});
    for h in ["0001", "0002"] {
        let res = remote.bulk_docs(&[branch(h)], false).await.unwrap();
        assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    }
    let diff = remote
        .revs_diff(&[("x".to_owned(), vec!["1-0002".parse().unwrap()])].into())
        .await
        .unwrap();
    let missing = diff.get("x").map(|d| d.missing.clone()).unwrap_or_default();
    if pouchdb {
        // Where the servers differ: the second branch was answered ok and dropped.
        assert_eq!(missing, vec!["1-0002".parse::<Rev>().unwrap()]);
    } else {
        assert_eq!(missing, Vec::<Rev>::new(), "CouchDB holds both branches");
    }
    remote.delete().await.unwrap();
}
