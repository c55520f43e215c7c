//! An Apache CouchDB cluster of a test's own: started with the release's `couchdb.sh
//! cluster` (`SETTEE_COUCHDB_RELEASE`, which `scripts/test.sh` exports), its nodes stopped
//! and restarted at the test's cue, and stopped with its data deleted when the [`Cluster`]
//! is dropped. What a test does with the nodes is the test's; this module only runs them.
//!
//! A cluster's nodes are killed on purpose, so no other test can share one: each test
//! starts its own (about 5 seconds). Three Erlang VMs are a load for two cores, so one
//! cluster runs at a time: `.config/nextest.toml` gives these tests a group of one, and
//! within one test process a [`Cluster`] holds a lock from its start to its drop (which is
//! what `cargo test`'s threads need).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};

use crate::TestServer;

/// The folder of an Apache CouchDB 3.5 release with `couchdb.sh` (see
/// `../shared/couchdb/README.md`).
pub const RELEASE_VAR: &str = "SETTEE_COUCHDB_RELEASE";

/// A running CouchDB cluster; stopped (every node) and deleted when dropped.
#[derive(Debug)]
pub struct Cluster {
    script: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<TestServer>,
    /// This process's one cluster at a time (released after `Drop` has stopped the nodes).
    _turn: Turn,
}

/// Whether a [`Cluster`] of this process runs, and the wait for it to end. Not a
/// `MutexGuard` held by the cluster: that would make it neither `Send` nor shareable
/// across the test's tasks.
static RUNNING: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// This process's turn to run a cluster, given back when dropped.
#[derive(Debug)]
struct Turn;

impl Turn {
    fn take() -> Turn {
        let (running, ended) = &RUNNING;
        // A poisoned lock only means a test panicked while holding it briefly.
        let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
        while *running {
            running = ended.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (running, ended) = &RUNNING;
        *running.lock().unwrap_or_else(|p| p.into_inner()) = false;
        ended.notify_one();
    }
}

impl Cluster {
    /// Starts an `n`-node cluster (`min(3, n)` copies of each document, 8 shards), with
    /// lockout mode off on every node as `scripts/test.sh` sets it on its server. `None`,
    /// after saying on stderr that `test` is skipped, when `SETTEE_COUCHDB_RELEASE` is not
    /// set: there is no CouchDB to start.
    ///
    /// # Panics
    /// If the cluster does not start.
    pub fn start_or_skip(test: &str, n: usize) -> Option<Cluster> {
        let Some(release) = std::env::var_os(RELEASE_VAR).filter(|v| !v.is_empty()) else {
            eprintln!(
                "{test}: SKIPPED: {RELEASE_VAR} is not set (scripts/test.sh sets it to an Apache \
                 CouchDB 3.5 release with couchdb.sh, which starts the cluster this test needs)"
            );
            return None;
        };
        let turn = Turn::take();
        let script = Path::new(&release).join("couchdb.sh");
        let dir = tempfile::Builder::new()
            .prefix("settee-cluster-")
            .tempdir()
            .expect("a temporary folder for the cluster");
        let mut cluster = Cluster {
            script,
            dir,
            nodes: Vec::new(),
            _turn: turn,
        };
        let out = cluster.script(&["cluster", &path_arg(cluster.dir.path()), &n.to_string()]);
        cluster.nodes = out.lines().map(node_from_line).collect();
        assert_eq!(cluster.nodes.len(), n, "couchdb.sh cluster printed: {out}");
        for node in &cluster.nodes {
            // CouchDB 3.4+ locks an account out after a few failed logins from one
            // address; every test logs in from 127.0.0.1.
            let (status, body) = node.raw_request(
                "PUT",
                "/_node/_local/_config/chttpd_auth_lockout/mode",
                Some("\"off\""),
            );
            assert_eq!(status, 200, "turning lockout off on {}: {body}", node.url());
        }
        Some(cluster)
    }

    /// Node `k` (1-based), with the admin's credentials.
    ///
    /// # Panics
    /// If there is no node `k`.
    pub fn node(&self, k: usize) -> &TestServer {
        assert!(
            (1..=self.nodes.len()).contains(&k),
            "the cluster has nodes 1 to {}, not {k}",
            self.nodes.len()
        );
        &self.nodes[k - 1]
    }

    /// Kills node `k` (`couchdb.sh stop-node`) and waits until its process has ended, so
    /// that the test's next request really finds it gone and it can be started again (a
    /// node started while the old one still shuts down finds its Erlang name taken).
    ///
    /// # Panics
    /// If it is still running a minute later.
    pub fn stop_node(&self, k: usize) {
        let node = self.node(k).clone();
        let pid_file = self.dir.path().join(format!("node{k}")).join("pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let proc = Path::new("/proc").join(pid.trim());
        self.script(&["stop-node", &path_arg(self.dir.path()), &k.to_string()]);
        let addr = socket_addr(&node);
        crate::wait_until(
            std::time::Duration::from_secs(60),
            &format!("node {k} to stop"),
            || {
                let ended = pid.trim().is_empty() || !proc.exists() || is_zombie(&proc);
                ended && std::net::TcpStream::connect(addr).is_err()
            },
        );
    }

    /// Starts node `k` again on its port with its data (`couchdb.sh restart-node`), and
    /// waits until it answers `/_up` (the script gives up waiting after 30 seconds, which a
    /// loaded machine can exceed).
    ///
    /// # Panics
    /// If it does not answer within two minutes.
    pub fn restart_node(&self, k: usize) {
        let node = self.node(k).clone();
        self.script(&["restart-node", &path_arg(self.dir.path()), &k.to_string()]);
        let addr = socket_addr(&node);
        crate::wait_until(
            std::time::Duration::from_secs(120),
            &format!("node {k} to answer /_up again"),
            || {
                std::net::TcpStream::connect(addr).is_ok()
                    && node.raw_request("GET", "/_up", None).0 == 200
            },
        );
    }

    /// Runs `couchdb.sh ARGS` and returns its stdout.
    fn script(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.script.display()));
        assert!(
            out.status.success(),
            "couchdb.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every node, also when the test panicked; the folder goes with `dir`.
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", &path_arg(self.dir.path())])
            .output();
        // The Erlang VMs let go of their files before the folder is removed.
        for node in &self.nodes {
            let addr = socket_addr(node);
            let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::net::TcpStream::connect(addr).is_ok() && std::time::Instant::now() < end {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// Whether the process at `/proc/PID` has ended and waits to be reaped.
fn is_zombie(proc: &Path) -> bool {
    std::fs::read_to_string(proc.join("stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A `couchdb.sh` line, `http://admin:PASSWORD@127.0.0.1:PORT PID`, as a [`TestServer`].
fn node_from_line(line: &str) -> TestServer {
    let url = line.split_whitespace().next().unwrap_or_default();
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("couchdb.sh printed {line} ({e})"));
    let user = Some(parsed.username().to_owned()).filter(|u| !u.is_empty());
    let password = parsed.password().map(str::to_owned);
    let mut bare = parsed.clone();
    // INVARIANT: an http URL (couchdb.sh prints http://) takes and drops userinfo.
    bare.set_username("").expect("http URLs have userinfo");
    bare.set_password(None).expect("http URLs have userinfo");
    TestServer {
        url: bare.to_string().trim_end_matches('/').to_owned(),
        user,
        password,
    }
}

fn socket_addr(node: &TestServer) -> std::net::SocketAddr {
    let url = url::Url::parse(node.url()).expect("a node's URL is a URL");
    let port = url.port_or_known_default().unwrap_or(80);
    ([127, 0, 0, 1], port).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_couchdb_sh_line_is_a_node_with_its_credentials() {
        let node = node_from_line("http://admin:0a1b@127.0.0.1:5984 1234");
        assert_eq!(node.url(), "http://127.0.0.1:5984");
        assert_eq!(node.credentials(), Some(("admin", "0a1b")));
    }
}
