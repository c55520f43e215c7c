//! Support for the end-to-end tests: the test server (from scripts/test.sh, or Apache CouchDB
//! via SETTEE_TEST_COUCHDB_URL), a private pouchdb-server that a test may stop and restart,
//! a TCP proxy that can cut and refuse connections, and `wait_until`.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shared test server: URL (no credentials), user and password.
pub struct Server {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Server {
    /// From the environment that scripts/test.sh sets. Fails loudly without it.
    pub fn get() -> Server {
        let url = std::env::var("SETTEE_TEST_COUCHDB_URL").expect(
            "SETTEE_TEST_COUCHDB_URL is not set: run the tests with scripts/test.sh, which starts the test server",
        );
        Server {
            url: url.trim_end_matches('/').to_owned(),
            user: std::env::var("SETTEE_TEST_COUCHDB_USER").ok(),
            password: std::env::var("SETTEE_TEST_COUCHDB_PASSWORD").ok(),
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

impl Server {
    /// The test server, which must be Apache CouchDB: tests that compare Settee's Mango with
    /// CouchDB's `_find` (pouchdb-server answers with PouchDB's rules). Fails loudly when the
    /// suite runs against another server.
    pub fn couchdb() -> Server {
        let server = Server::get();
        let kind = std::env::var("SETTEE_TEST_SERVER_KIND").unwrap_or_default();
        let info = std::thread::spawn({
            let url = server.url.clone();
            move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(async move {
                        settee::couch::CouchClient::builder(url)
                            .build()
                            .unwrap()
                            .server_info()
                            .await
                    })
            }
        })
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the test server does not answer: {e}"));
        assert!(
            info.couchdb.as_deref() == Some("Welcome") && kind != "pouchdb-server",
            "this test compares with Apache CouchDB's _find, and the test server is {kind} {}: run scripts/test.sh with SETTEE_COUCHDB_RELEASE (CouchDB 3.5)",
            info.version
        );
        server
    }
}

/// A unique database name for one test.
pub fn unique_db(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` until it holds, failing with `what` after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// A loopback TCP proxy in front of a server. `cut()` drops every open connection;
/// `set_refusing(true)` closes new ones at once (the server "is gone"); `set_delay` delays
/// each chunk forwarded; `fail_every(n)` closes the connection of every n-th request
/// instead of forwarding it.
pub struct Proxy {
    pub port: u16,
    refusing: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    fail_every: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

/// Whether a chunk read from a client starts an HTTP request (a method and a path). The
/// tests' request bodies are JSON, so a body chunk never looks like this.
fn starts_request(chunk: &[u8]) -> bool {
    [
        &b"GET /"[..],
        b"HEAD /",
        b"POST /",
        b"PUT /",
        b"DELETE /",
        b"COPY /",
    ]
    .iter()
    .any(|m| chunk.starts_with(m))
}

impl Proxy {
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            refusing: Arc::default(),
            delay_ms: Arc::default(),
            fail_every: Arc::default(),
            requests: Arc::default(),
            failed: Arc::default(),
            conns: Arc::default(),
            stop: Arc::default(),
        };
        let (refusing, delay, conns, stop) = (
            p.refusing.clone(),
            p.delay_ms.clone(),
            p.conns.clone(),
            p.stop.clone(),
        );
        let (fail_every, requests, failed) =
            (p.fail_every.clone(), p.requests.clone(), p.failed.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                if refusing.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                conns.lock().unwrap().push(client.try_clone().unwrap());
                conns.lock().unwrap().push(server.try_clone().unwrap());
                for (upstream, mut from, mut to) in [
                    (
                        true,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    ),
                    (false, server, client),
                ] {
                    let delay = delay.clone();
                    let (fail_every, requests, failed) =
                        (fail_every.clone(), requests.clone(), failed.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let every = fail_every.load(Ordering::Relaxed);
                            if upstream && every > 0 && starts_request(&buf[..n]) {
                                let nth = requests.fetch_add(1, Ordering::Relaxed) + 1;
                                if nth % every == 0 {
                                    // Unanswered: the client sees its connection closed.
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    let _ = from.shutdown(std::net::Shutdown::Both);
                                    break;
                                }
                            }
                            let d = delay.load(Ordering::Relaxed);
                            if d > 0 {
                                std::thread::sleep(Duration::from_millis(d));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let conns: Vec<TcpStream> = self.conns.lock().unwrap().drain(..).collect();
        let open = conns
            .iter()
            .filter(|c| c.shutdown(std::net::Shutdown::Both).is_ok())
            .count();
        open / 2
    }

    pub fn set_refusing(&self, on: bool) {
        self.refusing.store(on, Ordering::Relaxed);
        if on {
            self.cut();
        }
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Fails every `n`-th request from now on (0: none): its connection is closed before
    /// the request reaches the server.
    pub fn fail_every(&self, n: u64) {
        self.requests.store(0, Ordering::Relaxed);
        self.fail_every.store(n, Ordering::Relaxed);
    }

    /// How many requests `fail_every` has failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}
