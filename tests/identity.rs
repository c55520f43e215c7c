//! Issue 22, finding 2, through the command: after a sync with `http://admin@127.0.0.1:PORT/db`,
//! `settee status` with `localhost` (another spelling of the same server) shows the same
//! counts, not "everything unpushed"; offline, a spelling never used says "never synced",
//! and one learned before answers with the right counts.

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::json;
use settee::replicate::Peer;
use settee::Documents;
use settee_testkit::faults::FaultProxy;
use settee_testkit::{TestDb, TestServer};

use common::{status, sync_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_22_status_with_another_spelling_of_the_server_shows_the_same_counts() {
    let server = TestServer::get();
    assert!(server.url().contains("127.0.0.1"), "{}", server.url());
    let dir = tempfile::tempdir().unwrap();
    let name_db = TestDb::named("identity-cli");
    let name = name_db.name();
    let r = settee::Remote::new(&server.db_url_with_credentials(name)).unwrap();
    r.to_peer().create().await.unwrap();
    let path = dir.path().join("local");
    {
        let l = settee::Local::open(&path).unwrap();
        for i in 0..3 {
            l.put(json!({"_id": format!("n{i}")})).await.unwrap();
        }
        sync_once(&l, &r).await;
    }
    let localhost = server.via(&server.url().replace("127.0.0.1", "localhost"));
    let st = status(&path, &localhost.db_url_with_user(name), false);
    assert_eq!(
        (
            &st[0]["unpushed"],
            &st[0]["unpulled"],
            &st[0]["never_synced"]
        ),
        (&json!(0), &json!(0), &json!(false)),
        "{st:?}"
    );
    assert!(st[0]["last_push"].is_string(), "{st:?}");

    // Offline: a proxy that refuses, a spelling the store never used.
    let proxy = FaultProxy::start(server.url()).await;
    let via = server.via(&proxy.url()).db_url_with_user(name);
    proxy.set_refusing(true);
    let st = status(&path, &via, false);
    assert_eq!(st[0]["never_synced"], json!(true), "{st:?}");
    // Online once through it, the store learns that spelling too...
    proxy.set_refusing(false);
    let st = status(&path, &via, false);
    assert_eq!(
        (&st[0]["unpushed"], &st[0]["never_synced"]),
        (&json!(0), &json!(false))
    );
    // ...and answers for it offline, with the right counts.
    {
        let l = settee::Local::open(&path).unwrap();
        l.put(json!({"_id": "offline"})).await.unwrap();
    }
    proxy.set_refusing(true);
    let st = status(&path, &via, false);
    assert_eq!(
        (
            &st[0]["unpushed"],
            &st[0]["unpulled"],
            &st[0]["never_synced"]
        ),
        (&json!(1), &json!(null), &json!(false)),
        "{st:?}"
    );
    let docs = status(&path, &via, true);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["id"], json!("offline"));
}
