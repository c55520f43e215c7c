//! What the end-to-end tests need beyond `settee-testkit` (which has the test server, test
//! databases that delete themselves, the proxies, the leaf comparison and the waits): the
//! `settee` command as a [`Cli`] and `settee status` run through it, the steps several tests
//! take with the library (a remote with a validation function, one sync, a live sync on a
//! task), the test server required to be Apache CouchDB, and a private pouchdb-server that a
//! test may stop and restart.
#![allow(dead_code, unused_imports, missing_docs, clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use settee::replicate::{Event, Peer, ReplicateOptions, RetryPolicy, SyncSummary};
use settee::{CancellationToken, Db, ReadOptions};
pub use settee_testkit::cli::{json_lines, Cli};
pub use settee_testkit::wait_until;
use settee_testkit::TestServer;

/// The `settee` command under test.
///
/// # Panics
/// In a package without the `settee` binary (`examples/notes` includes this module).
pub fn settee() -> Cli {
    // Not `env!`: `examples/notes` includes this module and has no settee binary; a test
    // there that ran the command would fail here.
    #[allow(clippy::option_env_unwrap)]
    let bin = option_env!("CARGO_BIN_EXE_settee").expect("the settee binary is built for tests");
    Cli::new(bin)
}

/// `settee ARGS`, run to its end.
pub fn run(args: &[&str]) -> std::process::Output {
    settee().run(args)
}

/// `settee ARGS`, which must succeed, its stdout read as one JSON value.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    settee().ok_json(args)
}

/// The `settee` command with the test server's password in `SETTEE_PASSWORD` (the URLs it
/// is given carry the user name only: [`settee_testkit::TestDb::url_with_user`]).
pub fn settee_with_password() -> Cli {
    match TestServer::get().password() {
        Some(p) => settee().env("SETTEE_PASSWORD", p),
        None => settee(),
    }
}

/// `settee status LOCAL URL` (`--docs`: one line per unsynced document), piped as a user
/// pipes it, to run as the test needs.
pub fn status_cmd(local: &Path, url: &str, docs: bool) -> Command {
    let mut cmd = settee_with_password().command();
    cmd.arg("status").arg(local).arg(url);
    if docs {
        cmd.arg("--docs");
    }
    cmd
}

/// [`status_cmd`] run to its end: its JSON lines. It must succeed.
pub fn status(local: &Path, url: &str, docs: bool) -> Vec<Value> {
    let out = status_cmd(local, url, docs).output().unwrap();
    assert!(
        out.status.success(),
        "settee status{} failed: {}",
        if docs { " --docs" } else { "" },
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out)
}

/// A `validate_doc_update` that refuses any document with a `secret`, saying
/// "no secrets here".
pub const NO_SECRETS: &str =
    "function (doc) { if (doc.secret) { throw({forbidden: 'no secrets here'}); } }";

/// Creates the database at `url` (with credentials) with [`NO_SECRETS`] as its
/// `_design/guard`.
pub async fn guarded_remote(url: &str) -> settee::Remote {
    let r = settee::Remote::new(url).unwrap();
    r.create().await.unwrap();
    r.put(json!({"_id": "_design/guard", "validate_doc_update": NO_SECRETS}))
        .await
        .unwrap();
    r
}

/// What a test replicates: a store, a server's database, or either by location.
pub trait AsPeer {
    /// It as a replication peer.
    fn as_peer(&self) -> settee::replicate::AnyPeer;
}

impl AsPeer for Db {
    fn as_peer(&self) -> settee::replicate::AnyPeer {
        self.to_peer()
    }
}

impl AsPeer for settee::Local {
    fn as_peer(&self) -> settee::replicate::AnyPeer {
        self.to_peer()
    }
}

impl AsPeer for settee::Remote {
    fn as_peer(&self) -> settee::replicate::AnyPeer {
        self.to_peer()
    }
}

/// One sync of `local` with `remote`, default options; it must succeed.
pub async fn sync_once(local: &impl AsPeer, remote: &impl AsPeer) -> SyncSummary {
    settee::replicate::sync(
        local.as_peer(),
        remote.as_peer(),
        Default::default(),
        None,
        Default::default(),
    )
    .await
    .unwrap()
}

/// Whether `db` has a document `id` (not deleted).
pub async fn has(db: &impl settee::Documents, id: &str) -> bool {
    db.get(id, &ReadOptions::default()).await.is_ok()
}

/// A live sync on a task of its own, as the live tests run it: checkpoints every half
/// second, longpolls of 10 s, and `retry` as the test's outage needs.
pub struct LiveSyncTask {
    /// The sync's task; its summary once cancelled.
    pub task: tokio::task::JoinHandle<settee::replicate::Result<SyncSummary>>,
    /// Its events.
    pub events: tokio::sync::mpsc::Receiver<Event>,
    /// Stops it.
    pub cancel: CancellationToken,
}

impl LiveSyncTask {
    /// Starts a live sync of `local` with `remote`.
    pub fn start(local: &impl AsPeer, remote: &impl AsPeer, retry: RetryPolicy) -> LiveSyncTask {
        let opts = ReplicateOptions {
            continuous: true,
            checkpoint_interval: Duration::from_millis(500),
            longpoll: Duration::from_secs(10),
            retry,
            ..Default::default()
        };
        // Room for every event of a test's run: a test reads them at its own pace.
        let (tx, events) = tokio::sync::mpsc::channel(256);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(settee::replicate::sync(
            local.as_peer(),
            remote.as_peer(),
            opts,
            Some(tx),
            cancel.clone(),
        ));
        LiveSyncTask {
            task,
            events,
            cancel,
        }
    }

    /// The retries of a test whose server goes away for a while: from 200 ms up to 2 s,
    /// four in a row before a failure is reported.
    pub fn outage_retry() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_retries: 4,
        }
    }

    /// Reads `events` to their end on a task of its own, asserting that every error is
    /// retried (a live sync never gives up); the task gives how many errors there were.
    pub fn count_retries(
        mut events: tokio::sync::mpsc::Receiver<Event>,
    ) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut retries = 0;
            while let Some(e) = events.recv().await {
                if let Event::Error { retrying, .. } = e {
                    assert!(retrying, "a live sync must not give up: {e:?}");
                    retries += 1;
                }
            }
            retries
        })
    }
}

/// The shared test server as `tests/sync_model.rs` uses it: URL (no credentials), user and
/// password, from [`TestServer`]. Every other test uses `settee-testkit`'s `TestServer` and
/// `TestDb` (which deletes its database); this goes when `sync_model.rs` does the same.
pub struct Server {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Server {
    /// From the environment that scripts/test.sh sets. Fails loudly without it.
    pub fn get() -> Server {
        let server = TestServer::get();
        Server {
            url: server.url().to_owned(),
            user: server.user().map(str::to_owned),
            password: server.password().map(str::to_owned),
        }
    }

    /// A database URL carrying the user name (the password goes in SETTEE_PASSWORD).
    pub fn db_url(&self, db: &str) -> String {
        match &self.user {
            Some(u) => self.url.replacen("://", &format!("://{u}@"), 1) + "/" + db,
            None => format!("{}/{db}", self.url),
        }
    }

    /// A database URL with user and password in it (for library calls).
    pub fn db_url_with_password(&self, db: &str) -> String {
        format!("{}/{db}", self.url_with_password())
    }

    /// The server's URL with user and password in it.
    pub fn url_with_password(&self) -> String {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => self.url.replacen("://", &format!("://{u}:{p}@"), 1),
            _ => self.url.clone(),
        }
    }
}

/// The test server, which must be Apache CouchDB: tests that compare Settee's Mango with
/// CouchDB's `_find` (pouchdb-server answers with PouchDB's rules). Fails loudly when the
/// suite runs against another server.
pub fn couchdb_server() -> TestServer {
    let server = TestServer::get();
    let kind = std::env::var("SETTEE_TEST_SERVER_KIND").unwrap_or_default();
    let (status, body) = server.raw_request("GET", "/", None);
    assert_eq!(status, 200, "the test server does not answer: {body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert!(
        info["couchdb"] == "Welcome" && kind != "pouchdb-server",
        "this test compares with Apache CouchDB's _find, and the test server is {kind} {}: \
         run scripts/test.sh with SETTEE_COUCHDB_RELEASE (CouchDB 3.5)",
        info["version"]
    );
    server
}

fn node_modules() -> PathBuf {
    std::env::var("SETTEE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/node/node_modules")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pouchdb-server of the test's own, on a fixed port and data folder, so the test can stop
/// it and start it again where clients expect it.
pub struct OwnServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnServer {
    pub fn start(dir: &Path) -> OwnServer {
        let mut s = OwnServer {
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).unwrap();
        let bin = node_modules().join("pouchdb-server/bin/pouchdb-server");
        let child = Command::new("node")
            .arg(bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs pouchdb-server (installed by scripts/node-deps.sh)");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        wait_until(
            Duration::from_secs(30),
            "the private pouchdb-server to listen",
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}
