//! Writes a cluster acknowledges before every copy has them: with two of the three nodes
//! down, a write reaches one copy of its shard, short of the quorum (`w`, 2 of 3), and
//! CouchDB answers `202 Accepted` instead of `201 Created` (`_bulk_docs`, a document's PUT,
//! a `_local` checkpoint's PUT). The copy is durable and the cluster brings the others up to
//! date when their nodes come back, so Settee counts a 202 as written: the push completes,
//! `status` says nothing is left to push, and a sync through another node later moves
//! nothing.

use std::time::Duration;

use serde_json::json;
use settee::replicate::{ReplicateOptions, Replication};
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
    // 100 notes, every 10th with an attachment (pushed one PUT each).
    let docs = (0..100)
        .map(|i| {
            let mut doc = json!({"_id": format!("note-{i:03}"), "n": i});
            if i % 10 == 0 {
                doc["_attachments"] = json!({"photo.bin": {"content_type": "application/octet-stream",
                    "data": "AAECAwQFBgcICQ=="}});
            }
            doc
        })
        .collect();
    {
        use settee::Documents as _;
        local.bulk_docs(docs).await.unwrap();
    }

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
    let writes: Vec<(String, String, u16)> = via1
        .take()
        .into_iter()
        .filter(|e| e.method == "PUT" || e.path.ends_with("/_bulk_docs"))
        .map(|e| (e.method, e.path, e.status))
        .collect();
    eprintln!("{test}: the push's writes: {writes:?}");
    // The premise: the cluster acknowledged without its quorum, for both kinds of write.
    let accepted = |bulk: bool| {
        writes
            .iter()
            .any(|(_, path, st)| *st == 202 && path.ends_with("/_bulk_docs") == bulk)
    };
    assert!(accepted(true), "no _bulk_docs was answered 202");
    assert!(accepted(false), "no PUT was answered 202");
    assert!(push.ok && push.doc_failures.is_empty(), "{push:?}");
    assert_eq!(push.stats.docs_written, 100);
    assert_eq!(status(&local, &remote(n1)).await, (0, Some(0)));

    // The other copies come back; the cluster brings them up to date by itself, and
    // the database through node 2 is the store's.
    cluster.restart_node(2);
    cluster.restart_node(3);
    let expected = leaves(&local).await;
    assert_eq!(expected.len(), 100);
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
