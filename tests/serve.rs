//! `settee serve` as a command, and the store's owner advertising its address: while a
//! process holds a store (`settee serve`, `settee sync --continuous`), the `settee` command
//! on that store talks to the process instead of failing with `store_in_use`.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ok_json, run};
use serde_json::Value;
use settee_testkit::wait::Lines;
use settee_testkit::wait_until;

fn settee() -> Command {
    common::settee().command()
}

/// A running `settee serve`; `stop` sends SIGTERM (a clean shutdown), drop kills it.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let child = settee()
            .arg("serve")
            .args(args)
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Serve::started(child)
    }

    /// The server `child` (stdout piped), once it has printed its URL.
    fn started(mut child: Child) -> Serve {
        let line = Lines::new(child.stdout.take().unwrap())
            .next_within(Duration::from_secs(60), "settee serve to print its URL")
            .expect("settee serve exited without printing its URL");
        let started: Value = serde_json::from_str(&line).expect("serve prints its URL first");
        Serve {
            child,
            url: started["url"].as_str().unwrap().to_owned(),
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "settee serve exited with {status}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn commands_on_a_served_store_go_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    ok_json(&["put", s(&store), r#"{"_id":"before","v":0}"#]);
    let mut serve = Serve::start(&[s(&store)]);
    assert!(store.join(settee::store::ADVERT_FILE).exists());

    // The store is held by the server, yet the command works, through it.
    let put = ok_json(&["put", s(&store), r#"{"_id":"during","v":1}"#]);
    assert_eq!(put["ok"], true);
    assert_eq!(ok_json(&["get", s(&store), "before"])["v"], 0);
    // What was written is what the server serves.
    let via_http = ok_json(&["get", &format!("{}/notes", serve.url), "during"]);
    assert_eq!(via_http["_rev"], put["rev"]);

    serve.stop();
    assert!(!store.join(settee::store::ADVERT_FILE).exists());
    // Afterwards the command opens the store itself again.
    assert_eq!(ok_json(&["get", s(&store), "during"])["v"], 1);
}

#[test]
fn commands_on_a_store_under_continuous_sync_reach_the_syncing_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let remote = Serve::start(&["--data-dir", s(&data)]);
    let remote_db = format!("{}/remote", remote.url);
    let store = dir.path().join("local");
    let mut sync = settee()
        .args([
            "sync",
            "--continuous",
            "--create-target",
            "--quiet",
            s(&store),
            &remote_db,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the sync's advertisement", || {
        store.join(settee::store::ADVERT_FILE).exists()
    });
    // A write to the held store goes through the syncing process, which pushes it on.
    let put = ok_json(&["put", s(&store), r#"{"_id":"note","text":"hi"}"#]);
    wait_until(Duration::from_secs(30), "the note on the remote", || {
        let out = run(&["get", &remote_db, "note"]);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["_rev"] == put["rev"]
    });
    let _ = sync.kill();
    let _ = sync.wait();
}

/// One HTTP/1.1 request on its own connection (`Connection: close`): the status and the
/// whole answer (headers and body) as text.
fn http(
    url: &str,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> (u16, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((n, p)) = auth {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{n}:{p}"));
        req.push_str(&format!("Authorization: Basic {cred}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Issue 20: the command's user flags reach the server: `--peruser` makes a user's
/// database, `--lockout-threshold` locks a name, `--cookie-same-site`/`--cookie-secure`
/// shape the session cookie.
#[test]
fn serve_flags_for_users_lockout_and_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = settee()
        .args([
            "serve",
            "--data-dir",
            s(&data),
            "--admin",
            "boss",
            "--peruser",
        ])
        .args([
            "--lockout-threshold",
            "2",
            "--cookie-same-site",
            "strict",
            "--cookie-secure",
        ])
        // CouchDB's 600,000 rounds take seconds each in a debug build.
        .args(["--password-iterations", "1000"])
        .args(["--bind", "127.0.0.1:0"])
        .env("SETTEE_PASSWORD", "boss-pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Serve::started(child);
    let boss = Some(("boss", "boss-pw"));
    let user = r#"{"name":"ann","type":"user","roles":[],"password":"a-pw"}"#;
    let (st, text) = http(
        &serve.url,
        "PUT",
        "/_users/org.couchdb.user:ann",
        boss,
        user,
    );
    assert_eq!(st, 201, "{text}");
    let (st, text) = http(&serve.url, "GET", "/userdb-616e6e", boss, "");
    assert_eq!(st, 200, "{text}");
    let (st, text) = http(
        &serve.url,
        "POST",
        "/_session",
        None,
        r#"{"name":"boss","password":"boss-pw"}"#,
    );
    assert_eq!(st, 200, "{text}");
    assert!(
        text.contains("SameSite=Strict") && text.contains("; Secure"),
        "{text}"
    );
    for _ in 0..2 {
        assert_eq!(
            http(&serve.url, "GET", "/_session", Some(("ann", "no")), "").0,
            401
        );
    }
    let (st, text) = http(&serve.url, "GET", "/_session", Some(("ann", "a-pw")), "");
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("Account is temporarily locked"), "{text}");
    serve.stop();
}

/// Issue 20: `settee serve` runs design document JavaScript in `settee js-worker` processes
/// of its own (`--js-workers`, `--js-timeout`), which end with it.
#[test]
fn serve_runs_javascript_in_worker_processes_that_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut serve = Serve::start(&[
        "--data-dir",
        s(&data),
        "--js-workers",
        "1",
        "--js-timeout",
        "2",
    ]);
    let (st, text) = http(&serve.url, "PUT", "/js", None, "");
    assert_eq!(st, 201, "{text}");
    let ddoc = r#"{"views":{"v":{"map":"function (doc) { emit(doc.n, null); }"},
        "spin":{"map":"function (doc) { while (true) {} }"}}}"#;
    let (st, text) = http(&serve.url, "PUT", "/js/_design/d", None, ddoc);
    assert_eq!(st, 201, "{text}");
    let (st, text) = http(&serve.url, "PUT", "/js/a", None, r#"{"n":7}"#);
    assert_eq!(st, 201, "{text}");
    let (st, text) = http(&serve.url, "GET", "/js/_design/d/_view/v", None, "");
    assert_eq!(st, 200, "{text}");
    assert!(text.contains(r#""key":7"#), "{text}");
    let (st, text) = http(&serve.url, "GET", "/js/_design/d/_view/spin", None, "");
    assert_eq!(st, 500, "{text}");
    assert!(text.contains("OS process timed out."), "{text}");
    // The worker is this server's child, running `settee js-worker`.
    let server = serve.child.id();
    let workers = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, r)| r.split(' ').nth(1)?.parse::<u32>().ok());
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                ppid == Some(server) && cmd.split(|b| *b == 0).any(|a| a == b"js-worker")
            })
            .collect()
    };
    let running = workers();
    assert_eq!(running.len(), 1, "{running:?}");
    serve.stop();
    wait_until(
        Duration::from_secs(10),
        "the worker to end with the server",
        || !std::path::Path::new(&format!("/proc/{}", running[0])).exists(),
    );
}

/// Issue 20: the edge flags reach the server. `--header-timeout`: a client that sends half
/// its headers is dropped unanswered. `--max-connections 1`: while one connection is in
/// the middle of a request, another is closed unanswered, and the first is still served.
/// (The read deadlines only turn a hang into a failure.)
#[test]
fn serve_edge_flags_drop_a_slow_client_and_cap_connections() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("edge");
    ok_json(&["put", s(&store), r#"{"_id":"before"}"#]);
    let mut serve = Serve::start(&[s(&store), "--header-timeout", "1", "--max-connections", "1"]);
    let addr = serve.url.trim_start_matches("http://").to_owned();
    let connect = || {
        let conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        conn
    };
    // Everything a connection gets until the server closes it (a reset counts as closed).
    let rest = |conn: &mut TcpStream| {
        let mut got = Vec::new();
        match conn.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
        String::from_utf8_lossy(&got).into_owned()
    };

    // The first connection: half a request's headers, then nothing.
    let mut slow = connect();
    // Below the default 30 s, so that a flag that did not arrive fails; far above 1 s.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let got = rest(&mut slow);
    assert!(!got.contains(" 200 "), "a slow client was answered: {got}");

    // A request whose body is still coming holds the one place: `100 Continue` says that
    // the server took it (it may still be finishing the slow client's connection).
    let body = r#"{"v":1}"#;
    let head = format!(
        "PUT /edge/d HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nExpect: 100-continue\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut holder = None;
    wait_until(Duration::from_secs(60), "a connection to be served", || {
        let mut conn = connect();
        conn.write_all(head.as_bytes()).unwrap();
        let mut line = [0u8; 25];
        match conn.read_exact(&mut line) {
            Ok(()) if line.starts_with(b"HTTP/1.1 100 Continue") => {
                holder = Some(conn);
                true
            }
            _ => false,
        }
    });
    let mut holder = holder.unwrap();

    // A second connection meanwhile: closed before anything of it is read.
    let mut extra = connect();
    let _ = extra.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let got = rest(&mut extra);
    assert!(
        got.is_empty(),
        "a connection past the cap was answered: {got}"
    );

    // The first one is still served.
    holder.write_all(body.as_bytes()).unwrap();
    let got = rest(&mut holder);
    assert!(got.contains(" 201 "), "{got}");
    serve.stop();
}
