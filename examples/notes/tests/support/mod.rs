//! Support for the notes app's end-to-end tests: the app as a process of its own, stores
//! filled with generated notes, and a small WebDriver client driving Debian's headless
//! Chromium through chromedriver (installed by `scripts/browser-deps.sh`).
//!
//! The WebDriver client speaks the W3C protocol over HTTP with reqwest: sessions, navigation,
//! element clicks and keystrokes (real input events, as a person's), script execution to
//! read the page, and screenshots. Waiting is always polling for an expected state with a
//! deadline; a deadline that passes fails with what the page showed last, and a screenshot.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod pages;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// How long a test waits for the page to show something before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Where the screenshots of a test run go (git-ignored: under `target/`).
pub fn screenshot_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("notes-screenshots")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One run of the `settee-notes` binary on a store of its own.
pub struct AppProcess {
    pub url: String,
    child: Child,
    pub log: PathBuf,
}

impl AppProcess {
    /// Starts the app on a free port; `remote` is a database URL naming the user (the
    /// password goes through `SETTEE_PASSWORD`, as a person would run it). The binary is
    /// this build's, or `SETTEE_NOTES_BIN` (a release build, for the benchmark).
    pub fn start(store: &Path, remote: Option<(&str, &str)>) -> AppProcess {
        let log = store.with_extension("log");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let bin = std::env::var("SETTEE_NOTES_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_settee-notes").to_owned());
            let mut cmd = Command::new(bin);
            cmd.arg("--store")
                .arg(store)
                .args(["--listen", "127.0.0.1:0"])
                .env("RUST_LOG", "settee_notes=debug,settee_replicate=info,warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap());
            if let Some((url, password)) = remote {
                cmd.args(["--remote", url]).env("SETTEE_PASSWORD", password);
            }
            let mut child = cmd.spawn().expect("starting settee-notes");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if let Some(url) = line.trim().strip_prefix("settee-notes: listening on ") {
                return AppProcess {
                    url: url.to_owned(),
                    child,
                    log,
                };
            }
            let _ = child.wait();
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            // A store the test filled and closed a moment ago: sled releases its lock
            // shortly after the handle is dropped.
            assert!(
                err.contains("store_in_use") && Instant::now() < deadline,
                "settee-notes did not start: {err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A note generated for list tests: ids, titles, notebooks, tags and update times follow
/// from `i` alone, and the times are a permutation of `i`, so that the newest-first order is
/// not the order of writing.
pub fn generated_note(i: usize, n: usize) -> Value {
    let notebooks = ["Work", "Home", "Ideas", "Travel"];
    let mut tags = Vec::new();
    if i % 3 == 0 {
        tags.push("green");
    }
    if i % 5 == 0 {
        tags.push("blue");
    }
    let when = 1_700_000_000_000i64 + ((i * 7919) % n) as i64 * 1000;
    json!({
        "_id": format!("note:gen{i:05}"),
        "type": "note",
        "title": format!("Note {i:05}"),
        "body": format!("Generated note number {i}."),
        "notebook": notebooks[i % notebooks.len()],
        "tags": tags,
        "created_at": when,
        "updated_at": when,
    })
}

/// Fills a new store with `n` generated notes and closes it.
pub async fn fill_store(path: &Path, n: usize) -> Vec<Value> {
    use settee::Documents;
    let db = settee::Local::open(path).unwrap();
    let notes: Vec<Value> = (0..n).map(|i| generated_note(i, n)).collect();
    for chunk in notes.chunks(1000) {
        let res = db.bulk_docs(chunk.to_vec()).await.unwrap();
        assert!(res.iter().all(|r| r.is_ok()));
    }
    db.close().await.unwrap();
    notes
}

/// The titles of `notes` that match, newest first, ties by greater id first (the order the
/// app must show: its index's, descending).
pub fn expected_titles(notes: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut hits: Vec<&Value> = notes.iter().filter(|n| keep(n)).collect();
    hits.sort_by(|a, b| {
        b["updated_at"]
            .as_i64()
            .cmp(&a["updated_at"].as_i64())
            .then(b["_id"].as_str().cmp(&a["_id"].as_str()))
    });
    hits.iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, started for one test.
pub struct Driver {
    port: u16,
    child: Child,
    http: reqwest::Client,
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

impl Driver {
    pub async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/browser-deps.sh (installs Debian's chromium and \
                 chromium-driver); scripts/test.sh does"
            );
        }
        let port = free_port();
        // A process group of its own, so that dropping the driver can end every browser
        // it started even if a session was not closed.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let d = Driver { port, child, http };
        let start = Instant::now();
        loop {
            let ready = d
                .http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await
                .ok();
            if let Some(r) = ready {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    return d;
                }
            }
            assert!(start.elapsed() < DEADLINE, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser (a Chromium of its own, with a fresh profile) on this driver.
    pub async fn browser(&self, name: &str, shots: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The flags Chromium needs here: headless as root, and no background connections
        // (this machine's network is closed; Chromium would otherwise try Google's hosts).
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let base = format!("http://127.0.0.1:{}", self.port);
        let resp: Value = self
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_owned();
        Browser {
            http: self.http.clone(),
            base: format!("{base}/session/{session}"),
            name: name.to_owned(),
            shots: shots.to_owned(),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Killing chromedriver alone leaves its browsers running: end the whole group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser window, driven over WebDriver.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// Which page this is ("A", "B"), for messages and screenshot names.
    pub name: String,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends the session, which closes its Chromium. Blocking (and in a thread of its own,
    /// since a test's runtime may be the one dropping it).
    fn drop(&mut self) {
        let url = self.base.clone();
        let _ = std::thread::spawn(move || delete_blocking(&url)).join();
    }
}

/// `DELETE url` over plain HTTP/1.1, waiting for the whole answer (chromedriver answers
/// once the browser is closed, and may keep the connection open after it).
fn delete_blocking(url: &str) -> Option<()> {
    let (host, path) = url.strip_prefix("http://")?.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    write!(
        stream,
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return Some(());
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(());
            }
        }
    }
}

impl Browser {
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, String)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        match resp["value"].get("error") {
            Some(err) => Err((
                err.as_str().unwrap_or_default().to_owned(),
                resp["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            None => Ok(resp["value"].clone()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|(err, msg)| panic!("[{}] WebDriver {path}: {err}: {msg}", self.name))
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Clicks the element `css` finds, as a person would (a real mouse click). The page
    /// re-renders its list on live updates; an element replaced between finding and
    /// clicking it is found again.
    pub async fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            let id = self.element(css).await;
            let r = self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await;
            match r {
                Ok(_) => return,
                Err((err, _)) if err == "stale element reference" && start.elapsed() < DEADLINE => {
                }
                Err((err, msg)) => panic!("[{}] clicking {css}: {err}: {msg}", self.name),
            }
        }
    }

    /// Resizes the browser's window (a phone-sized screen, for instance).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Replaces the text of the input `css` finds by typing `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The text of the first element `css` finds (`None` if there is none).
    pub async fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Saves a screenshot as `<step>-<page>.png` and says where.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let path = self.shots.join(format!("{step}-{}.png", self.name));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Polls `script` (a function body returning a value) until `ok` holds for its value;
    /// returns the value. Fails after [`DEADLINE`] with the last value seen and a
    /// screenshot.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        args: Value,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            if ok(&v) {
                return v;
            }
            if start.elapsed() > DEADLINE {
                let shot = self
                    .screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!(
                    "[{}] timed out after {DEADLINE:?} waiting for {what}; last seen: {v}; see {}",
                    self.name,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element `css` finds shows text containing `want`.
    pub async fn wait_text(&self, css: &str, want: &str) {
        self.wait_for(
            &format!("{css} to show {want:?}"),
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
            |v| v.as_str().is_some_and(|t| t.contains(want)),
        )
        .await;
    }

    /// Waits until the list shows a note titled `title` whose badge says `badge`.
    pub async fn wait_badge(&self, title: &str, badge: &str) {
        self.wait_for(
            &format!("note {title:?} badged {badge:?}"),
            "for (const li of document.querySelectorAll('#note-list li')) { \
               if (li.querySelector('.title').textContent === arguments[0]) \
                 return li.querySelector('.badge').textContent; } return null;",
            json!([title]),
            |v| v.as_str().is_some_and(|t| t.contains(badge)),
        )
        .await;
    }

    /// Clicks the list row of the note titled `title`, and waits for its editor or
    /// conflict view.
    pub async fn open_note(&self, title: &str) {
        self.wait_for(
            &format!("note {title:?} in the list"),
            "return [...document.querySelectorAll('#note-list li .title')].some(t => t.textContent === arguments[0]);",
            json!([title]),
            |v| v == true,
        )
        .await;
        let index = self
            .js(
                "return [...document.querySelectorAll('#note-list li .title')].findIndex(t => t.textContent === arguments[0]);",
                json!([title]),
            )
            .await;
        self.click(&format!(
            "#note-list li:nth-child({})",
            index.as_i64().unwrap() + 1
        ))
        .await;
        self.wait_for(
            &format!("note {title:?} to open"),
            "return !document.querySelector('#editor').hidden || !document.querySelector('#conflict').hidden;",
            json!([]),
            |v| v == true,
        )
        .await;
    }

    /// Waits until the list shows exactly `want`, top to bottom: a filter's count can be
    /// shown before its list is (seen once in CI), so a list is compared once it settles.
    pub async fn wait_titles(&self, want: &[String]) {
        let want = json!(want);
        self.wait_for(
            "the list to show the expected titles",
            "return [...document.querySelectorAll('#note-list li .title')].map(t => t.textContent);",
            json!([]),
            |v| *v == want,
        )
        .await;
    }

    /// The titles the list shows, top to bottom.
    pub async fn list_titles(&self) -> Vec<String> {
        let v = self
            .js(
                "return [...document.querySelectorAll('#note-list li .title')].map(t => t.textContent);",
                json!([]),
            )
            .await;
        serde_json::from_value(v).unwrap()
    }
}
