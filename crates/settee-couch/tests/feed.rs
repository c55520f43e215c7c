//! Continuous `_changes` feeds against the real test server: a write made after the feed
//! started arrives, and a feed whose connection is cut (by the kit's `FaultProxy`) resumes
//! from the last seq without losing a change. (The end of a feed with its `last_seq` line is
//! tested in fake_server.rs: pouchdb-server 4.2.0 ignores `limit` and `timeout` on
//! continuous feeds and never sends that line.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;

use futures::StreamExt;
use serde_json::json;
use settee_couch::{ChangesEvent, ChangesOptions, CouchClient, Seq};
use settee_testkit::faults::FaultProxy;
use settee_testkit::TestServer;

use common::{client, fresh_db};

/// The next change of a feed (heartbeats are not items), or a panic naming what came.
async fn next_change<S>(feed: &mut S) -> settee_couch::Change
where
    S: futures::Stream<Item = settee_couch::Result<ChangesEvent>> + Unpin,
{
    match feed.next().await {
        Some(Ok(ChangesEvent::Change(c))) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn continuous_feed_sees_a_write_made_after_it_started() {
    let (_g, db) = fresh_db("continuous");
    db.put("first", &json!({})).await.unwrap();
    let mut feed = Box::pin(db.changes_stream(ChangesOptions::default()));
    assert_eq!(next_change(&mut feed).await.id, "first");
    // The feed is open and waiting; this write happens after it started.
    let r = db.put("later", &json!({"v": 2})).await.unwrap();
    let change = next_change(&mut feed).await;
    assert_eq!(change.id, "later");
    assert_eq!(change.changes, vec![r.rev]);
}

#[tokio::test]
async fn cut_feed_resumes_from_last_seq_without_losing_a_change() {
    let (guard, db) = fresh_db("cutfeed");
    let server = TestServer::get();
    let proxy = FaultProxy::start(server.url()).await;
    let mut b = CouchClient::builder(proxy.url());
    if let Some((u, p)) = server.credentials() {
        b = b.basic_auth(u, p);
    }
    let via_proxy = b.build().unwrap().db(guard.name());

    db.put("a", &json!({})).await.unwrap();
    db.put("b", &json!({})).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut feed = Box::pin(via_proxy.changes_stream(ChangesOptions::default()));
    for _ in 0..2 {
        seen.insert(next_change(&mut feed).await.id);
    }
    db.put("c", &json!({})).await.unwrap();
    let c = next_change(&mut feed).await;
    assert_eq!(c.id, "c");
    seen.insert(c.id);
    let last: Option<Seq> = Some(c.seq);

    assert!(proxy.cut() >= 1, "the feed's connection was open");
    let err = match feed.next().await {
        Some(Err(e)) => e,
        other => panic!("expected the cut to end the feed with an error, got {other:?}"),
    };
    assert!(
        matches!(err.name(), "feed_interrupted" | "transport"),
        "{err}"
    );
    assert!(
        feed.next().await.is_none(),
        "the stream ends after its error"
    );

    // Written while no feed is open: the resumed feed must deliver it.
    db.put("d", &json!({})).await.unwrap();
    let resumed = ChangesOptions {
        since: last,
        ..Default::default()
    };
    let mut feed = Box::pin(via_proxy.changes_stream(resumed));
    let d = next_change(&mut feed).await;
    assert_eq!(d.id, "d");
    seen.insert(d.id);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    // And the server agrees that these are all the documents.
    assert_eq!(client().db(guard.name()).info().await.unwrap().doc_count, 4);
}
