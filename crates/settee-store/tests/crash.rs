//! Crash safety (sled's `test_crash_recovery` pattern): this test binary starts itself again
//! as a child that writes in a loop (puts, updates, deletes, replicated conflicts,
//! attachments, batches, `_local` docs, Mango indexes created, dropped and maintained,
//! revisions pulled from a registered remote, that remote's confirmations and rejections);
//! the parent kills it with SIGKILL at random moments, reopens the store and checks every
//! invariant (indexes included), that an index answers as a full scan does, and that no
//! document looks synced with the remote unless the remote was said to hold its leaves (the
//! child logs each such statement, fsynced, before making it). The child also keeps an
//! fsynced log of what each acknowledged write left (every touched document's leaves, bodies
//! and attachments, as a digest): after each kill the parent compares every document with
//! it, so an acknowledged write whose content did not survive fails the test, and so does a
//! document changed by no write at all. The seed is printed; rerun a failure with
//! `SETTEE_CRASH_SEED=<seed>`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use settee_store::{
    AllDocsOptions, ChangesOptions, Database, Durability, FindRequest, GetOptions, OpenOptions,
    OpenRevResult, OpenRevs, Rejection, Rev, SyncState,
};

const CHILD_PATH: &str = "SETTEE_STORE_CRASH_CHILD";
const CHILD_SEED: &str = "SETTEE_STORE_CRASH_CHILD_SEED";
const KILLS: usize = 60;
const MIN_KILLS: usize = 50;
const TIME_BUDGET: Duration = Duration::from_secs(45);
/// The remote the child syncs with (in name only: it plays the remote's part itself).
const REMOTE: &str = "http://couch.example/db";

/// The child's log of "the remote holds (id, rev)", one line each, next to the store.
fn held_log(store: &std::path::Path) -> std::path::PathBuf {
    store.with_extension("held")
}

/// Appends `revs` to the held log and fsyncs it, before the store is told. Each line starts
/// with a newline too: a child killed mid-line leaves a fragment that the next line must not
/// run into.
fn log_held(path: &std::path::Path, revs: &[(String, Rev)]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(held_log(path))
        .unwrap();
    for (id, rev) in revs {
        write!(f, "\n{id} {rev}\n").unwrap();
    }
    f.sync_all().unwrap();
}

/// The child's log of acknowledged writes, next to the store.
fn acked_log(store: &std::path::Path) -> std::path::PathBuf {
    store.with_extension("acked")
}

/// What a document is, as the acknowledged-write log records it: a digest of all its leaves
/// with their bodies and attachments' data (`open_revs=all`), or `none`. For `_local/` ids,
/// the local document. Both roles compute it with this one function.
fn doc_state(db: &Database, id: &str) -> String {
    let value = if id.starts_with("_local/") {
        match db.get_local(id) {
            Ok(doc) => doc,
            Err(e) if e.name() == "not_found" => return "none".into(),
            Err(e) => panic!("get_local {id}: {e}"),
        }
    } else {
        let leaves = db
            .open_revs(
                id,
                OpenRevs::All,
                &GetOptions {
                    revs: true,
                    attachments: true,
                    ..Default::default()
                },
            )
            .unwrap();
        if leaves.is_empty() {
            return "none".into();
        }
        serde_json::to_value(&leaves).unwrap()
    };
    use md5::Digest;
    let winner = value["_rev"]
        .as_str()
        .or_else(|| value[0]["ok"]["_rev"].as_str())
        .unwrap_or("?")
        .to_owned();
    format!(
        "{winner}/{}",
        hex::encode(md5::Md5::digest(serde_json::to_vec(&value).unwrap()))
    )
}

/// The acknowledged-write log, written by the child around each write: `begin <ids>` before
/// it (the ids it may change), then after it returns `ack <id> <state>` for each of them and
/// `done`, then an fsync. Lines start with a newline too, as in the held log.
struct AckLog {
    file: std::fs::File,
}

impl AckLog {
    fn open(store: &std::path::Path) -> AckLog {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(acked_log(store))
            .unwrap();
        AckLog { file }
    }

    fn begin(&mut self, ids: &[String]) {
        write!(self.file, "\nbegin {}\n", ids.join(" ")).unwrap();
        self.file.sync_all().unwrap();
    }

    fn done(&mut self, db: &Database, ids: &[String]) {
        let mut text = String::new();
        for id in ids {
            text.push_str(&format!("\nack {id} {}\n", doc_state(db, id)));
        }
        text.push_str("\ndone\n");
        self.file.write_all(text.as_bytes()).unwrap();
        self.file.sync_all().unwrap();
    }
}

/// The parent's reading of one child's acknowledged-write log: the last acknowledged state
/// of each document, and the ids of a write that began but was not logged as done (the kill
/// came during it, or between it and its log: it may or may not be in the store).
#[derive(Default)]
struct Acked {
    states: BTreeMap<String, String>,
    in_flight: Vec<String>,
}

fn read_acked(store: &std::path::Path) -> Acked {
    let text = std::fs::read_to_string(acked_log(store)).unwrap_or_default();
    let mut acked = Acked::default();
    let mut pending = BTreeMap::new();
    // A trailing fragment (no newline) is a line the kill cut short: skipped.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("begin") => {
                acked.in_flight = words.map(str::to_owned).collect();
                pending.clear();
            }
            Some("ack") => {
                let (id, state) = (words.next().unwrap(), words.next().unwrap());
                pending.insert(id.to_owned(), state.to_owned());
            }
            Some("done") => {
                acked.states.append(&mut pending);
                acked.in_flight.clear();
            }
            _ => {}
        }
    }
    acked
}

/// Every document, design and `_local/ckpt` document of the store, with its [`doc_state`].
fn all_states(db: &Database) -> BTreeMap<String, String> {
    let mut ids: Vec<String> = db
        .changes(&ChangesOptions::default())
        .unwrap()
        .results
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.push("_local/ckpt".into());
    ids.into_iter()
        .map(|id| {
            let state = doc_state(db, &id);
            (id, state)
        })
        .filter(|(_, state)| state != "none")
        .collect()
}

/// Child role: write forever; after each acknowledged write print `ack <mode> <update_seq>`.
#[test]
fn crash_child_writer() {
    let (Ok(path), Ok(seed)) = (std::env::var(CHILD_PATH), std::env::var(CHILD_SEED)) else {
        return; // Not the child.
    };
    let seed: u64 = seed.parse().unwrap();
    let immediate = seed % 2 == 0;
    let db = Database::open_with(OpenOptions {
        durability: if immediate {
            Durability::Immediate
        } else {
            Durability::Relaxed {
                flush_every: Duration::from_millis(5),
            }
        },
        revs_limit: 20,
        ..OpenOptions::new(&path)
    })
    .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let b64 = base64::engine::general_purpose::STANDARD;
    let store_path = std::path::PathBuf::from(&path);
    let mut acked = AckLog::open(&store_path);
    // Registered and built in one child, "exists" in the next ones (and built further if a
    // kill cut its build short).
    let by_i = vec!["_design/by-i".to_string()];
    acked.begin(&by_i);
    db.create_index(&json!({"index": {"fields": ["i"]}, "ddoc": "by-i", "name": "i"}))
        .unwrap();
    acked.done(&db, &by_i);
    // The remote is registered once the store holds documents (a no-op in the children
    // after the one that did it), so that they are pending with it (format 6's intervals),
    // and the confirmations below take spans out of the intervals, in id order.
    let register_at = rng.gen_range(0..60u64);
    for i in 0u64.. {
        if i == register_at {
            db.register_remote(REMOTE, Default::default()).unwrap();
        }
        let id = format!("d{:03}", rng.gen_range(0..150));
        let current = db.get(&id, &GetOptions::default()).ok();
        let cur_rev = current
            .as_ref()
            .map(|d| d["_rev"].as_str().unwrap().to_owned());
        // The documents this step may change, logged before and after it (none for the
        // sync-state steps, which change no document).
        let op = rng.gen_range(0..12);
        let mut touched = match op {
            6 | 9 | 10 => vec![],
            11 => vec!["_design/extra".to_string()],
            0..=5 | 8 => vec![id.clone()],
            _ => vec!["_local/ckpt".to_string()],
        };
        if !touched.is_empty() {
            acked.begin(&touched);
        }
        match op {
            0 | 1 => {
                let mut doc =
                    json!({"_id": id, "i": i, "text": "x".repeat(rng.gen_range(10..800))});
                if let Some(r) = &cur_rev {
                    doc["_rev"] = json!(r);
                }
                db.put(doc).unwrap();
            }
            2 => {
                if let Some(r) = &cur_rev {
                    db.delete(&id, &r.parse().unwrap()).unwrap();
                }
            }
            3 => {
                let hash: String = (0..32)
                    .map(|_| format!("{:x}", rng.gen_range(0..16)))
                    .collect();
                let deleted = rng.gen_bool(0.3);
                db.bulk_docs(
                    vec![json!({"_id": id, "_revisions": {"start": 2, "ids": [hash, "root"]}, "_deleted": deleted, "i": i})],
                    false,
                )
                .unwrap();
            }
            4 | 5 => {
                let bytes: Vec<u8> = (0..rng.gen_range(1..4000)).map(|_| rng.gen()).collect();
                let mut doc = json!({"_id": id, "i": i, "_attachments": {
                    format!("a{}", rng.gen_range(0..3)): {"content_type": "application/octet-stream", "data": b64.encode(&bytes)}
                }});
                if let Some(r) = &cur_rev {
                    doc["_rev"] = json!(r);
                }
                db.put(doc).unwrap();
            }
            6 => {
                let docs: Vec<Value> = (0..20)
                    .map(|j| json!({"_id": format!("b{:04}", rng.gen_range(0..400)), "i": i, "j": j}))
                    .collect();
                touched = docs
                    .iter()
                    .map(|d| d["_id"].as_str().unwrap().to_owned())
                    .collect();
                acked.begin(&touched);
                db.bulk_docs(docs, true).unwrap();
            }
            8 => {
                // A revision pulled from the remote.
                let hash: String = (0..32)
                    .map(|_| format!("{:x}", rng.gen_range(0..16)))
                    .collect();
                let (start, ids) = match &cur_rev {
                    Some(r) if rng.gen_bool(0.7) => {
                        let r: Rev = r.parse().unwrap();
                        (r.pos() + 1, json!([hash, r.hash()]))
                    }
                    _ => (1, json!([hash])),
                };
                let rev: Rev = format!("{start}-{hash}").parse().unwrap();
                log_held(&store_path, &[(id.clone(), rev.clone())]);
                let doc = json!({"_id": id, "_rev": rev.to_string(),
                    "_revisions": {"start": start, "ids": ids}, "i": i});
                db.bulk_docs_json_from(&[serde_json::value::to_raw_value(&doc).unwrap()], REMOTE)
                    .unwrap();
            }
            9 => {
                // The remote confirms the leaves of a few unsynced documents (a push).
                let page = db.unsynced(REMOTE, None, rng.gen_range(1..20)).unwrap();
                let mut held: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
                let mut log = Vec::new();
                for (doc, state) in page {
                    if let SyncState::Unpushed { revs } = state {
                        for r in revs {
                            log.push((doc.clone(), r.clone()));
                            held.entry(doc.clone()).or_default().push(r);
                        }
                    }
                }
                log_held(&store_path, &log);
                db.record_remote_revs(REMOTE, &held, &[]).unwrap();
            }
            10 => {
                if let Some(r) = &cur_rev {
                    db.record_remote_revs(
                        REMOTE,
                        &BTreeMap::new(),
                        &[Rejection {
                            id: id.clone(),
                            rev: r.parse().unwrap(),
                            error: "forbidden".into(),
                            reason: format!("refused at {i}"),
                        }],
                    )
                    .unwrap();
                }
            }
            11 => {
                // An index over the batch documents comes and goes: its entries are written
                // by its build and dropped with its definition.
                let body = json!({"index": {"fields": ["j", "i"]}, "ddoc": "extra", "name": "ji"});
                if rng.gen_bool(0.5) {
                    db.create_index(&body).unwrap();
                } else if let Err(e) = db.delete_index("extra", "ji") {
                    assert_eq!(e.name(), "not_found");
                }
            }
            _ => {
                let cur = db
                    .get_local("ckpt")
                    .ok()
                    .map(|d| d["_rev"].as_str().unwrap().to_owned());
                let mut doc = json!({"_id": "_local/ckpt", "seq": i});
                if let Some(r) = cur {
                    doc["_rev"] = json!(r);
                }
                db.put_local(doc).unwrap();
            }
        }
        if !touched.is_empty() {
            acked.done(&db, &touched);
        }
        if rng.gen_ratio(1, 50) {
            db.compact().unwrap();
        }
        println!(
            "ack {} {}",
            u8::from(immediate),
            db.info().unwrap().update_seq
        );
    }
}

/// Compares every document with what the killed child acknowledged (and what the previous
/// reopen found, for the documents it did not write), then makes `snapshot` today's states.
/// With [`Durability::Immediate`], every acknowledged write must be there, exactly; with
/// relaxed durability only the documents the child never wrote are checked (it may lose its
/// last writes). A write the kill interrupted may or may not be there.
fn check_acknowledged(
    db: &Database,
    path: &std::path::Path,
    snapshot: &mut BTreeMap<String, String>,
    immediate: bool,
    (seed, kill): (u64, usize),
) -> usize {
    let current = all_states(db);
    let acked = read_acked(path);
    let mut expected = snapshot.clone();
    for (id, state) in &acked.states {
        if state == "none" {
            expected.remove(id);
        } else {
            expected.insert(id.clone(), state.clone());
        }
    }
    let ids: std::collections::BTreeSet<&String> = current.keys().chain(expected.keys()).collect();
    let mut compared = 0;
    for id in ids {
        if acked.in_flight.contains(id) || (!immediate && acked.states.contains_key(id)) {
            continue;
        }
        compared += 1;
        assert_eq!(
            current.get(id),
            expected.get(id),
            "seed {seed} kill {kill}: {id} is not what the child acknowledged (or, if it did \
             not write it, what the previous reopen found); its leaves: {:?}",
            db.open_revs(id, OpenRevs::All, &GetOptions::default()).ok()
        );
    }
    *snapshot = current;
    compared
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_store() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let seed: u64 = std::env::var("SETTEE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed: {seed} (rerun with SETTEE_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut last_seen_seq = 0u64;
    let mut kills = 0;
    // Every document's state as the previous reopen found it.
    let mut snapshot: BTreeMap<String, String> = BTreeMap::new();
    let mut compared = 0;
    while kills < KILLS && (kills < MIN_KILLS || started.elapsed() < TIME_BUDGET) {
        let child_seed: u64 = rng.gen();
        // Each child's log starts empty: what it holds is that child's writes.
        let _ = std::fs::remove_file(acked_log(&path));
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_PATH, &path)
            .env(CHILD_SEED, child_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let target_acks = rng.gen_range(1..30);
        let mut acks = 0;
        let mut last_ack: Option<(bool, u64)> = None;
        let mut line = String::new();
        while acks < target_acks {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("seed {seed}: child {child_seed} exited early (run it alone to see why)");
            }
            if let Some(rest) = line.trim_end().split("ack ").nth(1) {
                let mut parts = rest.split(' ');
                let immediate = parts.next() == Some("1");
                let seq: u64 = parts.next().unwrap().parse().unwrap();
                last_ack = Some((immediate, seq));
                acks += 1;
            }
        }
        // Not waiting for anything: this picks where in its next writes the child dies.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..4000)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;

        let db = common::reopen(&path)
            .unwrap_or_else(|e| panic!("seed {seed} kill {kills}: store does not open: {e}"));
        compared += check_acknowledged(
            &db,
            &path,
            &mut snapshot,
            child_seed % 2 == 0,
            (seed, kills),
        );
        let report = db
            .verify()
            .unwrap_or_else(|e| panic!("seed {seed} kill {kills}: invariant broken: {e}"));
        let info = db.info().unwrap();
        assert!(info.update_seq >= report.max_seq);
        assert!(
            info.update_seq >= last_seen_seq,
            "seed {seed} kill {kills}: update_seq went back from {last_seen_seq} to {}",
            info.update_seq
        );
        if let Some((true, acked)) = last_ack {
            // Durability::Immediate: an acknowledged write is on disk.
            assert!(
                info.update_seq >= acked,
                "seed {seed} kill {kills}: acknowledged seq {acked} lost (store at {})",
                info.update_seq
            );
        }
        last_seen_seq = info.update_seq;
        // The same facts through the public API.
        let changes = db.changes(&ChangesOptions::default()).unwrap();
        assert_eq!(
            changes.results.len() as u64,
            info.doc_count + info.doc_del_count
        );
        assert!(changes.last_seq <= info.update_seq);
        // Never synced unless the remote was said to hold every leaf.
        let said: HashSet<(String, String)> = std::fs::read_to_string(held_log(&path))
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| {
                let (id, rev) = l.trim_end().split_once(' ')?;
                Some((id.to_owned(), rev.to_owned()))
            })
            .collect();
        let mut unsynced = 0;
        let all_leaves = db
            .changes(&ChangesOptions {
                style: settee_store::ChangesStyle::AllDocs,
                ..Default::default()
            })
            .unwrap();
        for c in &all_leaves.results {
            match db.sync_state(REMOTE, &c.id).unwrap().unwrap() {
                SyncState::Synced | SyncState::Conflicted { .. } => {
                    for rev in &c.changes {
                        assert!(
                            said.contains(&(c.id.clone(), rev.to_string())),
                            "seed {seed} kill {kills}: {} looks synced but {rev} was never held \
                             (leaves {:?}; said of it: {:?}; tree {:?})",
                            c.id,
                            c.changes,
                            said.iter().filter(|(d, _)| *d == c.id).collect::<Vec<_>>(),
                            db.get(
                                &c.id,
                                &GetOptions {
                                    revs: true,
                                    ..Default::default()
                                }
                            )
                            .ok()
                        );
                    }
                }
                _ => unsynced += 1,
            }
        }
        assert_eq!(db.sync_counts(REMOTE).unwrap().unsynced, unsynced);
        let all = db.all_docs(&AllDocsOptions::default()).unwrap();
        assert_eq!(all.rows.len() as u64, info.doc_count);
        // The index answers as a scan of every document does (the design docs excluded).
        let by_index = db
            .find(
                &FindRequest::parse(
                    &json!({"selector": {"i": {"$gte": 0}}, "sort": ["i"], "limit": 100000}),
                )
                .unwrap(),
            )
            .unwrap();
        let by_scan = db
            // No index requires `i` under this $or: a scan of _all_docs.
            .find(&FindRequest::parse(&json!({"selector": {"$or": [{"i": {"$gte": 0}}, {"none": 1}]}, "limit": 100000})).unwrap())
            .unwrap();
        let mut a: Vec<&Value> = by_index.docs.iter().map(|d| &d["_id"]).collect();
        let b: Vec<&Value> = by_scan.docs.iter().map(|d| &d["_id"]).collect();
        a.sort_by_key(|v| v.as_str().unwrap().to_owned());
        assert_eq!(a, b, "seed {seed} kill {kills}: index and scan disagree");
        assert!(by_scan.warning.unwrap().contains("No matching index"));
        for c in &changes.results {
            for r in db
                .open_revs(
                    &c.id,
                    OpenRevs::All,
                    &GetOptions {
                        attachments: true,
                        ..Default::default()
                    },
                )
                .unwrap()
            {
                assert!(
                    matches!(r, OpenRevResult::Ok(_)),
                    "seed {seed}: {} lost a leaf body",
                    c.id
                );
            }
        }
        drop(db);
    }
    eprintln!(
        "crash test: {kills} SIGKILLs in {:.1}s, final update_seq {last_seen_seq}, \
         {compared} documents compared with the acknowledged-write log",
        started.elapsed().as_secs_f64()
    );
    assert!(compared > 0, "no document was compared with the log");
    assert!(kills >= MIN_KILLS);
    assert!(last_seen_seq > 0, "the children never wrote anything");
}
