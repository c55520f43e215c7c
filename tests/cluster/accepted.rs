//! Writes a cluster acknowledges before every copy has them: with two of the three nodes
//! down, a write reaches one copy of its shard, short of the quorum (`w`, 2 of 3), and
//! CouchDB answers `202 Accepted` instead of `201 Created` (a new edit's `_bulk_docs` or
//! PUT, a `_local` checkpoint's PUT; a replicated `_bulk_docs` answers 201 either way). The copy is durable and the cluster brings the others up to
//! date when their nodes come back, so Settee counts a 202 as written: the push completes,
//! `status` says nothing is left to push, and a sync through another node later moves
//! nothing.

use std::time::Duration;

use serde_json::json;
use settee::replicate::{ReplicateOptions, Replication};
use settee::Documents as _;
use settee_testkit::cluster::Cluster;
use settee_testkit::wait::wait_for;

use super::{leaves, remote, status, Recorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answered_202_accepted_are_written_and_status_is_exact() {
    let test = "writes_answered_202_accepted";
    let Some(cluster) = Cluster::start_or_skip(test, 3) else {
        return;
    };
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    super::create(n1).await;
    let dir = tempfile::tempdir().unwrap();
    let local = settee::Local::open(dir.path().join("local")).unwrap();
    // 100 notes, without attachments: a revision with attachments goes up as a multipart
    // PUT, and CouchDB 3.5 holds such a PUT until every copy's node has read the attachment
    // stream, so with two nodes down it times out rather than answering 202 (a limit of
    // the server that CouchDB's own replicator meets as well).
    let docs = (0..100)
        .map(|i| json!({"_id": format!("note-{i:03}"), "n": i}))
        .collect();
    local.bulk_docs(docs).await.unwrap();

    cluster.stop_node(2);
    cluster.stop_node(3);
    let via1 = Recorder::plain(n1).await;
    let push = Replication::new(
        local.to_peer(),
        remote(&via1.server).to_peer(),
        ReplicateOptions {
            batch_size: 25,
            ..Default::default()
        },
    )
    .run()
    .await
    .unwrap();
    let pushed = writes(&via1);
    eprintln!("{test}: the push's writes: {pushed:?}");
    // The premise: the checkpoint was acknowledged without its quorum (the replicated
    // `_bulk_docs`, `new_edits=false`, answers 201 whatever the copies).
    assert!(
        pushed
            .iter()
            .any(|(m, path, st)| m == "PUT" && path.contains("/_local/") && *st == 202),
        "no checkpoint PUT was answered 202"
    );
    assert!(push.ok && push.doc_failures.is_empty(), "{push:?}");
    assert_eq!(push.stats.docs_written, 100);
    assert_eq!(status(&local, &remote(n1)).await, (0, Some(0)));

    // Another device's writes through the library (new edits), answered 202 too: written.
    let other_device = remote(&via1.server);
    let results = other_device
        .bulk_docs(vec![json!({"_id": "theirs-a"}), json!({"_id": "theirs-b"})])
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.rev.is_some()), "{results:?}");
    let put = other_device.put(json!({"_id": "theirs-c"})).await.unwrap();
    assert!(put["rev"].is_string(), "{put}");
    let theirs = writes(&via1);
    eprintln!("{test}: the other device's writes: {theirs:?}");
    for (method, end) in [("POST", "/_bulk_docs"), ("PUT", "/theirs-c")] {
        assert!(
            theirs
                .iter()
                .any(|(m, path, st)| m == method && path.ends_with(end) && *st == 202),
            "{method} {end} was not answered 202"
        );
    }
    let pull = Replication::new(
        remote(&via1.server).to_peer(),
        local.to_peer(),
        ReplicateOptions::default(),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(pull.stats.docs_written, 3, "{pull:?}");
    assert_eq!(status(&local, &remote(n1)).await, (0, Some(0)));

    // The other copies come back; the cluster brings them up to date by itself, and
    // the database through node 2 is the store's.
    cluster.restart_node(2);
    cluster.restart_node(3);
    let expected = leaves(&local).await;
    assert_eq!(expected.len(), 103);
    let via2 = remote(n2);
    wait_for(
        Duration::from_secs(120),
        "node 2 to answer with every document",
        || async { leaves(&via2).await == expected },
    )
    .await;
    let again = super::common::sync_once(&local, &via2).await;
    assert_eq!(
        (again.push.stats.docs_written, again.pull.stats.docs_written),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(status(&local, &via2).await, (0, Some(0)));
}

/// The writes `via` saw since the last call: method, path, status.
fn writes(via: &Recorder) -> Vec<(String, String, u16)> {
    via.take()
        .into_iter()
        .filter(|e| e.method == "PUT" || e.path.ends_with("/_bulk_docs"))
        .map(|e| (e.method, e.path, e.status))
        .collect()
}
