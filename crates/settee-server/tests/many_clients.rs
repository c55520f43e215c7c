//! Many devices on one database (issue 24): hundreds of `feed=longpoll` requests waiting at
//! the same `since` all get a write exactly once and follow on from their `last_seq`; feeds
//! that ask for different answers (`style`, `limit`) do not get each other's; a database
//! deleted and created again under its name is followed afresh. The shared follower and
//! page cache behind this are `changes_tail.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServe;
use reqwest::Method;
use serde_json::{json, Value};

/// Clients in the crowd: enough that every wake-up is shared many ways, few enough for a
/// debug build on two cores.
const CLIENTS: usize = 200;

/// Starts a longpoll request and waits for its answer's head (the server has looked for
/// changes and found none, so the request now waits).
async fn wait_at(ts: &TestServe, db: &str, query: &str) -> reqwest::Response {
    let res = ts
        .req(
            Method::GET,
            &format!("/{db}/_changes?feed=longpoll&{query}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res
}

async fn body(res: reqwest::Response) -> Value {
    let text = res.text().await.unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

fn ids(answer: &Value) -> Vec<&str> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

async fn put(ts: &TestServe, db: &str, doc: Value) -> Value {
    let id = doc["_id"].as_str().unwrap().to_owned();
    let (s, b) = ts
        .call(Method::PUT, &format!("/{db}/{id}"), Some(doc))
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_24_a_crowd_of_longpoll_feeds_each_sees_every_write_once() {
    let ts = TestServe::start().await;
    ts.create_db("team").await;
    put(&ts, "team", json!({"_id": "before"})).await;
    let mut since = vec![String::from("now"); CLIENTS];
    for round in 0..3 {
        let queries: Vec<String> = since
            .iter()
            .map(|s| format!("since={s}&heartbeat=10000&style=all_docs&limit=100"))
            .collect();
        let waiting =
            futures::future::join_all(queries.iter().map(|q| wait_at(&ts, "team", q))).await;
        put(&ts, "team", json!({"_id": format!("note-{round}")})).await;
        let answers = futures::future::join_all(waiting.into_iter().map(body)).await;
        for (k, a) in answers.iter().enumerate() {
            assert_eq!(
                ids(a),
                [format!("note-{round}")],
                "client {k}, round {round}: {a}"
            );
            assert_eq!(a["last_seq"], json!(round + 2), "client {k}: {a}");
            since[k] = a["last_seq"].to_string();
        }
    }
    ts.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_24_feeds_with_other_options_get_their_own_answers() {
    let ts = TestServe::start().await;
    ts.create_db("team").await;
    // A conflict: `style=all_docs` lists both leaves, the default only the winner.
    let (s, b) = ts
        .call(
            Method::POST,
            "/team/_bulk_docs",
            Some(json!({"new_edits": false, "docs": [
                {"_id": "c", "_rev": "1-aaa"}, {"_id": "c", "_rev": "1-bbb"},
                {"_id": "d", "_rev": "1-aaa"}
            ]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // A device waiting meanwhile keeps the database's shared follower (and its pages).
    let _waiting = wait_at(&ts, "team", "since=now").await;
    let main = wait_at(&ts, "team", "since=0").await;
    let all = wait_at(&ts, "team", "since=0&style=all_docs").await;
    let one = wait_at(&ts, "team", "since=0&limit=1").await;
    let (main, all, one) = (body(main).await, body(all).await, body(one).await);
    let leaves = |a: &Value, id: &str| -> usize {
        let row = a["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {a}"));
        row["changes"].as_array().unwrap().len()
    };
    assert_eq!(leaves(&main, "c"), 1, "{main}");
    assert_eq!(leaves(&all, "c"), 2, "{all}");
    assert_eq!(ids(&main).len(), 2, "{main}");
    assert_eq!(ids(&one).len(), 1, "{one}");
    ts.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_24_a_database_created_again_is_followed_afresh() {
    let ts = TestServe::start().await;
    ts.create_db("team").await;
    put(&ts, "team", json!({"_id": "old-1"})).await;
    put(&ts, "team", json!({"_id": "old-2"})).await;
    let waiting = wait_at(&ts, "team", "since=now").await;
    let (s, b) = ts.call(Method::DELETE, "/team", None).await;
    assert_eq!(s, 200, "{b}");
    // The feed on the deleted database ends without rows.
    assert_eq!(ids(&body(waiting).await), Vec::<&str>::new());
    ts.create_db("team").await;
    let waiting = wait_at(&ts, "team", "since=now").await;
    put(&ts, "team", json!({"_id": "new-1"})).await;
    let a = body(waiting).await;
    assert_eq!(ids(&a), ["new-1"], "{a}");
    assert_eq!(a["last_seq"], json!(1), "{a}");
    ts.server.shutdown().await;
}
