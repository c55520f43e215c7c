//! `DELETE /{db}` (issue 20): a store named on the command line is never removed, and a
//! delete waits (bounded) for the requests that hold its database.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_delete_refuses_command_line_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    settee_store::Database::open_with(settee_store::OpenOptions {
        create: true,
        ..settee_store::OpenOptions::new(&store)
    })
    .unwrap();
    let server = Server::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        stores: vec![store.clone()],
        admin: Some(Admin {
            name: ADMIN.into(),
            password: PASSWORD.into(),
        }),
        js_worker: common::js_worker(),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let (s, b) = call(&http, server.local_addr(), Method::DELETE, "/notes", None).await;
    assert_eq!((s, &b["error"]), (403, &json!("forbidden")), "{b}");
    assert!(store.join("db").is_file(), "the store was removed");
    let (s, _) = call(&http, server.local_addr(), Method::GET, "/notes", None).await;
    assert_eq!(s, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_delete_waits_for_requests_holding_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        RequestLimits {
            delete_wait: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let addr = server.local_addr();
    let http = reqwest::Client::new();
    assert_eq!(call(&http, addr, Method::PUT, "/held", None).await.0, 201);
    let store = dir.path().join("data").join("held");
    assert!(store.join("db").is_file());

    // A write holds the database while its body arrives: `100 Continue` says the
    // handler has the database and is reading the body.
    let mut w = TcpStream::connect(addr).await.unwrap();
    let body = br#"{"late": true}"#;
    let head = format!(
        "PUT /held/late HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        basic(),
        body.len()
    );
    w.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_status(&mut w).await, 100);

    // DELETE cannot remove the files under it: it refuses, and the database is served
    // as before.
    let (s, b) = call(&http, addr, Method::DELETE, "/held", None).await;
    assert_eq!((s, &b["error"]), (409, &json!("conflict")), "{b}");
    assert!(
        store.join("db").is_file(),
        "the store was removed while held"
    );

    // The held write ends cleanly.
    w.write_all(body).await.unwrap();
    assert_eq!(read_status(&mut w).await, 201);
    drop(w);

    // A live feed holds it too (its answer has begun when the headers arrive): DELETE
    // ends the feed and then removes the store.
    let feed = http
        .get(format!(
            "http://{addr}/held/_changes?feed=continuous&heartbeat=100"
        ))
        .header("Authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let (s, b) = call(&http, addr, Method::DELETE, "/held", None).await;
    assert_eq!((s, &b), (200, &json!({"ok": true})));
    let text = tokio::time::timeout(Duration::from_secs(10), feed.text())
        .await
        .expect("the feed ends")
        .unwrap();
    assert!(
        text.contains("\"last_seq\""),
        "the feed ended without last_seq: {text:?}"
    );
    assert!(!store.exists(), "the store directory is still there");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        // `_users` and the server's own uuid file are the server's, not the database's.
        .filter(|name| name != "_users" && name != ".settee-server-uuid")
        .collect();
    assert!(left.is_empty(), "left in the data directory: {left:?}");

    // A new database of the same name starts empty.
    assert_eq!(call(&http, addr, Method::PUT, "/held", None).await.0, 201);
    let (s, b) = call(&http, addr, Method::GET, "/held", None).await;
    assert_eq!((s, &b["doc_count"]), (200, &json!(0)), "{b}");
    server.shutdown().await;
}
