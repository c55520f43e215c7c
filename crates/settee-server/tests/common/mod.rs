//! Shared by the server's integration tests: a `settee serve` in the test's runtime on a
//! free loopback port with an admin, an HTTP client for it, and the revision-by-revision
//! comparison of a document's leaves.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::{json, Value};
use settee_server::{Admin, Server, ServerOptions, WorkerProgram};

pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "s3cret-pw";

/// The JavaScript worker program of the test servers: this crate's `settee-js-worker`.
pub fn js_worker() -> Option<WorkerProgram> {
    Some(WorkerProgram {
        program: env!("CARGO_BIN_EXE_settee-js-worker").into(),
        args: Vec::new(),
    })
}

/// A server on a fresh data directory.
pub struct TestServe {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// An answer's status and JSON body (the text as a string when it is not JSON).
pub async fn answer(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// What every test server starts from: a free loopback port, the data directory
/// `dir/data`, the admin, cheap password hashing and this crate's JavaScript worker.
pub fn options(dir: &std::path::Path) -> ServerOptions {
    ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.join("data")),
        admin: Some(Admin {
            name: ADMIN.into(),
            password: PASSWORD.into(),
        }),
        // CouchDB's 600,000 PBKDF2 rounds cost seconds per login in a debug build.
        password_iterations: 1000,
        js_worker: js_worker(),
        ..Default::default()
    }
}

impl TestServe {
    pub async fn start() -> TestServe {
        TestServe::start_with(|_| {}).await
    }

    /// A server started from [`options`] changed by `tune` (CORS, limits, users...).
    pub async fn start_with(tune: impl FnOnce(&mut ServerOptions)) -> TestServe {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        tune(&mut opts);
        TestServe {
            server: Server::start(opts).await.unwrap(),
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// `http://127.0.0.1:PORT` (no credentials).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// The URL with the admin's credentials in it.
    pub fn admin_url(&self) -> String {
        format!("http://{ADMIN}:{PASSWORD}@{}", self.server.local_addr())
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url()))
            .basic_auth(ADMIN, Some(PASSWORD))
    }

    /// Sends a request as the admin; returns the status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path).header("Accept", "application/json");
        if let Some(b) = body {
            r = r.json(&b);
        }
        answer(r.send().await.unwrap()).await
    }

    pub async fn create_db(&self, name: &str) {
        let (s, b) = self
            .call(reqwest::Method::PUT, &format!("/{name}"), None)
            .await;
        assert_eq!(s, 201, "creating {name}: {b}");
    }

    /// Every document id in a database's changes feed (deleted ones included).
    pub async fn ids(&self, db: &str) -> Vec<String> {
        let (s, b) = self
            .call(
                reqwest::Method::GET,
                &format!("/{db}/_changes?style=all_docs"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let mut ids: Vec<String> = b["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Every leaf of a document as the server has it: `open_revs=all&revs=true&attachments=true`.
    pub async fn leaves(&self, db: &str, id: &str) -> Vec<Value> {
        let path = format!(
            "/{db}/{}?open_revs=all&revs=true&attachments=true",
            urlencode(id)
        );
        let (s, b) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(s, 200, "open_revs of {id}: {b}");
        b.as_array()
            .unwrap()
            .iter()
            .map(|r| r["ok"].clone())
            .filter(|d| !d.is_null())
            .collect()
    }
}

pub fn urlencode(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Leaves sorted by rev, for comparison.
pub fn sorted(mut leaves: Vec<Value>) -> Vec<Value> {
    leaves.sort_by(|a, b| a["_rev"].as_str().cmp(&b["_rev"].as_str()));
    leaves
}

/// Asserts that two sides hold the same leaves for `id` as `settee_testkit::leaves::Compare`
/// (the workspace's one leaf comparison) sees them: the same revs, `_revisions`, bodies and
/// attachments (type, bytes, revpos, and each digest and length checked against the bytes).
/// `encoded_digests` is for a comparison with Apache CouchDB, which gives a compressible
/// type the digest of its gzip encoding.
pub fn assert_same_leaves(id: &str, ours: Vec<Value>, theirs: Vec<Value>, encoded_digests: bool) {
    let check = settee_testkit::leaves::Compare {
        revpos: true,
        encoded_digests,
    };
    let reduce = |leaves: Vec<Value>| -> Vec<Value> {
        sorted(leaves).iter().map(|l| check.leaf(l)).collect()
    };
    let (ours, theirs) = (reduce(ours), reduce(theirs));
    assert!(!ours.is_empty(), "{id}: no leaves on the server");
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{id}: leaf counts differ\nserver: {ours:#}\nother: {theirs:#}",
        ours = json!(ours),
        theirs = json!(theirs)
    );
    for (a, b) in ours.iter().zip(theirs.iter()) {
        assert_eq!(a, b, "{id}: leaves differ");
    }
}

/// The npm packages (`scripts/node-deps.sh` installs them).
pub fn node_modules() -> PathBuf {
    std::env::var("SETTEE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/node/node_modules")
        })
}

pub fn node_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/node")
        .join(name)
}

/// One server of a comparison with Apache CouchDB: a database URL and its credentials.
pub struct Side {
    pub http: reqwest::Client,
    pub db_url: String,
    pub user: String,
    pub password: String,
}

impl Side {
    /// Sends `body` (text, with `ctype` when not empty) to `path` under the database;
    /// returns the status and the JSON body (a string when it is not JSON).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        ctype: &str,
        body: &str,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.db_url))
            .basic_auth(&self.user, Some(&self.password))
            .header("Accept", "application/json");
        if !ctype.is_empty() {
            r = r.header("Content-Type", ctype);
        }
        if !body.is_empty() {
            r = r.body(body.to_owned());
        }
        answer(r.send().await.unwrap()).await
    }

    /// Sends `body` as JSON, or nothing.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        match body {
            Some(b) => {
                self.raw(method, path, "application/json", &b.to_string())
                    .await
            }
            None => self.raw(method, path, "", "").await,
        }
    }

    /// Sends `body` as JSON.
    pub async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        self.call(method, path, Some(body)).await
    }
}

/// A `settee serve` with database `name`, and a fresh database on the test CouchDB whose
/// name starts with `couch_prefix`: the two sides of a comparison (and what keeps them).
pub async fn compared(
    name: &str,
    couch_prefix: &str,
) -> (TestServe, Side, Side, settee_testkit::TestDb) {
    let serve = TestServe::start().await;
    serve.create_db(name).await;
    let couch_db = settee_testkit::TestDb::create(couch_prefix);
    let (cu, cp) = couch_db.server().credentials().unwrap_or(("", ""));
    let http = reqwest::Client::new();
    let settee = Side {
        http: http.clone(),
        db_url: format!("{}/{name}", serve.url()),
        user: ADMIN.into(),
        password: PASSWORD.into(),
    };
    let couch = Side {
        http,
        db_url: couch_db.url(),
        user: cu.into(),
        password: cp.into(),
    };
    (serve, settee, couch, couch_db)
}

/// Polls `cond` until it holds; fails with `what` and the last state seen after `limit`.
pub async fn wait_until<F: FnMut() -> (bool, String)>(
    limit: std::time::Duration,
    what: &str,
    mut cond: F,
) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (done, state) = cond();
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {state}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
