//! What the fault tests (`tests/faults.rs`, `tests/fault_model.rs`) share: the CLI run through
//! the fault proxy, remotes reached through it, and the convergence check against the server
//! itself (`GET /db/ID?open_revs=all&revs=true` on both sides, compared as
//! `settee_testkit::leaves` compares leaves: attachment digests included).
#![allow(dead_code, clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use settee::couch::CouchClient;
use settee::ReadOptions;
use settee_testkit::faults::FaultProxy;
use settee_testkit::leaves::Compare;
use settee_testkit::TestServer;

/// The shared test server's database `name`, reached directly (not through a proxy).
pub fn direct(name: &str) -> settee::Remote {
    let server = TestServer::get();
    settee::Remote::new(&format!("{}/{name}", server.url_with_credentials())).unwrap()
}

/// The database `name` through `proxy`, as a library user opens it; `timeout` sets the
/// client's read timeout (how long a silent connection is waited for).
pub fn via(proxy: &FaultProxy, name: &str, timeout: Option<Duration>) -> settee::Remote {
    let server = TestServer::get();
    let mut b = CouchClient::builder(proxy.url());
    if let Some((user, password)) = server.credentials() {
        b = b.basic_auth(user, password);
    }
    if let Some(t) = timeout {
        b = b.read_timeout(t);
    }
    settee::Remote::from_couch(b.build().unwrap().db(name))
}

/// The URL of `name` through `proxy` as the CLI is given it (the user name only; the
/// password goes in `SETTEE_PASSWORD`).
pub fn cli_url(proxy: &FaultProxy, name: &str) -> String {
    TestServer::get().via(&proxy.url()).db_url_with_user(name)
}

/// The URL of `name` on the test server itself as the CLI is given it.
pub fn direct_cli_url(name: &str) -> String {
    TestServer::get().db_url_with_user(name)
}

/// What a CLI run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `settee ARGS` (off the async workers) and checks it exits 0, 1 or 3 without a panic.
pub async fn cli(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_settee"));
        cmd.args(&args);
        if let Some(p) = TestServer::get().password() {
            cmd.env("SETTEE_PASSWORD", p);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        matches!(run.code, Some(0 | 1 | 3)) && !run.stderr.contains("panicked"),
        "settee {:?} exited {:?}:\n{}",
        out.status,
        run.code,
        run.stderr
    );
    run
}

/// `settee status LOCAL URL` as JSON (`--docs`: one value per document).
pub async fn cli_status(local: &str, url: &str, docs: bool) -> Vec<Value> {
    let mut args = vec!["status", local, url];
    if docs {
        args.push("--docs");
    }
    let run = cli(&args).await;
    assert_eq!(run.code, Some(0), "settee status: {}", run.stderr);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The leaves of an `open_revs` answer (its `"ok"` entries) as `settee_testkit::leaves`
/// compares them: body, `_revisions`, `_deleted`, and each attachment stub's type, digest,
/// length and (on Apache CouchDB) `revpos`.
fn leaves(answer: Vec<Value>) -> Vec<Value> {
    let oks: Vec<Value> = answer
        .into_iter()
        .filter_map(|mut r| r.get_mut("ok").map(Value::take))
        .collect();
    Compare::for_test_server().leaves(&oks)
}

/// The server's own answer to `GET /db/ID?open_revs=all&revs=true`, as compared leaves
/// (empty when the server has no such document).
pub async fn server_tree(name: &str, id: &str) -> Vec<Value> {
    let path = format!(
        "/{name}/{}?open_revs=all&revs=true",
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    let (status, body) = raw_async("GET", path, None).await;
    match status {
        404 => Vec::new(),
        200 => leaves(
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("open_revs of {id}: {e}: {body}")),
        ),
        _ => panic!("open_revs of {id}: {status} {body}"),
    }
}

/// The local store's `open_revs=all` with `_revisions`, as compared leaves.
pub async fn local_tree(local: &impl settee::Documents, id: &str) -> Vec<Value> {
    match local
        .open_revs(id, &settee::OpenRevs::All, &ReadOptions::default())
        .await
    {
        Ok(answer) => leaves(answer),
        Err(e) if e.kind() == settee::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("open_revs of {id} locally: {e}"),
    }
}

/// Every id's tree is the same on the store and on the server (`except` ids excepted: the
/// server must not have them); `Err` names the first difference.
pub async fn converged(
    local: &impl settee::Documents,
    name: &str,
    ids: &[String],
    except: &[&str],
) -> Result<(), String> {
    compare(local, name, ids, except, false).await
}

/// Like [`converged`], but an id neither side has counts as agreed.
pub async fn same_trees(
    local: &impl settee::Documents,
    name: &str,
    ids: &[String],
) -> Result<(), String> {
    compare(local, name, ids, &[], true).await
}

async fn compare(
    local: &impl settee::Documents,
    name: &str,
    ids: &[String],
    except: &[&str],
    absent_ok: bool,
) -> Result<(), String> {
    for id in ids {
        let (mine, theirs) = (local_tree(local, id).await, server_tree(name, id).await);
        if except.contains(&id.as_str()) {
            if !theirs.is_empty() {
                return Err(format!(
                    "the server has {id}, which it must refuse: {theirs:?}"
                ));
            }
            continue;
        }
        if (mine.is_empty() && !absent_ok) || mine != theirs {
            return Err(format!(
                "{id} differs:\n  local  {mine:?}\n  server {theirs:?}"
            ));
        }
    }
    Ok(())
}

/// Writes `doc` to the server directly (a server-side edit), over its current revision.
pub async fn server_put(name: &str, mut doc: Value) {
    let db = direct(name);
    let id = doc["_id"].as_str().unwrap().to_owned();
    if let Ok(cur) = db.get(&id, &ReadOptions::default()).await {
        doc["_rev"] = cur["_rev"].clone();
    }
    db.put(doc).await.unwrap();
}

/// Waits until `check` holds while the live sync runs, failing at once if the sync gives
/// up (an error it does not retry, or its end) and after `deadline` otherwise.
pub async fn live_converges<F, Fut>(
    sync: &mut settee::Syncing,
    proxy: &FaultProxy,
    deadline: Duration,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    use futures::FutureExt;
    let (limit, deadline) = (deadline, Instant::now() + deadline);
    loop {
        // The events so far, without waiting for more.
        while let Some(event) = futures::StreamExt::next(sync).now_or_never() {
            match event {
                Some(settee::replicate::Event::Error {
                    retrying: false,
                    name,
                    message,
                    ..
                }) => panic!(
                    "the live sync gave up: {name}: {message}\n{}",
                    proxy.report()
                ),
                Some(_) => {}
                None => panic!("the live sync ended by itself\n{}", proxy.report()),
            }
        }
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!(
                "timed out after {limit:?} waiting for the live sync to converge; last: \
                 {last}\n{}",
                proxy.report()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A request to the test server (blocking).
pub fn raw(method: &'static str, path: String, body: Option<Value>) -> (u16, String) {
    TestServer::get().raw_request(method, &path, body.map(|b| b.to_string()).as_deref())
}

/// [`raw`] off the async workers.
pub async fn raw_async(method: &'static str, path: String, body: Option<Value>) -> (u16, String) {
    tokio::task::spawn_blocking(move || raw(method, path, body))
        .await
        .unwrap()
}

/// CouchDB's own `_replicate` from `source` to `target` (created), one-shot.
pub async fn couch_replicate(source: &str, target: &str) {
    let server = TestServer::get();
    let (status, body) = raw_async(
        "POST",
        "/_replicate".into(),
        Some(json!({
            "source": format!("{}/{source}", server.url_with_credentials()),
            "target": format!("{}/{target}", server.url_with_credentials()),
            "create_target": true,
        })),
    )
    .await;
    assert_eq!(status, 200, "_replicate {source} -> {target}: {body}");
}

/// Drops the database `name` and creates it again, empty.
pub async fn recreate(name: &str) {
    let (s, b) = raw_async("DELETE", format!("/{name}"), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = raw_async("PUT", format!("/{name}"), None).await;
    assert!(s == 201 || s == 202, "{b}");
}
