//! Crashes and resources (issue 19), against Apache CouchDB: the `settee` CLI killed with
//! SIGKILL at random points of a push and of a pull of documents with attachments, and
//! (`disk_full`) a store whose disk fills up under a write and under a pull, and
//! (`compact`) `settee compact` killed while it rewrites the store's files.
//!
//! The kill tests run every replication through a proxy (`settee_testkit::http::proxy`, one
//! per direction, so the replication id stays the same) that logs each request and kills the
//! child at a chosen point: just before a request reaches the server, just after the server
//! answered it (the server did the work, the client never heard), or a random few
//! milliseconds after an answer (the child is writing its store, reading its feed, or
//! writing a checkpoint). Each cycle adds new work to the source (new documents with text and
//! binary attachments, edits, deletions, conflict branches), kills a run at a point drawn
//! from the request count of a full run of that much work, then checks:
//!
//! - the store opens and `verify`s;
//! - the checkpoint is not ahead of the data: every document the checkpoint covers is on the
//!   target with every leaf (`_revs_diff` asked of the target);
//! - the next run re-sends nothing the checkpoint covers: the checkpoint the next run
//!   starts from is read from `_local/<rep id>` on both peers (`find_start`, CouchDB's
//!   comparison of the two logs); every document the run sends in `_bulk_docs`/asks in
//!   `_revs_diff` (push) or fetches in `_bulk_get` (pull) must be in the source's
//!   `_changes` since that sequence (nothing is edited during a run, so that set is exact);
//! - after a full run, identical revision trees (`GET /db/ID?open_revs=all&revs=true` from
//!   CouchDB, leaves with bodies, attachment data, content types, `revpos`) and an exact
//!   `settee status` (0 unpushed, 0 rejected, 0 unpulled).
//!
//! Seeded: the seed is printed, `SETTEE_TEST_SEED=<seed>` replays it.
//! `SETTEE_CRASH_KILLS` sets the number of kills per direction (100 by default).

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;
// A full disk: RLIMIT_FSIZE on the child, a write and a pull that fail and resume.
#[path = "crash/disk_full.rs"]
mod disk_full;
// `settee compact` killed while it rewrites the store's files.
#[path = "crash/compact.rs"]
mod compact;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee::replicate::{find_start, ReplicationLog};
use settee::store::Database;
use settee::store::{ChangesOptions, ChangesStyle, GetOptions, OpenOptions, OpenRevs};
use settee::Seq;
use settee_testkit::http::{self, Log, Reply, Request, Rule};
use settee_testkit::leaves::Compare;
use settee_testkit::TestDb;

/// Kills per direction (`SETTEE_CRASH_KILLS`).
fn kills_wanted() -> usize {
    std::env::var("SETTEE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// The run's seed: `SETTEE_TEST_SEED`, or the clock; printed either way.
pub(crate) fn seed(test: &str) -> u64 {
    settee_testkit::seed("SETTEE_TEST_SEED", test)
}

/// How long a CLI child may run before the test gives up on it: a full replication of one
/// cycle takes about a second; a child that neither exits nor closes its stdout by then
/// hangs.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// How long reopening a store waits for its lock after its process was killed (the store's
/// own wait is short, for a user; the kernel closes a killed child's files when it is
/// reaped, later on a loaded machine).
const REOPEN_WAIT: Duration = Duration::from_secs(10);

/// Opens the store a killed or finished child used, with [`REOPEN_WAIT`] for its lock.
pub(crate) fn reopen(store: &Path) -> Database {
    Database::open_with(OpenOptions {
        lock_wait: REOPEN_WAIT,
        ..OpenOptions::new(store)
    })
    .unwrap_or_else(|e| panic!("reopening {}: {e}", store.display()))
}

/// Changes per batch: small, so that one cycle's work is several batches.
const BATCH_SIZE: &str = "3";
/// New documents per cycle (plus two edits and a conflict branch of older ones).
const NEW_DOCS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    /// `settee replicate STORE URL`.
    Push,
    /// `settee replicate URL STORE`.
    Pull,
}

/// Where the proxy kills the running child, counting the run's requests from 1.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Before request n reaches the server.
    Before(u64),
    /// After the server answered request n, before the child hears it.
    Answered(u64),
    /// This long after the child got the answer to request n.
    After(u64, Duration),
}

/// The proxy's side of a run: which run, how many requests it made, where to kill it, and
/// the child itself (so the proxy can kill it; the test thread takes it back to reap it).
#[derive(Default)]
struct Trigger {
    run: u64,
    seen: u64,
    at: Option<KillAt>,
    child: Option<Child>,
    /// A kill that came before the child was handed over (it is killed as soon as it is).
    pending: bool,
    /// What the kill landed on: the request's method and endpoint.
    landed: Option<String>,
}

impl Trigger {
    fn kill(&mut self, what: String) {
        self.at = None;
        self.landed = Some(what);
        match &mut self.child {
            Some(c) => {
                let _ = c.kill(); // SIGKILL
            }
            None => self.pending = true,
        }
    }
}

/// A request's method and endpoint, for the summary of where kills landed.
fn endpoint(req: &Request) -> String {
    let path = req.path();
    let last = path.rsplit('/').next().unwrap_or_default();
    let kind = if path.contains("/_local/") {
        "_local"
    } else if last.starts_with('_') {
        last
    } else if path.matches('/').count() <= 1 {
        "db"
    } else {
        "doc"
    };
    format!("{} {kind}", req.method)
}

/// What one CLI run did.
pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// The requests it made through the proxy (empty for runs that do not use it).
    requests: Vec<Request>,
    /// Where the kill landed, if it was killed.
    landed: Option<String>,
}

impl Run {
    pub(crate) fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }
}

/// The `settee` command with the test server's password in its environment.
pub(crate) fn settee() -> Command {
    common::settee_with_password().command()
}

/// A run through the proxy: its trigger, its log, and where to kill the child.
#[derive(Clone, Copy)]
struct Watch<'a> {
    trigger: &'a Arc<Mutex<Trigger>>,
    log: &'a Log,
    at: Option<KillAt>,
}

/// Runs `cmd` to the end, or until the watch's trigger kills it; stdout and stderr captured.
fn run_cli(mut cmd: Command, watch: Option<Watch<'_>>, stderr_file: &Path) -> Run {
    let trigger = watch.map(|w| (w.trigger, w.log, w.at));
    let start = trigger.map(|(_, log, _)| log.lock().unwrap().len());
    if let Some((t, _, at)) = trigger {
        let mut t = t.lock().unwrap();
        t.run += 1;
        t.seen = 0;
        t.at = at;
        t.pending = false;
        t.landed = None;
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_file).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Until the child exits or is killed (its stdout closes either way), or the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let read = stdout.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(read);
    });
    let mut child = Some(child);
    if let Some((t, _, _)) = trigger {
        let mut t = t.lock().unwrap();
        let mut c = child.take().unwrap();
        if t.pending {
            let _ = c.kill();
        }
        t.child = Some(c);
    }
    let read = rx.recv_timeout(CHILD_DEADLINE);
    let (mut child, landed) = match trigger {
        Some((t, _, _)) => {
            let mut t = t.lock().unwrap();
            t.at = None;
            (t.child.take().unwrap(), t.landed.take())
        }
        None => (child.take().unwrap(), None),
    };
    let Ok(out) = read else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the settee child did not finish within {CHILD_DEADLINE:?} (it hangs); its stderr: {}",
            std::fs::read_to_string(stderr_file).unwrap_or_default()
        );
    };
    let out = out.unwrap();
    let status = child.wait().unwrap();
    let requests = match trigger {
        Some((_, log, _)) => log.lock().unwrap()[start.unwrap()..].to_vec(),
        None => Vec::new(),
    };
    Run {
        status,
        stdout: out,
        stderr: std::fs::read_to_string(stderr_file).unwrap_or_default(),
        requests,
        landed: landed.filter(|_| status.signal() == Some(9)),
    }
}

/// The test's view of its CouchDB database (deleted with it): its own HTTP client (not
/// Settee's), so that what the server says is checked with nothing of ours in between.
pub(crate) struct Couch {
    http: reqwest::Client,
    pub(crate) db: TestDb,
}

impl Couch {
    /// A new database on the test server, which must be Apache CouchDB.
    pub(crate) fn create(prefix: &str) -> Couch {
        common::couchdb_server();
        Couch {
            http: reqwest::Client::new(),
            db: TestDb::create(prefix),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.db.url())
    }

    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .header("Accept", "application/json");
        if let Some((user, password)) = self.db.server().credentials() {
            rb = rb.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// `_changes?style=all_docs` since `since`: each document's leaves.
    pub(crate) async fn changes(&self, since: &str) -> BTreeMap<String, Vec<String>> {
        let since: String = url::form_urlencoded::byte_serialize(since.as_bytes()).collect();
        let body = self
            .get(&format!("/_changes?style=all_docs&since={since}"))
            .await;
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let revs = r["changes"].as_array().unwrap();
                let revs = revs.iter().map(|c| c["rev"].as_str().unwrap().to_owned());
                (r["id"].as_str().unwrap().to_owned(), revs.collect())
            })
            .collect()
    }

    /// Every leaf of `id` as CouchDB has it (`open_revs=all&revs=true`, attachment data).
    pub(crate) async fn leaves(&self, id: &str) -> BTreeMap<String, Value> {
        let body = self
            .get(&format!("/{id}?open_revs=all&revs=true&attachments=true"))
            .await;
        body.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let doc = r.get("ok").unwrap_or_else(|| panic!("{id}: {r}"));
                (doc["_rev"].as_str().unwrap().to_owned(), compared(doc))
            })
            .collect()
    }
}

/// A leaf as `settee_testkit::leaves` compares it: body, `_revisions`, `_deleted`, and each
/// attachment's type, data, `revpos` and digest (checked against the data; on CouchDB a
/// compressible type's digest is of its gzipped bytes, which the store never has).
fn compared(doc: &Value) -> Value {
    Compare::for_test_server().leaf(doc)
}

/// Every leaf of `id` in the store, as [`Couch::leaves`] shows them.
pub(crate) fn store_leaves(db: &Database, id: &str) -> BTreeMap<String, Value> {
    let opts = GetOptions {
        revs: true,
        attachments: true,
        ..Default::default()
    };
    db.open_revs(id, OpenRevs::All, &opts)
        .unwrap()
        .into_iter()
        .map(|r| {
            let r = serde_json::to_value(r).unwrap();
            let doc = r.get("ok").unwrap_or_else(|| panic!("{id}: {r}"));
            (doc["_rev"].as_str().unwrap().to_owned(), compared(doc))
        })
        .collect()
}

/// Asserts that every listed document has the same leaves in the store and on CouchDB.
pub(crate) async fn assert_same_trees(couch: &Couch, store: &Path, ids: &BTreeSet<String>) {
    let db = reopen(store);
    let remote: Vec<(String, BTreeMap<String, Value>)> = futures::stream::iter(ids.iter())
        .map(|id| async move { (id.clone(), couch.leaves(id).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, leaves) in remote {
        let local = store_leaves(&db, &id);
        assert_eq!(
            local, leaves,
            "{id}: the store's leaves differ from CouchDB's"
        );
    }
}

/// `settee status STORE URL` must say: nothing unpushed, rejected or unpulled.
pub(crate) fn assert_status_clean(store: &Path, url: &str, dir: &Path) {
    let mut cmd = settee();
    cmd.arg("status").arg(store).arg(url);
    let run = run_cli(cmd, None, &dir.join("status.err"));
    assert!(run.status.success(), "status: {}", run.stderr);
    let st: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        (&st["unpushed"], &st["rejected"], &st["unpulled"]),
        (&json!(0), &json!(0), &json!(0)),
        "settee status after a full run: {st}"
    );
}

/// One cycle's new work, as documents to write with `new_edits=true` and conflict branches
/// to write with `new_edits=false`. `revs` holds every document's current revision and
/// (for conflict branches) its first.
pub(crate) fn work(
    rng: &mut StdRng,
    cycle: usize,
    revs: &BTreeMap<String, String>,
) -> (Vec<Value>, Vec<Value>) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let words = ["lorem ", "ipsum ", "dolor ", "sit ", "amet ", "settee "];
    let text = |rng: &mut StdRng| {
        let n = rng.gen_range(20..600);
        (0..n)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect::<String>()
    };
    let mut docs = Vec::new();
    for i in 0..NEW_DOCS {
        let mut atts = serde_json::Map::new();
        if i % 3 != 1 {
            atts.insert(
                "note.txt".into(),
                json!({"content_type": "text/plain", "data": b64(text(rng).as_bytes())}),
            );
        }
        if i % 3 != 0 {
            let bytes: Vec<u8> = (0..rng.gen_range(100..6000)).map(|_| rng.gen()).collect();
            atts.insert(
                "blob.bin".into(),
                json!({"content_type": "application/octet-stream", "data": b64(&bytes)}),
            );
        }
        let mut doc = json!({"_id": format!("d{cycle:03}-{i}"), "cycle": cycle, "text": text(rng)});
        if !atts.is_empty() {
            doc["_attachments"] = Value::Object(atts);
        }
        docs.push(doc);
    }
    let mut branches = Vec::new();
    if cycle > 0 {
        let prev = |i: usize| format!("d{:03}-{i}", cycle - 1);
        // An edit keeping the text as a stub and adding an image.
        let (id, rev) = (prev(0), &revs[&prev(0)]);
        let png: Vec<u8> = (0..rng.gen_range(50..3000)).map(|_| rng.gen()).collect();
        docs.push(
            json!({"_id": id, "_rev": rev, "edited": cycle, "_attachments": {
            "note.txt": {"stub": true},
            "img.png": {"content_type": "image/png", "data": b64(&png)}}}),
        );
        // A deletion.
        docs.push(json!({"_id": prev(1), "_rev": revs[&prev(1)], "_deleted": true}));
        // A branch made elsewhere, with its own attachment, beside the first revision.
        let (id, first) = (prev(2), &revs[&prev(2)]);
        let parent = first.split_once('-').unwrap().1;
        let hash: String = (0..32)
            .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap())
            .collect();
        branches.push(json!({"_id": id, "_rev": format!("2-{hash}"),
            "_revisions": {"start": 2, "ids": [hash, parent]}, "theirs": true,
            "_attachments": {"their.txt": {"content_type": "text/plain", "revpos": 2,
                "data": b64(text(rng).as_bytes())}}}));
    }
    (docs, branches)
}

/// The ids a cycle touches.
fn touched(cycle: usize) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = (0..NEW_DOCS).map(|i| format!("d{cycle:03}-{i}")).collect();
    if cycle > 0 {
        ids.extend((0..3).map(|i| format!("d{:03}-{i}", cycle - 1)));
    }
    ids
}

/// One direction's world: CouchDB database, store, proxy, the trigger and the model.
struct Crash {
    direction: Direction,
    rt: tokio::runtime::Runtime,
    couch: Couch,
    dir: tempfile::TempDir,
    store: PathBuf,
    /// The database through the proxy, with the user name (the CLI's password is in its
    /// environment).
    proxy_db_url: String,
    log: Log,
    trigger: Arc<Mutex<Trigger>>,
    revs: BTreeMap<String, String>,
}

impl Crash {
    fn new(direction: Direction) -> Crash {
        let couch = Couch::create(match direction {
            Direction::Push => "crash-push",
            Direction::Pull => "crash-pull",
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let trigger: Arc<Mutex<Trigger>> = Arc::default();
        let t = trigger.clone();
        let (proxy, log) = rt.block_on(http::proxy(
            couch.db.server().url(),
            move |req: &Request| {
                let mut tr = t.lock().unwrap();
                tr.seen += 1;
                let n = tr.seen;
                match tr.at {
                    Some(KillAt::Before(k)) if k == n => {
                        tr.kill(format!("before {}", endpoint(req)));
                        Rule::Answer(Reply::json(503, &json!({"error": "killed"})))
                    }
                    Some(KillAt::Answered(k)) if k == n => {
                        let (t, what) = (t.clone(), format!("answered {}", endpoint(req)));
                        tr.at = None;
                        Rule::Edit(Box::new(move |reply| {
                            t.lock().unwrap().kill(what);
                            reply
                        }))
                    }
                    Some(KillAt::After(k, delay)) if k == n => {
                        let (t, what, run) =
                            (t.clone(), format!("after {}", endpoint(req)), tr.run);
                        tr.at = None;
                        Rule::Edit(Box::new(move |reply| {
                            std::thread::spawn(move || {
                                // Not waiting for anything: the random moment of the crash.
                                std::thread::sleep(delay);
                                let mut tr = t.lock().unwrap();
                                if tr.run == run {
                                    tr.kill(what);
                                }
                            });
                            reply
                        }))
                    }
                    _ => Rule::Forward,
                }
            },
        ));
        let dir = tempfile::tempdir().unwrap();
        Crash {
            direction,
            rt,
            proxy_db_url: couch
                .db
                .server()
                .via(&proxy)
                .db_url_with_user(couch.db.name()),
            couch,
            store: dir.path().join("store"),
            dir,
            log,
            trigger,
            revs: BTreeMap::new(),
        }
    }

    /// Writes one cycle's work to the source.
    fn add_work(&mut self, rng: &mut StdRng, cycle: usize) {
        let (docs, branches) = work(rng, cycle, &self.revs);
        let written: Vec<(String, String)> = match self.direction {
            Direction::Push => {
                let db = reopen(&self.store);
                let res = db.bulk_docs(docs, true).unwrap();
                db.bulk_docs(branches, false).unwrap();
                res.into_iter()
                    .map(|r| {
                        assert!(r.error.is_none(), "{}: {:?}", r.id, r.reason);
                        (r.id, r.rev.unwrap().to_string())
                    })
                    .collect()
            }
            Direction::Pull => self.rt.block_on(async {
                let res = self.couch.post("/_bulk_docs", json!({"docs": docs})).await;
                let branches = json!({"docs": branches, "new_edits": false});
                self.couch.post("/_bulk_docs", branches).await;
                res.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        assert!(r["ok"] == true, "{r}");
                        let rev = r["rev"].as_str().unwrap().to_owned();
                        (r["id"].as_str().unwrap().to_owned(), rev)
                    })
                    .collect()
            }),
        };
        self.revs.extend(written);
    }

    /// The replication command, through the proxy.
    fn replicate(&self) -> Command {
        let mut cmd = settee();
        cmd.arg("replicate");
        match self.direction {
            Direction::Push => cmd.arg(&self.store).arg(&self.proxy_db_url),
            Direction::Pull => cmd.arg(&self.proxy_db_url).arg(&self.store),
        };
        // A checkpoint after every batch: many checkpoint writes to land in.
        cmd.args(["--batch-size", BATCH_SIZE, "--checkpoint-interval", "0"]);
        cmd.arg("--json");
        cmd
    }

    fn run(&self, at: Option<KillAt>) -> Run {
        let err = self.dir.path().join("replicate.err");
        let watch = Watch {
            trigger: &self.trigger,
            log: &self.log,
            at,
        };
        run_cli(self.replicate(), Some(watch), &err)
    }

    /// Where the next run starts (both peers' `_local/<rep id>`, compared as the replicator
    /// compares them), and the documents the source changed after that: all the next run
    /// may send or fetch. Checks on the way that the checkpoint is not ahead of the data.
    fn start_and_allowed(&self, db: &Database) -> (Seq, BTreeSet<String>) {
        self.rt.block_on(async {
            let rows = self.couch.get("/_local_docs?include_docs=true").await;
            let rows = rows["rows"].as_array().unwrap().clone();
            assert!(rows.len() <= 1, "one replication, one log: {rows:?}");
            let (couch_log, store_log) = match rows.first() {
                Some(row) => {
                    let rep_id = row["id"].as_str().unwrap().trim_start_matches("_local/");
                    let store_log = db.get_local(rep_id).ok();
                    let parse = |v: &Value| ReplicationLog::from_doc(v);
                    (parse(&row["doc"]), store_log.as_ref().and_then(parse))
                }
                None => (None, None),
            };
            let (source, target) = match self.direction {
                Direction::Push => (store_log, couch_log),
                Direction::Pull => (couch_log, store_log),
            };
            let start = find_start(source.as_ref(), target.as_ref());
            // The source's leaves: all of them, and those changed after `start`.
            let (all, after) = match self.direction {
                Direction::Push => {
                    let since = start.as_local().expect("a store's sequence is a number");
                    let leaves = |since| {
                        let opts = ChangesOptions {
                            since,
                            style: ChangesStyle::AllDocs,
                            ..Default::default()
                        };
                        let changes = db.changes(&opts).unwrap().results;
                        changes
                            .into_iter()
                            .map(|c| (c.id, c.changes.iter().map(|r| r.to_string()).collect()))
                            .collect::<BTreeMap<String, Vec<String>>>()
                    };
                    (leaves(0), leaves(since))
                }
                Direction::Pull => (
                    self.couch.changes("0").await,
                    self.couch.changes(&start.to_query()).await,
                ),
            };
            // Not ahead of the data: what the checkpoint covers is on the target.
            let covered: BTreeMap<String, Vec<String>> = all
                .into_iter()
                .filter(|(id, _)| !after.contains_key(id))
                .collect();
            let missing: Vec<String> = match self.direction {
                Direction::Push => {
                    let diff = self.couch.post("/_revs_diff", json!(covered)).await;
                    diff.as_object().unwrap().keys().cloned().collect()
                }
                Direction::Pull => {
                    let ask = covered
                        .into_iter()
                        .map(|(id, revs)| (id, revs.iter().map(|r| r.parse().unwrap()).collect()))
                        .collect();
                    let diff = db.revs_diff(ask).unwrap();
                    diff.into_iter()
                        .filter(|(_, d)| !d.missing.is_empty())
                        .map(|(id, _)| id)
                        .collect()
                }
            };
            assert!(
                missing.is_empty(),
                "the checkpoint {start} covers documents the target lacks: {missing:?}"
            );
            (start, after.into_keys().collect())
        })
    }
}

/// The documents a run sent (push: `_bulk_docs` and `_revs_diff`) or fetched (pull:
/// `_bulk_get`, and a document GET, the fallback), with the number of revisions.
fn sent_or_fetched(direction: Direction, requests: &[Request]) -> (BTreeSet<String>, usize) {
    let mut ids = BTreeSet::new();
    let mut revs = 0;
    for req in requests {
        let last = req.path().rsplit('/').next().unwrap_or_default();
        let body = || serde_json::from_slice::<Value>(&req.body).unwrap();
        match (direction, req.method.as_str(), last) {
            (Direction::Push, "POST", "_bulk_docs") => {
                for d in body()["docs"].as_array().unwrap() {
                    ids.insert(d["_id"].as_str().unwrap().to_owned());
                    revs += 1;
                }
            }
            (Direction::Push, "POST", "_revs_diff") => {
                ids.extend(body().as_object().unwrap().keys().cloned());
            }
            (Direction::Pull, "POST", "_bulk_get") => {
                for d in body()["docs"].as_array().unwrap() {
                    ids.insert(d["id"].as_str().unwrap().to_owned());
                    revs += 1;
                }
            }
            (Direction::Pull, "GET", _) if req.query("open_revs").is_some() => {
                ids.insert(last.to_owned());
                revs += 1;
            }
            // A document written on its own (an attachment upload), should the writer use one.
            (Direction::Push, "PUT", _)
                if !req.path().contains("/_local/") && req.path().matches('/').count() > 1 =>
            {
                ids.insert(last.to_owned());
                revs += 1;
            }
            _ => {}
        }
    }
    (ids, revs)
}

fn sigkill_at_random_points(direction: Direction) {
    let name = format!("sigkill_{direction:?}").to_lowercase();
    let mut rng = StdRng::seed_from_u64(seed(&name));
    let mut w = Crash::new(direction);
    let wanted = kills_wanted();
    // Calibration: one cycle's work replicated in full gives the request count a kill
    // point is drawn from.
    w.add_work(&mut rng, 0);
    let full = w.run(None);
    assert!(full.status.success(), "{}", full.stderr);
    let requests_per_cycle = full.requests.len() as u64;
    let mut cycle = 1;
    let mut kills = 0;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut checked_runs, mut checked_revs) = (0, 0);
    // The first cycle whose documents have not been compared since a run completed.
    let mut unchecked = 0;
    while kills < wanted {
        assert!(cycle < wanted * 3, "only {kills} kills in {cycle} cycles");
        w.add_work(&mut rng, cycle);
        let n = rng.gen_range(1..=requests_per_cycle);
        let mut at = Some(match rng.gen_range(0..3) {
            0 => KillAt::Before(n),
            1 => KillAt::Answered(n),
            _ => KillAt::After(n, Duration::from_micros(rng.gen_range(0..20_000))),
        });
        // Kill, then resume: to the end, or (a third of the time) in the next cycle's run,
        // with more work and another kill.
        loop {
            let (start, allowed) = {
                let db = reopen(&w.store);
                db.verify()
                    .unwrap_or_else(|e| panic!("cycle {cycle}, after {kills} kills: {e}"));
                w.start_and_allowed(&db)
            };
            let run = w.run(at);
            let (ids, revs) = sent_or_fetched(direction, &run.requests);
            let extra: Vec<&String> = ids.difference(&allowed).collect();
            assert!(
                extra.is_empty(),
                "cycle {cycle}: the run from checkpoint {start} sent or fetched documents it covers: {extra:?}"
            );
            // A pull reads the source's feed through the proxy: it must start there.
            let feed = run
                .requests
                .iter()
                .find(|r| r.path().ends_with("/_changes"));
            if let Some(since) = feed.map(|r| r.query("since").unwrap_or_else(|| "0".into())) {
                assert_eq!(
                    since,
                    start.to_query(),
                    "cycle {cycle}: the feed read from {since}"
                );
            }
            checked_runs += 1;
            checked_revs += revs;
            if run.killed() {
                kills += 1;
                let what = run.landed.clone().unwrap_or_else(|| "?".into());
                *landed.entry(what).or_default() += 1;
                if kills < wanted && rng.gen_range(0..3) == 0 {
                    break;
                }
                at = None;
                continue;
            }
            assert!(
                run.status.success(),
                "cycle {cycle}: {:?} {}",
                run.status,
                run.stderr
            );
            // Complete: the same trees for everything touched since the last comparison.
            let ids: BTreeSet<String> = (unchecked..=cycle).flat_map(touched).collect();
            w.rt.block_on(assert_same_trees(&w.couch, &w.store, &ids));
            unchecked = cycle + 1;
            break;
        }
        cycle += 1;
    }
    // The end: a full run, then every document and the status.
    let run = w.run(None);
    assert!(run.status.success(), "{}", run.stderr);
    let all: BTreeSet<String> = w.revs.keys().cloned().collect();
    w.rt.block_on(assert_same_trees(&w.couch, &w.store, &all));
    assert_status_clean(&w.store, &w.proxy_db_url, w.dir.path());
    eprintln!(
        "{name}: {kills} kills in {cycle} cycles ({} docs), {checked_runs} runs checked for re-sends ({checked_revs} revisions sent or fetched); kills landed: {landed:?}",
        all.len()
    );
    if wanted >= 20 {
        let at_checkpoint: usize = landed
            .iter()
            .filter(|(k, _)| k.ends_with("PUT _local"))
            .map(|(_, n)| n)
            .sum();
        assert!(
            at_checkpoint > 0,
            "no kill landed at a checkpoint write: {landed:?}"
        );
    }
}

/// A push (`settee replicate STORE URL`) killed at random points, resumed each time.
#[test]
fn sigkill_at_random_points_of_a_push_with_attachments() {
    sigkill_at_random_points(Direction::Push);
}

/// A pull (`settee replicate URL STORE`) killed at random points, resumed each time.
#[test]
fn sigkill_at_random_points_of_a_pull_with_attachments() {
    sigkill_at_random_points(Direction::Pull);
}
