//! `settee serve` streams attachments (issue 23): a 50 MB attachment replicated store ->
//! `settee serve` -> store with the command, the server a child process whose peak
//! resident memory (`VmHWM` in `/proc/<pid>/status`, reset through
//! `/proc/<pid>/clear_refs`) is measured against its resident memory before each step;
//! the whole attachment read back with a GET (measured too), a `Range` far into it, and
//! inline in a JSON `_bulk_get` (measured too).

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
use settee::Documents as _;
mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use settee::store::Database;
use settee_testkit::wait::Lines;

/// The attachment's size.
const LARGE: usize = 50 * 1024 * 1024;

/// How much the server's peak resident memory may grow while it gives [`LARGE`] bytes
/// (a whole GET, the multipart `_bulk_get` of the pull, a JSON `_bulk_get` inline), in
/// KiB. Measured with attachment files (store format 8): +1.5 to +2.7 MB for each. A
/// whole copy in the server would be +50 MB or more; sled's chunks (format 7) kept about
/// the attachment's size resident (+60 MB).
const SERVE_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

/// The same for the push: a replicated revision's `multipart/related` parts are staged in
/// the store as they arrive, so it is bounded like a GET (measured: +3.7 MB).
const PUSH_GROWTH_LIMIT_KIB: u64 = SERVE_GROWTH_LIMIT_KIB;

/// Bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `settee serve --data-dir DIR` as a child process (admin party on loopback).
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(data: &std::path::Path) -> Serve {
        let mut child = common::settee()
            .command()
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = Lines::new(child.stdout.take().unwrap())
            .next_within(Duration::from_secs(60), "settee serve to print its URL")
            .expect("settee serve exited without printing its URL");
        let started: Value = serde_json::from_str(&line).unwrap();
        Serve {
            child,
            url: started["url"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// `VmRSS` or `VmHWM` of the server, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// Starts a measurement: resets the peak to the current resident set (Linux's
    /// `clear_refs` 5) and returns that.
    fn mark(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
        self.status_kib("VmRSS:")
    }

    /// How far the peak rose above `mark`.
    fn growth_since(&self, mark: u64) -> u64 {
        self.status_kib("VmHWM:").saturating_sub(mark)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Has the server open the database (what opening a store costs is not the step's).
async fn opened(http: &reqwest::Client, remote: &str) {
    let res = http.get(remote).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

fn replicate(source: &str, target: &str) {
    let summary = common::ok_json(&["replicate", source, target, "--create-target"]);
    assert_eq!(summary["doc_write_failures"], 0, "{summary}");
    assert_eq!(summary["docs_written"], 1, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_23_serve_streams_a_50_mb_attachment_both_ways_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(LARGE);
    let src = dir.path().join("src");
    {
        let db = Database::open(&src).unwrap();
        db.put(json!({"_id": "big", "title": "a recording"}))
            .unwrap();
        let rev = db.get("big", &Default::default()).unwrap()["_rev"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        db.put_attachment_from(
            "big",
            Some(&rev),
            "a.bin",
            "application/octet-stream",
            &data[..],
        )
        .unwrap();
    }
    // Each step on a server just started (with the same data directory): memory a step
    // freed stays in the allocator and would hide the next step's use.
    let data_dir = dir.path().join("data");
    let http = reqwest::Client::new();

    let serve = Serve::start(&data_dir);
    let remote = format!("{}/big", serve.url);
    let res = http.put(&remote).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let mark = serve.mark();
    replicate(src.to_str().unwrap(), &remote);
    let push = serve.growth_since(mark);
    eprintln!("serve took {LARGE} bytes: peak RSS +{push} KiB");
    drop(serve);

    let serve = Serve::start(&data_dir);
    let remote = format!("{}/big", serve.url);
    opened(&http, &remote).await;
    let mark = serve.mark();
    let whole = http
        .get(format!("{remote}/big/a.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.content_length(), Some(LARGE as u64));
    let whole = whole.bytes().await.unwrap();
    let get = serve.growth_since(mark);
    eprintln!("a GET of {LARGE} bytes: peak RSS +{get} KiB");
    assert!(whole == data, "the served bytes differ");
    drop(whole);
    // A range far into it, from the store's chunks.
    let (a, b) = (40_000_000usize, 40_000_099usize);
    let res = http
        .get(format!("{remote}/big/a.bin"))
        .header("Range", format!("bytes={a}-{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), &data[a..=b]);
    drop(serve);

    // PouchDB's pull: `_bulk_get?attachments=true` as JSON, the bytes inline in base64.
    let serve = Serve::start(&data_dir);
    let remote = format!("{}/big", serve.url);
    opened(&http, &remote).await;
    let mark = serve.mark();
    let res = http
        .post(format!("{remote}/_bulk_get?revs=true&attachments=true"))
        .json(&json!({"docs": [{"id": "big"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let inline: Value = res.json().await.unwrap();
    let json_get = serve.growth_since(mark);
    eprintln!("a JSON _bulk_get of {LARGE} bytes inline: peak RSS +{json_get} KiB");
    let data64 = &inline["results"][0]["docs"][0]["ok"]["_attachments"]["a.bin"]["data"];
    assert!(
        data64.as_str().map(str::len) == Some(LARGE.div_ceil(3) * 4),
        "the inline data has another length"
    );
    drop(inline);
    drop(serve);

    let serve = Serve::start(&data_dir);
    let remote = format!("{}/big", serve.url);
    opened(&http, &remote).await;
    let mark = serve.mark();
    let dst = dir.path().join("dst");
    replicate(&remote, dst.to_str().unwrap());
    let pull = serve.growth_since(mark);
    eprintln!("serve gave {LARGE} bytes: peak RSS +{pull} KiB");
    drop(serve);

    let pulled = Database::open(&dst).unwrap();
    let mut reader = pulled.attachment_reader("big", None, "a.bin").unwrap();
    let mut got = Vec::with_capacity(LARGE);
    std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
    assert!(got == data, "the pulled bytes differ");
    assert_eq!(
        pulled.get("big", &Default::default()).unwrap()["title"],
        "a recording"
    );

    assert!(get < SERVE_GROWTH_LIMIT_KIB, "GET: +{get} KiB");
    assert!(
        json_get < SERVE_GROWTH_LIMIT_KIB,
        "JSON _bulk_get: +{json_get} KiB"
    );
    assert!(push < PUSH_GROWTH_LIMIT_KIB, "push: +{push} KiB");
    assert!(pull < SERVE_GROWTH_LIMIT_KIB, "pull: +{pull} KiB");
}
