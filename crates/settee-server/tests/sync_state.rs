//! `/{db}/_settee/...`: the holder of a store answers its sync-state questions for another
//! process (issue 19, finding 7) with what `settee_replicate` answers in the holder itself:
//! the same counts, the same rows page by page (the pair's filter applied), a document's
//! state, admins only, and never a password back.

#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use settee_server::{Admin, Server, ServerOptions};

const REMOTE: &str = "http://bob@couch.example/notes";

struct Served {
    server: Server,
    db: settee_store::Database,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A store `l` with documents `a`..`g`, synced with `REMOTE` under a push filter of
/// `a`, `c`, `e`, `g` (so `b`, `d`, `f` are not replicated), served with an admin.
async fn served() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let db = settee_store::Database::open(dir.path().join("l")).unwrap();
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        db.put(json!({"_id": id})).unwrap();
    }
    let meta = json!({"push_filter": {"doc_ids": ["a", "c", "e", "g"]}});
    db.register_remote(REMOTE, meta.as_object().unwrap().clone())
        .unwrap();
    let server = Server::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        databases: vec![db.clone()],
        admin: Some(Admin {
            name: ADMIN.into(),
            password: PASSWORD.into(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    Served {
        server,
        db,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Served {
    async fn get(&self, path: &str, query: &[(&str, &str)], admin: bool) -> (u16, Value) {
        let mut r = self
            .http
            .get(format!(
                "http://{}/l/_settee/{path}",
                self.server.local_addr()
            ))
            .query(query);
        if admin {
            r = r.basic_auth(ADMIN, Some(PASSWORD));
        }
        let res = r.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_19_the_holder_answers_as_the_store_does() {
    let s = served().await;

    let (code, st) = s.get("sync_status", &[("remote", REMOTE)], true).await;
    assert_eq!(code, 200, "{st}");
    let direct = settee_replicate::status_named(&s.db, REMOTE).await.unwrap();
    assert_eq!(st, serde_json::to_value(&direct).unwrap());
    assert_eq!(
        (st["unpushed"].clone(), st["not_replicated"].clone()),
        (json!(4), json!(3))
    );

    // Paged by two: each page reads two entries and returns those the filter keeps.
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("remote", REMOTE), ("limit", "2")];
        if let Some(a) = &after {
            q.push(("after", a.as_str()));
        }
        let (code, page) = s.get("unsynced", &q, true).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        rows.extend(page["rows"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 5, "a, c, e, g and the empty page");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "c", "e", "g"]);
    let rev_a = s.db.get("a", &Default::default()).unwrap()["_rev"].clone();
    assert_eq!(
        rows[0],
        json!({"id": "a", "state": "unpushed", "revs": [rev_a]})
    );

    let (code, one) = s
        .get("sync_state", &[("remote", REMOTE), ("id", "b")], true)
        .await;
    assert_eq!(
        (code, one),
        (200, json!({"id": "b", "state": "not_replicated"}))
    );
    let (code, _) = s
        .get("sync_state", &[("remote", REMOTE), ("id", "zz")], true)
        .await;
    assert_eq!(code, 404);

    let (code, from) = s.get("pull_since", &[("remote", REMOTE)], true).await;
    assert_eq!((code, from), (200, json!({"since": 0, "filter": null})));

    // A password in the remote's name is dropped: the same remote, never echoed.
    let with_password = "http://bob:hunter2@couch.example/notes";
    let (code, st2) = s
        .get("sync_status", &[("remote", with_password)], true)
        .await;
    assert_eq!((code, &st2), (200, &st));
    assert!(!st2.to_string().contains("hunter2"));

    // Admins only; a remote must be named; unknown questions are refused.
    let (code, _) = s.get("sync_status", &[("remote", REMOTE)], false).await;
    assert_eq!(code, 401);
    let (code, _) = s.get("sync_status", &[], true).await;
    assert_eq!(code, 400);
    let (code, _) = s.get("everything", &[("remote", REMOTE)], true).await;
    assert_eq!(code, 400);
    let res = s
        .http
        .request(
            Method::POST,
            format!("http://{}/l/_settee/sync_status", s.server.local_addr()),
        )
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
}
