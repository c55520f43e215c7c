//! Attachments across replicas, end to end (part of `tests/replication.rs`): an attachment on
//! a conflict branch (issue 10, finding 1) pushes and pulls exactly, through the library and
//! the command; random revision trees with attachments on branches agree leaf by leaf on
//! every replica; a stub the target refuses is sent again with its data; a document the
//! server refuses a whole request for is reported while the rest replicate; a kept
//! compressible attachment pulls from Apache CouchDB, whose digests differ from the store's.

use serde_json::{json, Value};
use settee::replicate::{Event, Peer, ReplicateOptions, Replication};
#[allow(unused_imports)]
use settee::Documents as _;
use settee::{Db, ReadOptions};
use settee_testkit::http::{self, Reply, Rule};

use super::{local, remote, run, snapshot};
use settee_testkit::{TestDb, TestServer};

/// The state of issue 10's finding 1, for document `id`: `1-x` synced; the server edits it
/// to `2-s`; locally `2-a` adds the attachment `a.bin`, then `3-a` changes the body; a pull
/// brings `2-s` in as a conflict. The target of the next push holds `2-s`, at the position
/// of `2-a` but on another branch, so `a.bin` must travel as data, not as a stub.
async fn attachment_on_a_conflict_branch(
    l: &(impl settee::Documents + crate::common::AsPeer + Clone),
    r: &(impl settee::Documents + crate::common::AsPeer + Clone),
    id: &str,
) {
    let opts = || ReplicateOptions {
        create_target: true,
        ..Default::default()
    };
    let r1 = l.put(json!({"_id": id, "v": "x"})).await.unwrap()["rev"].clone();
    run(l, r, opts()).await;
    r.put(json!({"_id": id, "_rev": r1, "v": "s"}))
        .await
        .unwrap();
    let r2 = l
        .put(
            json!({"_id": id, "_rev": r1, "v": "a", "_attachments": {"a.bin": {
            "content_type": "application/octet-stream", "data": ATT_BYTES}}}),
        )
        .await
        .unwrap()["rev"]
        .clone();
    l.put(
        json!({"_id": id, "_rev": r2, "v": "a again", "_attachments": {"a.bin": {"stub": true}}}),
    )
    .await
    .unwrap();
    let pull = run(r, l, opts()).await;
    assert_eq!(pull.stats.docs_written, 1, "2-s pulled in");
    let leaves = l
        .open_revs(id, &settee::OpenRevs::All, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(leaves.len(), 2, "a conflict: {leaves:?}");
}

/// Bytes that no server compresses (`application/octet-stream`), base64.
const ATT_BYTES: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `open_revs=all&revs=true&attachments=true` of `ids` on both, compared leaf by leaf (see
/// `snapshot`).
async fn assert_same_leaves(
    a: &(impl settee::Documents + crate::common::AsPeer + Clone),
    b: &(impl settee::Documents + crate::common::AsPeer + Clone),
    ids: &[String],
    what: &str,
) {
    let (sa, sb) = (snapshot(a, ids).await, snapshot(b, ids).await);
    assert_eq!(sa, sb, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_attachment_on_a_conflict_branch_pushes_and_pulls_exactly() {
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::from_store(local(&dir, "l"));
    let r_db = TestDb::named("attbranch");
    let r = remote(&server, r_db.name());
    attachment_on_a_conflict_branch(&l, &r, "d").await;
    // Before the fix: `POST /_bulk_docs answered 412 missing_stub`, on every push.
    for round in 0..2 {
        let push = run(&l, &r, Default::default()).await;
        assert_eq!(push.stats.doc_write_failures, 0, "{:?}", push.doc_failures);
        assert_eq!(push.stats.docs_written, if round == 0 { 1 } else { 0 });
    }
    let ids = vec!["d".to_owned()];
    assert_same_leaves(&l, &r, &ids, "pushed").await;
    let on_server = snapshot(&r, &ids).await;
    let leaves = &on_server["d"].1;
    let three = leaves.iter().find(|d| d["v"] == "a again").unwrap();
    assert_eq!(three["_attachments"]["a.bin"]["data"], ATT_BYTES);
    assert_eq!(three["_revisions"]["start"], 3);
    // And back into a fresh store.
    let fresh = settee::Local::from_store(local(&dir, "fresh"));
    let pull = run(&r, &fresh, Default::default()).await;
    assert_eq!(pull.stats.doc_write_failures, 0, "{:?}", pull.doc_failures);
    assert_same_leaves(&fresh, &r, &ids, "pulled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_attachment_on_a_conflict_branch_pushes_with_the_cli() {
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let name_db = TestDb::named("attbranchcli");
    let name = name_db.name();
    let r = remote(&server, name);
    {
        let l = settee::Local::from_store(local(&dir, "l"));
        attachment_on_a_conflict_branch(&l, &r, "d").await;
    } // closed: the command opens the store itself
    let path = dir.path().join("l");
    let push = || {
        crate::common::settee_with_password().run(&[
            "replicate",
            path.to_str().unwrap(),
            &server.db_url_with_user(name),
        ])
    };
    for round in 0..2 {
        let out = push();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["doc_write_failures"], 0, "{summary}");
    }
    let l = settee::Local::open(&path).unwrap();
    assert_same_leaves(&l, &r, &["d".to_owned()], "pushed by the command").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_refused_by_the_target_is_sent_again_with_its_data() {
    // The server's copy of `2-a` was written by another replica without `a.bin` (same
    // revision id, other content: `new_edits=false` stores what it is given). `a.bin` is
    // unchanged since `2-a`, so the store rightly sends it as a stub, and the server
    // refuses the whole request (Apache CouchDB: 412 `missing_stub`; pouchdb-server: its
    // digest is unknown there). The replicator fetches `3-a` again with its data, as
    // CouchDB's does, and every document of the batch is written.
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::from_store(local(&dir, "l"));
    let r_db = TestDb::named("stubagain");
    let r = remote(&server, r_db.name());
    r.to_peer().create().await.unwrap();
    let r1 = l.put(json!({"_id": "d", "v": 1})).await.unwrap()["rev"].clone();
    let r2: String = l
        .put(
            json!({"_id": "d", "_rev": r1, "v": 2, "_attachments": {"a.bin": {
            "content_type": "application/octet-stream", "data": ATT_BYTES}}}),
        )
        .await
        .unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    l.put(json!({"_id": "d", "_rev": r2, "v": 3, "_attachments": {"a.bin": {"stub": true}}}))
        .await
        .unwrap();
    let (h1, h2) = (
        r1.as_str().unwrap().split_once('-').unwrap().1,
        r2.split_once('-').unwrap().1,
    );
    let other_copy = json!({"_id": "d", "_rev": r2, "_revisions": {"start": 2, "ids": [h2, h1]},
        "v": "another replica's 2-a"});
    let other_copy = serde_json::value::to_raw_value(&other_copy).unwrap();
    assert!(r
        .to_peer()
        .write(vec![other_copy], "another replica")
        .await
        .unwrap()
        .is_empty());
    for i in 0..20 {
        l.put(json!({"_id": format!("e{i:02}")})).await.unwrap();
    }
    let push = run(&l, &r, Default::default()).await;
    assert_eq!(push.stats.doc_write_failures, 0, "{:?}", push.doc_failures);
    assert_eq!(push.stats.docs_written, 21);
    let three = r
        .get(
            "d",
            &ReadOptions {
                rev: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(three["v"], 3);
    let ids: Vec<String> = std::iter::once("d".to_owned())
        .chain((0..20).map(|i| format!("e{i:02}")))
        .collect();
    let on_server = snapshot(&r, &ids).await;
    let leaf = on_server["d"].1.iter().find(|d| d["v"] == 3).unwrap();
    assert_eq!(leaf["_attachments"]["a.bin"]["data"], ATT_BYTES);
    for id in &ids[1..] {
        assert_eq!(on_server[id].1.len(), 1, "{id} written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_the_server_refuses_as_a_whole_request_is_reported_and_the_rest_replicate() {
    // A gateway in front of the real server refuses any `_bulk_docs` request that holds
    // w17 with a 400 for the whole request, as both servers do for a document they cannot
    // parse (CouchDB checks every document before writing any). The batch is halved down to
    // that document, which is reported; every other document is written; the command
    // exits 3.
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, log) = http::proxy(server.url(), |req| {
        let body = String::from_utf8_lossy(&req.body);
        if req.path().ends_with("/_bulk_docs") && body.contains(r#""_id":"w17""#) {
            return Rule::Answer(Reply::json(
                400,
                &json!({"error": "bad_request", "reason": "w17 cannot be parsed"}),
            ));
        }
        Rule::Forward
    })
    .await;
    let via_gateway = |db: &str| {
        let base = match (server.user(), server.password()) {
            (Some(u), Some(p)) => gateway.replacen("://", &format!("://{u}:{p}@"), 1),
            _ => gateway.clone(),
        };
        format!("{base}/{db}")
    };
    let populate = |l: &settee::Local| {
        let l = l.clone();
        async move {
            for i in 0..40 {
                // No attachments: a document with one goes up alone as a multipart PUT
                // (`streamed_push_of_a_large_attachment...`), not in `_bulk_docs`.
                let doc = json!({"_id": format!("w{i:02}"), "i": i});
                l.put(doc).await.unwrap();
            }
        }
    };
    let ids: Vec<String> = (0..40).map(|i| format!("w{i:02}")).collect();
    let check_server = |r: settee::Remote| {
        let ids = ids.clone();
        async move {
            let on_server = snapshot(&r, &ids).await;
            for (id, (winner, leaves)) in &on_server {
                if id == "w17" {
                    assert!(winner.starts_with("deleted (not_found"), "w17 is not there");
                } else {
                    assert_eq!(leaves.len(), 1, "{id} written ({winner})");
                    assert_eq!(leaves[0]["_id"], id.as_str());
                }
            }
        }
    };

    // The library: the summary, the events and the checkpoint name it.
    let l = settee::Local::from_store(local(&dir, "l"));
    populate(&l).await;
    let name_db = TestDb::named("refused");
    let name = name_db.name();
    let r = remote(&server, name);
    let through = settee::Remote::new(&via_gateway(name)).unwrap();
    let opts = ReplicateOptions {
        create_target: true,
        ..Default::default()
    };
    let mut handle = Replication::new(l.to_peer(), through.to_peer(), opts).spawn();
    let mut reported = Vec::new();
    while let Some(event) = handle.next_event().await {
        if let Event::Change { failures, .. } = event {
            reported.extend(failures);
        }
    }
    let summary = handle.finish().await.unwrap();
    assert_eq!(summary.stats.docs_written, 39, "{summary:?}");
    assert_eq!(summary.stats.doc_write_failures, 1);
    assert_eq!(summary.doc_failures, reported);
    let failure = &summary.doc_failures[0];
    assert_eq!(
        (failure.id.as_str(), failure.error.as_str()),
        ("w17", "bad_request")
    );
    assert!(
        failure.rev.as_deref().unwrap().starts_with("1-"),
        "{failure:?}"
    );
    check_server(r.clone()).await;
    let refusals = log
        .lock()
        .unwrap()
        .iter()
        .filter(|req| req.path().ends_with("/_bulk_docs"))
        .count();
    assert!(
        refusals > 1,
        "the batch was split ({refusals} _bulk_docs requests)"
    );
    let st = l.status(&through).await.unwrap();
    assert_eq!((st.local.unpushed, st.local.rejected), (1, 1), "{st:?}");
    assert!(
        matches!(
            l.sync_state(&through, "w17").await.unwrap(),
            Some(settee::SyncState::Rejected { .. })
        ),
        "w17 is listed as refused"
    );

    // The command: exit 3, the document named, the rest written.
    let path = dir.path().join("c");
    {
        let c = settee::Local::from_store(local(&dir, "c"));
        populate(&c).await;
    }
    let name_db = TestDb::named("refusedcli");
    let name = name_db.name();
    let out = crate::common::settee().run(&[
        "replicate",
        path.to_str().unwrap(),
        &via_gateway(name),
        "--create-target",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rejected w17"), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["docs_written"], 39, "{summary}");
    assert_eq!(summary["doc_failures"][0]["id"], "w17", "{summary}");
    check_server(remote(&server, name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_an_edit_that_keeps_a_compressible_attachment_writes_it() {
    // Apache CouchDB sends the kept `text/plain` attachment as a stub whose digest is that of
    // its gzipped bytes, which the store never computed; the store finds it on the
    // revision's ancestor by name and revpos, as CouchDB does (before: `missing_stub`, and
    // the edit was never pulled).
    let server = TestServer::get();
    let dir = tempfile::tempdir().unwrap();
    let l = settee::Local::from_store(local(&dir, "l"));
    let r_db = TestDb::named("gzstub");
    let r = remote(&server, r_db.name());
    r.to_peer().create().await.unwrap();
    let text = "hello hello hello hello hello hello hello hello hello hello hello";
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(text);
    let r1 = r
        .put(json!({"_id": "t", "v": 1, "_attachments": {"a.txt": {"content_type": "text/plain", "data": data}}}))
        .await
        .unwrap()["rev"]
        .clone();
    run(&r, &l, Default::default()).await;
    let stub = r.get("t", &ReadOptions::default()).await.unwrap()["_attachments"]["a.txt"].clone();
    r.put(json!({"_id": "t", "_rev": r1, "v": 2, "_attachments": {"a.txt": stub}}))
        .await
        .unwrap();
    let pull = run(&r, &l, Default::default()).await;
    assert_eq!(pull.stats.doc_write_failures, 0, "{:?}", pull.doc_failures);
    assert_eq!(pull.stats.docs_written, 1);
    assert_same_leaves(&l, &r, &["t".to_owned()], "pulled").await;
    let leaves = snapshot(&l, &["t".to_owned()]).await;
    assert_eq!(leaves["t"].1[0]["v"], 2);
    assert_eq!(
        leaves["t"].1[0]["_attachments"]["a.txt"]["data"],
        data.as_str()
    );
}

/// A small deterministic generator (xorshift64*), so that a failing randomized run can be
/// replayed: the test prints its seed, and `SETTEE_TEST_SEED` sets it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// The live leaves of `id` (attachments as stubs); none if the document does not exist.
async fn live_leaves(
    db: &(impl settee::Documents + crate::common::AsPeer + Clone),
    id: &str,
) -> Vec<Value> {
    db.open_revs(id, &settee::OpenRevs::All, &ReadOptions::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.get("ok").cloned())
        .filter(|d| d.is_object() && d["_deleted"] != true)
        .collect()
}

/// Attachment names and types the randomized test uses: Apache CouchDB stores the two
/// compressible types gzipped (and gives them the digest of the gzipped bytes).
const ATT_KINDS: [(&str, &str); 3] = [
    ("a.bin", "application/octet-stream"),
    ("b.txt", "text/plain"),
    ("c.json", "application/json"),
];

/// New attachment data of `kind`: random bytes, or compressible text.
fn att_data(rng: &mut Rng, kind: usize, step: usize) -> Value {
    use base64::Engine;
    let len = rng.below(300);
    let bytes: Vec<u8> = if kind == 0 {
        (0..len).map(|_| rng.next() as u8).collect()
    } else {
        format!("step {step} ").repeat(len / 8 + 1).into_bytes()
    };
    json!({"content_type": ATT_KINDS[kind].1,
        "data": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// One random edit of `id` on `db`: on a random live leaf (a new document, or a recreated
/// one, when there is none), each attachment kept (as a stub), changed or removed, and
/// maybe one added or replaced.
async fn random_edit(
    db: &(impl settee::Documents + crate::common::AsPeer + Clone),
    id: &str,
    rng: &mut Rng,
    step: usize,
) {
    let leaves = live_leaves(db, id).await;
    let mut doc = json!({"_id": id, "step": step});
    let mut atts = serde_json::Map::new();
    if !leaves.is_empty() {
        let leaf = &leaves[rng.below(leaves.len())];
        doc["_rev"] = leaf["_rev"].clone();
        if let Some(old) = leaf["_attachments"].as_object() {
            for (name, stub) in old {
                let kind = ATT_KINDS.iter().position(|(n, _)| n == name).unwrap();
                match rng.below(10) {
                    // The stub as read (pouchdb-server finds a kept attachment by digest).
                    0..=5 => {
                        atts.insert(name.clone(), stub.clone());
                    }
                    6 | 7 => {
                        atts.insert(name.clone(), att_data(rng, kind, step));
                    }
                    _ => {}
                }
            }
        }
    }
    if rng.chance(40) {
        let kind = rng.below(ATT_KINDS.len());
        atts.insert(ATT_KINDS[kind].0.into(), att_data(rng, kind, step));
    }
    if !atts.is_empty() {
        doc["_attachments"] = Value::Object(atts);
    }
    db.put(doc).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_trees_with_attachments_on_branches_push_and_pull_exactly() {
    // Two local stores and a server database edit six documents at random (attachments
    // added, changed, kept and removed on whichever leaf each picks, so branches carry
    // attachments at the same positions) and replicate between each other in random
    // directions. Every replication must write everything; at the end all of them, a
    // fresh store pulled from the server and a fresh server database pushed from a store
    // agree leaf by leaf (bodies, `_revisions`, attachment bytes and revpos).
    let server = TestServer::get();
    // Odd: the xorshift generator needs a state other than 0 (a replayed seed is printed
    // before this, and gives the same state again).
    let seed = settee_testkit::seed("SETTEE_TEST_SEED", "attachments") | 1;
    // The replicator's log goes to the test's output, shown when it fails (CI saw a write
    // CouchDB did not refuse yet did not hold, once).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("settee_replicate=info,settee_couch=info")
        .try_init();
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let on_server = TestDb::named("randatt");
    let replicas = [
        Db::Local(settee::Local::from_store(local(&dir, "a"))),
        Db::Local(settee::Local::from_store(local(&dir, "b"))),
        Db::Remote(remote(&server, on_server.name())),
    ];
    replicas[2].to_peer().create().await.unwrap();
    let ids: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let replicate = |from: usize, to: usize, step: usize| {
        let (src, tgt) = (replicas[from].clone(), replicas[to].clone());
        let ids_for_report = ids.clone();
        async move {
            let s = match Replication::new(src.to_peer(), tgt.to_peer(), Default::default())
                .run()
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    // What each side holds, for the failure's report (the replicator's own
                    // log is in the test's captured output).
                    for id in &ids_for_report {
                        let revs = ReadOptions {
                            revs: true,
                            ..Default::default()
                        };
                        println!(
                            "{id}: source {from} leaves {:?}\n{id}: target {to} leaves {:?}",
                            src.open_revs(id, &settee::OpenRevs::All, &revs).await,
                            tgt.open_revs(id, &settee::OpenRevs::All, &revs).await
                        );
                    }
                    panic!("step {step}, {from} -> {to}: {e} (SETTEE_TEST_SEED={seed})");
                }
            };
            assert_eq!(
                s.stats.doc_write_failures, 0,
                "step {step}, {from} -> {to}: {:?} (SETTEE_TEST_SEED={seed})",
                s.doc_failures
            );
        }
    };
    for step in 0..90 {
        let at = rng.below(replicas.len());
        let id = &ids[rng.below(ids.len())];
        match rng.below(100) {
            0..=54 => random_edit(&replicas[at], id, &mut rng, step).await,
            55..=64 => {
                let leaves = live_leaves(&replicas[at], id).await;
                if !leaves.is_empty() {
                    let rev = leaves[rng.below(leaves.len())]["_rev"].clone();
                    replicas[at]
                        .delete(id, Some(&rev.as_str().unwrap().parse().unwrap()))
                        .await
                        .unwrap();
                }
            }
            _ => {
                let to = (at + 1 + rng.below(replicas.len() - 1)) % replicas.len();
                replicate(at, to, step).await;
            }
        }
    }
    // Converge: everything to the server, then back.
    for (from, to) in [(0, 2), (1, 2), (2, 0), (2, 1)] {
        replicate(from, to, 90).await;
    }
    // Revpos is compared on Apache CouchDB only (`settee_testkit::leaves::Compare::revpos`
    // says why): a replica that had another revpos for the same revision would send stubs
    // its peers cannot resolve.
    let expected = snapshot(&replicas[2], &ids).await;
    for (i, db) in replicas.iter().enumerate() {
        assert_eq!(
            snapshot(db, &ids).await,
            expected,
            "replica {i} (SETTEE_TEST_SEED={seed})"
        );
    }
    // Server -> fresh store, store -> fresh server database.
    let fresh = settee::Local::from_store(local(&dir, "fresh"));
    let pull = run(&replicas[2], &fresh, Default::default()).await;
    assert_eq!(pull.stats.doc_write_failures, 0, "{:?}", pull.doc_failures);
    assert_eq!(
        snapshot(&fresh, &ids).await,
        expected,
        "fresh store (SETTEE_TEST_SEED={seed})"
    );
    let fresh_remote_db = TestDb::named("randatt");
    let fresh_remote = remote(&server, fresh_remote_db.name());
    let push = run(
        &replicas[0],
        &fresh_remote,
        ReplicateOptions {
            create_target: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(push.stats.doc_write_failures, 0, "{:?}", push.doc_failures);
    assert_eq!(
        snapshot(&fresh_remote, &ids).await,
        expected,
        "fresh server database (SETTEE_TEST_SEED={seed})"
    );
}
