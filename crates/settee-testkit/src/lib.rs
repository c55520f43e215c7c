//! Test support for Settee's integration tests (dev-only, not published): the test
//! server's URL and credentials, unique database names, and a guard that deletes a test
//! database when it goes out of scope.
//!
//! The server is the one `scripts/test.sh` starts (pouchdb-server) or the one
//! `SETTEE_TEST_COUCHDB_URL` points at (e.g. Apache CouchDB from `docker-compose.yml`),
//! with `SETTEE_TEST_COUCHDB_USER` / `SETTEE_TEST_COUCHDB_PASSWORD`. Without
//! `SETTEE_TEST_COUCHDB_URL` the tests fail loudly: they never pass without a server.
//!
//! The guard uses a minimal blocking HTTP/1.1 request over `std::net` so that it can run in
//! `Drop`, inside or outside a tokio runtime, and depends on no crate under test. It
//! therefore supports `http://` servers only (the test servers are local).
//!
//! [`http`] has servers that misbehave on purpose: a fake server, and a proxy to the test
//! server that can answer or edit chosen requests. [`faults`] has the seeded fault-injecting
//! proxy of the fault tests: refused connections, error statuses, cut and stalled answers,
//! broken `_changes` feeds and edited answers, on cue or at random. `peer` (feature
//! `peer`) has a `Peer` that passes every call on, for tests that override a few.
//! [`leaves`] is the one comparison of replicas' leaves; [`wait`] has the deadlines every
//! wait needs (blocking and async); [`cli`] runs the command under test; [`seed`] seeds a
//! randomised test. [`cluster`] starts an Apache CouchDB cluster of a test's own, whose
//! nodes the test may stop and restart.
//!
//! When the test server is a cluster (`scripts/test.sh`'s cluster pass), the client talks to
//! one node and [`TestServer::other_node`] is another, through which a test writes what
//! "another device" writes.
//!
//! A test database is deleted when its [`TestDb`] is dropped, unless `SETTEE_TEST_KEEP_DBS`
//! is set (to look at what a failing test left).

pub mod cli;
pub mod cluster;
pub mod faults;
pub mod http;
pub mod leaves;
#[cfg(feature = "peer")]
pub mod peer;
pub mod wait;

pub use wait::wait_until;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use url::Url;

/// The test server: URL and credentials from the environment.
#[derive(Clone)]
pub struct TestServer {
    url: String,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish()
    }
}

impl TestServer {
    /// The server from `SETTEE_TEST_COUCHDB_URL` (+ `_USER`, `_PASSWORD`).
    ///
    /// # Panics
    /// If `SETTEE_TEST_COUCHDB_URL` is not set: run the tests with `scripts/test.sh`.
    pub fn get() -> TestServer {
        let url = match std::env::var("SETTEE_TEST_COUCHDB_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "SETTEE_TEST_COUCHDB_URL is not set: these tests need a CouchDB-compatible server. \
                 Run them with scripts/test.sh (it starts pouchdb-server), or set \
                 SETTEE_TEST_COUCHDB_URL (and SETTEE_TEST_COUCHDB_USER/_PASSWORD) to a CouchDB."
            ),
        };
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        TestServer {
            url: url.trim_end_matches('/').to_owned(),
            user: get("SETTEE_TEST_COUCHDB_USER"),
            password: get("SETTEE_TEST_COUCHDB_PASSWORD"),
        }
    }

    /// Another node of the same cluster, from `SETTEE_TEST_COUCHDB_OTHER_URL` (same
    /// credentials): where a test writes what another device writes, so that the client
    /// (which talks to [`TestServer::get`]'s node) learns of it through the cluster, as it
    /// would of a phone's write that reached the cluster at another node. On a single
    /// server (the variable unset) it is the same server.
    pub fn other_node(&self) -> TestServer {
        match std::env::var(OTHER_URL_VAR) {
            Ok(url) if !url.is_empty() => self.via(&url),
            _ => self.clone(),
        }
    }

    /// The same server with its credentials, reached at `url` (a proxy's base URL).
    pub fn via(&self, url: &str) -> TestServer {
        TestServer {
            url: url.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The server URL, without credentials and without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin user, if the server has one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The admin password, if the server has one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The server URL with only the user name in its userinfo, as the `settee` command is
    /// given it (its password goes in `SETTEE_PASSWORD`, never in argv).
    pub fn url_with_user(&self) -> String {
        let mut url = Url::parse(&self.url).expect("SETTEE_TEST_COUCHDB_URL is a URL");
        if let Some(user) = &self.user {
            url.set_username(user).expect("http URLs take a user name");
        }
        url.to_string().trim_end_matches('/').to_owned()
    }

    /// The server URL with the credentials in its userinfo (percent-encoded).
    pub fn url_with_credentials(&self) -> String {
        let mut url = Url::parse(&self.url).expect("SETTEE_TEST_COUCHDB_URL is a URL");
        if let Some(user) = &self.user {
            url.set_username(user).expect("http URLs take a user name");
            url.set_password(self.password.as_deref())
                .expect("http URLs take a password");
        }
        url.to_string().trim_end_matches('/').to_owned()
    }

    /// The URL of database `name`, with the credentials in it (for library calls).
    pub fn db_url_with_credentials(&self, name: &str) -> String {
        format!("{}/{name}", self.url_with_credentials())
    }

    /// The URL of database `name` with only the user name in it, as the `settee` command is
    /// given it (see [`TestServer::url_with_user`]).
    pub fn db_url_with_user(&self, name: &str) -> String {
        format!("{}/{name}", self.url_with_user())
    }

    /// `Some((user, password))` when the server has credentials.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        Some((
            self.user.as_deref()?,
            self.password.as_deref().unwrap_or(""),
        ))
    }

    /// Sends one blocking request and returns (status, body). For test setup and cleanup,
    /// and for reading the server's own answer with nothing of ours in between. It asks
    /// for JSON (`Accept: application/json`: CouchDB answers `open_revs` with multipart
    /// otherwise), and a chunked body comes back joined.
    ///
    /// # Panics
    /// On a non-http URL or a connection failure.
    pub fn raw_request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = Url::parse(&self.url).expect("SETTEE_TEST_COUCHDB_URL is a URL");
        assert_eq!(
            url.scheme(),
            "http",
            "settee-testkit speaks plain http only"
        );
        let host = url.host_str().expect("the test server URL has a host");
        let port = url.port_or_known_default().unwrap_or(80);
        let mut stream = TcpStream::connect((host, port)).expect("connecting to the test server");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set_read_timeout");
        let base = url.path().trim_end_matches('/');
        let mut req = format!(
            "{method} {base}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\
             Accept: application/json\r\nConnection: close\r\n"
        );
        if let Some((user, password)) = self.credentials() {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            req.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream
            .write_all(req.as_bytes())
            .expect("writing to the test server");
        let mut resp = Vec::new();
        stream
            .read_to_end(&mut resp)
            .expect("reading from the test server");
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&resp[..at], &resp[at + 4..]),
            None => (&resp[..], &[][..]),
        };
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        };
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The server's databases whose names start with `start` (from `_all_dbs`).
    ///
    /// # Panics
    /// If the server does not answer `_all_dbs` with a list of names.
    pub fn databases_starting(&self, start: &str) -> Vec<String> {
        let (status, body) = self.raw_request("GET", "/_all_dbs", None);
        assert_eq!(status, 200, "GET /_all_dbs: {body}");
        let all: Vec<String> = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET /_all_dbs is no list of names ({e}): {body}"));
        all.into_iter().filter(|n| n.starts_with(start)).collect()
    }
}

/// The body of a `Transfer-Encoding: chunked` answer, its chunks joined (as far as they are
/// whole).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        // A chunk extension (`;name=value`) may follow the size.
        let size = size.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        let data = &rest[eol + 2..];
        if n == 0 || data.len() < n {
            break;
        }
        out.extend_from_slice(&data[..n]);
        rest = data[n..].strip_prefix(b"\r\n").unwrap_or(&data[n..]);
    }
    out
}

/// A database name no other test (in this or another process) uses:
/// `settee-test-{prefix}-{pid}-{counter}-{random}`, lowercased to suit CouchDB's rules.
pub fn unique_db_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}-{:08x}",
        db_name_start(prefix),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Deletes the databases named after `prefix` (by [`unique_db_name`]) that a process of
/// this machine which no longer runs left behind, and returns their names. A test process
/// killed mid-run (Ctrl-C, a harness's timeout) runs no destructor, so its [`TestDb`]s stay
/// on the server; a test that sweeps before it starts keeps them from piling up. Databases
/// of running processes are left alone; so is everything on a system without `/proc`.
///
/// # Panics
/// If the server does not answer `_all_dbs`.
pub fn sweep_dead_processes_dbs(prefix: &str) -> Vec<String> {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return Vec::new();
    }
    let server = TestServer::get();
    let start = any_process_start(prefix);
    let mut swept = Vec::new();
    for name in server.databases_starting(&start) {
        let pid = name[start.len()..].split('-').next().unwrap_or_default();
        let alive = pid
            .parse::<u32>()
            .map_or(true, |p| proc.join(p.to_string()).exists());
        if !alive {
            let (status, body) = server.raw_request("DELETE", &format!("/{name}"), None);
            if matches!(status, 200 | 202 | 404) {
                swept.push(name);
            } else {
                eprintln!(
                    "settee-testkit: deleting {name} left by a dead process: {status} {body}"
                );
            }
        }
    }
    swept
}

/// How every [`unique_db_name`] of `prefix` made by this process starts:
/// `settee-test-{prefix}-{pid}-` (what a test lists to check it left nothing behind, see
/// [`TestServer::databases_starting`]).
pub fn db_name_start(prefix: &str) -> String {
    format!("{}{}-", any_process_start(prefix), std::process::id())
}

/// `settee-test-{prefix}-`, with `prefix` lowercased and anything but letters and digits
/// made `_` (CouchDB's rules for names).
fn any_process_start(prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("settee-test-{prefix}-")
}

/// The seed of a randomised test: `var` from the environment (to replay a failure), or
/// the clock. Printed on stderr either way, naming `test` and how to replay it.
///
/// # Panics
/// If `var` is set but is not an unsigned integer.
pub fn seed(var: &str, test: &str) -> u64 {
    let seed = match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v} is not an unsigned integer")),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    eprintln!("{test}: seed {seed} ({var}={seed} replays it)");
    seed
}

/// A uniquely named database on the test server, deleted when the guard is dropped (also
/// when the test panics).
#[derive(Debug)]
pub struct TestDb {
    server: TestServer,
    name: String,
}

impl TestDb {
    /// Reserves a unique name without creating the database (for tests of creation).
    pub fn named(prefix: &str) -> TestDb {
        TestDb {
            server: TestServer::get(),
            name: unique_db_name(prefix),
        }
    }

    /// Creates a uniquely named database.
    ///
    /// # Panics
    /// If the server is not set or refuses.
    pub fn create(prefix: &str) -> TestDb {
        let db = TestDb::named(prefix);
        let (status, body) = db.server.raw_request("PUT", &format!("/{}", db.name), None);
        assert!(
            status == 201 || status == 202,
            "creating test db {}: {status} {body}",
            db.name
        );
        db
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server it lives on.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// The database URL, without credentials.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server.url(), self.name)
    }

    /// The database URL with the credentials in its userinfo.
    pub fn url_with_credentials(&self) -> String {
        self.server.db_url_with_credentials(&self.name)
    }

    /// The database URL with only the user name in it, as the `settee` command is given it
    /// (see [`TestServer::url_with_user`]).
    pub fn url_with_user(&self) -> String {
        self.server.db_url_with_user(&self.name)
    }
}

/// Another node of the test server's cluster (see [`TestServer::other_node`]).
pub const OTHER_URL_VAR: &str = "SETTEE_TEST_COUCHDB_OTHER_URL";

/// Whether the test server is a CouchDB cluster (`SETTEE_TEST_SERVER_KIND=couchdb-cluster`,
/// as `scripts/test.sh`'s cluster pass sets it).
pub fn is_cluster() -> bool {
    std::env::var("SETTEE_TEST_SERVER_KIND").as_deref() == Ok("couchdb-cluster")
}

/// Set (to anything) to keep test databases on the server after the tests, for debugging.
pub const KEEP_DBS_VAR: &str = "SETTEE_TEST_KEEP_DBS";

/// How many times a [`TestDb`] asks the server to delete its database.
const DELETE_ATTEMPTS: u32 = 3;

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DBS_VAR).is_some() {
            eprintln!("settee-testkit: keeping {} ({KEEP_DBS_VAR})", self.name);
            return;
        }
        let server = self.server.clone();
        let path = format!("/{}", self.name);
        // Tried again when the server fails (a busy server answers 5xx, or a connection
        // fails): a database left behind stays on the shared server for good. A 404 is
        // success (the test deleted it itself).
        for attempt in 1..=DELETE_ATTEMPTS {
            let (server, path) = (server.clone(), path.clone());
            // A separate thread: Drop may run on a tokio worker, which must not block on
            // I/O for long, and a panic here must not abort a test that is already
            // unwinding.
            let handle = std::thread::spawn(move || server.raw_request("DELETE", &path, None));
            let failed = match handle.join() {
                Ok((200 | 202 | 404, _)) => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(_) => "no answer".to_owned(),
            };
            eprintln!(
                "settee-testkit: deleting {} (attempt {attempt} of {DELETE_ATTEMPTS}): {failed}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_joined() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(body), b"hello world");
    }

    #[test]
    fn names_are_unique_and_legal() {
        let a = unique_db_name("Bulk Get");
        let b = unique_db_name("Bulk Get");
        assert_ne!(a, b);
        assert!(a.starts_with("settee-test-bulk_get-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)));
    }
}
