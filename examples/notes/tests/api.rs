//! The notes app's HTTP API, endpoint by endpoint, against the app running in this process:
//! what each returns, and for bad input (invalid JSON, unknown note, stale revision, bad
//! parameters, requests from other web origins) a clear error and nothing changed. The sync
//! endpoints run against the test server.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use settee_notes::{App, AppOptions};
use settee_testkit::TestDb;

struct Running {
    _dir: tempfile::TempDir,
    app: App,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppOptions {
        store: dir.path().join("store"),
        remote: None,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = settee_notes::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Running {
        _dir: dir,
        app,
        base,
        http: reqwest::Client::new(),
    }
}

impl Running {
    /// Sends a request; returns the status and the JSON body.
    async fn req(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, v)
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then(|| body.to_string());
        let (status, v) = self.req(method, path, body.as_deref()).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn create(&self, title: &str, notebook: &str, tags: &[&str]) -> Value {
        let v = self
            .ok(
                Method::POST,
                "/api/notes",
                json!({"title": title, "body": format!("{title} text"), "notebook": notebook, "tags": tags}),
            )
            .await;
        v["note"].clone()
    }

    /// The store's update sequence: unchanged means nothing was written.
    async fn seq(&self) -> u64 {
        self.app.db().info().await.unwrap().update_seq
    }
}

/// Asserts an error reply: status, CouchDB-style name, and words of its reason.
fn assert_error(got: &(StatusCode, Value), status: u16, name: &str, says: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"], name, "{}", got.1);
    let reason = got.1["reason"].as_str().unwrap();
    assert!(reason.contains(says), "reason {reason:?} lacks {says:?}");
}

fn path(id: &Value) -> String {
    format!("/api/notes/{}", id.as_str().unwrap())
}

#[tokio::test]
async fn page_and_its_files_are_served_with_nothing_from_elsewhere() {
    let r = start().await;
    let modules = [
        "main.js",
        "core.js",
        "list.js",
        "editor.js",
        "images.js",
        "conflicts.js",
        "sync-status.js",
    ]
    .map(|m| (format!("/js/{m}"), "text/javascript"));
    let files = [
        ("/".to_owned(), "text/html"),
        ("/style.css".to_owned(), "text/css"),
    ];
    for (file, kind) in files.into_iter().chain(modules) {
        let resp = r
            .http
            .get(format!("{}{file}", r.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{file}: {ct}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains("https://"), "{file} refers to the internet");
        for attr in ["src=\"http", "href=\"http", "url(http", "import("] {
            assert!(
                !text.contains(attr),
                "{file} loads something from elsewhere: {attr}"
            );
        }
        // The modules import one another only: `from './x.js'`, never a URL.
        for line in text.lines().filter(|l| l.contains(" from '")) {
            assert!(line.contains(" from './"), "{file}: {line}");
        }
    }
    let got = r.req(Method::GET, "/js/nope.js", None).await;
    assert_error(&got, 404, "not_found", "/js/nope.js");
    let got = r.req(Method::GET, "/nope", None).await;
    assert_error(&got, 404, "not_found", "/nope");
}

#[tokio::test]
async fn create_read_edit_delete() {
    let r = start().await;
    let note = r.create("First", "Work", &["a", "b", "a"]).await;
    assert!(note["id"].as_str().unwrap().starts_with("note:"));
    assert_eq!(note["tags"], json!(["a", "b"]));
    let got = r.ok(Method::GET, &path(&note["id"]), Value::Null).await;
    assert_eq!(got["note"], note);
    assert_eq!(got["state"], json!({"kind": "local_only"}));
    assert_eq!(got["versions"], json!([]));

    let edited = r
        .ok(
            Method::PUT,
            &path(&note["id"]),
            json!({"rev": note["rev"], "title": "First, edited", "body": "new", "notebook": "Home"}),
        )
        .await;
    assert_eq!(edited["note"]["title"], "First, edited");
    assert_eq!(edited["note"]["notebook"], "Home");
    assert_eq!(edited["note"]["created_at"], note["created_at"]);
    assert!(edited["note"]["rev"].as_str().unwrap().starts_with("2-"));

    let rev = edited["note"]["rev"].as_str().unwrap();
    let del = r
        .ok(
            Method::DELETE,
            &format!("{}?rev={rev}", path(&note["id"])),
            Value::Null,
        )
        .await;
    assert_eq!(del["ok"], true);
    let got = r.req(Method::GET, &path(&note["id"]), None).await;
    assert_error(&got, 404, "not_found", "no note");
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let r = start().await;
    let note = r.create("Kept", "Work", &[]).await;
    let id = path(&note["id"]);
    let before = r.seq().await;

    // Invalid JSON, wrong shapes, unknown fields, limits.
    let bad_bodies = [
        ("{\"title\": ", "invalid JSON"),
        ("[1, 2]", "invalid JSON"),
        ("{\"title\": 5}", "invalid JSON"),
        ("{\"titel\": \"typo\"}", "unknown field `titel`"),
        (
            "{\"rev\": \"1-abc\", \"title\": \"x\"}",
            "a new note has no rev",
        ),
    ];
    for (body, says) in bad_bodies {
        let got = r.req(Method::POST, "/api/notes", Some(body)).await;
        assert_error(&got, 400, "bad_request", says);
    }
    let long = json!({"title": "x".repeat(501)}).to_string();
    let got = r.req(Method::POST, "/api/notes", Some(&long)).await;
    assert_error(&got, 400, "bad_request", "title is longer");

    // Edits: no rev, a malformed rev, a stale rev, an unknown note, invalid JSON.
    let got = r.req(Method::PUT, &id, Some("{\"title\": \"x\"}")).await;
    assert_error(&got, 400, "bad_request", "rev is required");
    let got = r
        .req(
            Method::PUT,
            &id,
            Some("{\"rev\": \"abc\", \"title\": \"x\"}"),
        )
        .await;
    assert_error(&got, 400, "bad_request", "is not a revision");
    let stale = json!({"rev": "1-00000000000000000000000000000000", "title": "x"}).to_string();
    let got = r.req(Method::PUT, &id, Some(&stale)).await;
    assert_error(&got, 409, "conflict", "was changed since revision");
    let got = r
        .req(Method::PUT, "/api/notes/note:nope", Some(&stale))
        .await;
    assert_error(&got, 404, "not_found", "note:nope");
    let got = r.req(Method::PUT, &id, Some("not json")).await;
    assert_error(&got, 400, "bad_request", "invalid JSON");

    // Deletes: no rev, a stale rev, an unknown note.
    let got = r.req(Method::DELETE, &id, None).await;
    assert_error(&got, 400, "bad_request", "?rev= is required");
    let got = r
        .req(
            Method::DELETE,
            &format!("{id}?rev=1-00000000000000000000000000000000"),
            None,
        )
        .await;
    assert_error(&got, 409, "conflict", "was changed since revision");
    let got = r
        .req(Method::DELETE, "/api/notes/note:nope?rev=1-abc", None)
        .await;
    assert_error(&got, 404, "not_found", "note:nope");

    // Resolving a note that has no conflict.
    let resolve = json!({"revs": [note["rev"]], "keep": note["rev"]}).to_string();
    let got = r
        .req(Method::POST, &format!("{id}/resolve"), Some(&resolve))
        .await;
    assert_error(&got, 409, "conflict", "has no conflict");

    // Nothing was written, and the note is as it was.
    assert_eq!(r.seq().await, before);
    let got = r.ok(Method::GET, &id, Value::Null).await;
    assert_eq!(got["note"], note);
}

#[tokio::test]
async fn requests_from_other_origins_and_host_names_are_refused() {
    let r = start().await;
    let before = r.seq().await;
    let resp = r
        .http
        .post(format!("{}/api/notes", r.base))
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body("{\"title\": \"planted\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "forbidden");
    let resp = r
        .http
        .get(format!("{}/api/notes", r.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The app's own page may.
    let own = r.base.trim_start_matches("http://").to_owned();
    let resp = r
        .http
        .post(format!("{}/api/notes", r.base))
        .header("origin", format!("http://{own}"))
        .header("content-type", "application/json")
        .body("{\"title\": \"mine\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(r.seq().await, before + 1);
}

#[tokio::test]
async fn lists_are_newest_first_and_filter_by_notebook_tag_and_title() {
    let r = start().await;
    let mut made = Vec::new();
    for (title, book, tags) in [
        ("Alpha plan", "Work", vec!["x"]),
        ("beta", "Home", vec!["x", "y"]),
        ("Gamma PLAN", "Work", vec!["y"]),
        ("delta", "Work", vec![]),
    ] {
        made.push(r.create(title, book, &tags).await);
    }
    let titles = |v: &Value| -> Vec<String> {
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = r.ok(Method::GET, "/api/notes", Value::Null).await;
    assert_eq!(all["more"], false);
    assert_eq!(titles(&all), ["delta", "Gamma PLAN", "beta", "Alpha plan"]);
    assert_eq!(all["notes"][0]["state"], json!({"kind": "local_only"}));
    assert_eq!(all["notes"][0]["excerpt"], "delta text");

    let work = r
        .ok(Method::GET, "/api/notes?notebook=Work", Value::Null)
        .await;
    assert_eq!(titles(&work), ["delta", "Gamma PLAN", "Alpha plan"]);
    let y = r.ok(Method::GET, "/api/notes?tag=y", Value::Null).await;
    assert_eq!(titles(&y), ["Gamma PLAN", "beta"]);
    let plan = r.ok(Method::GET, "/api/notes?q=plan", Value::Null).await;
    assert_eq!(titles(&plan), ["Gamma PLAN", "Alpha plan"]);
    let both = r
        .ok(Method::GET, "/api/notes?notebook=Work&tag=x", Value::Null)
        .await;
    assert_eq!(titles(&both), ["Alpha plan"]);
    let page = r
        .ok(Method::GET, "/api/notes?limit=2&skip=1", Value::Null)
        .await;
    assert_eq!(page["more"], true);
    assert_eq!(titles(&page), ["Gamma PLAN", "beta"]);
    // Paging with the bookmark: the next page starts after the last row.
    let first = r.ok(Method::GET, "/api/notes?limit=2", Value::Null).await;
    assert_eq!(titles(&first), ["delta", "Gamma PLAN"]);
    assert_eq!(first["more"], true);
    let bookmark: String =
        url::form_urlencoded::byte_serialize(first["bookmark"].as_str().unwrap().as_bytes())
            .collect();
    let next = r
        .ok(
            Method::GET,
            &format!("/api/notes?limit=2&bookmark={bookmark}"),
            Value::Null,
        )
        .await;
    assert_eq!(titles(&next), ["beta", "Alpha plan"]);
    assert_eq!(next["more"], false);
    assert!(next["bookmark"].is_null());
    // A search is literal text, not a pattern.
    let none = r.ok(Method::GET, "/api/notes?q=pl.n", Value::Null).await;
    assert_eq!(titles(&none), Vec::<String>::new());

    // An edit moves a note to the top.
    let alpha = &made[0];
    r.ok(
        Method::PUT,
        &path(&alpha["id"]),
        json!({"rev": alpha["rev"], "title": "Alpha plan", "notebook": "Work", "tags": ["x"]}),
    )
    .await;
    let all = r.ok(Method::GET, "/api/notes", Value::Null).await;
    assert_eq!(titles(&all)[0], "Alpha plan");

    let counts = r.ok(Method::GET, "/api/notebooks", Value::Null).await;
    assert_eq!(
        counts["notebooks"],
        json!([{"name": "Home", "count": 1}, {"name": "Work", "count": 3}])
    );
    assert_eq!(
        counts["tags"],
        json!([{"name": "x", "count": 2}, {"name": "y", "count": 2}])
    );

    for (q, says) in [
        ("limit=abc", "invalid query"),
        ("limit=5000", "above the most a page holds"),
        ("sort=title", "invalid query"),
        ("bookmark=nope", "invalid bookmark"),
    ] {
        let got = r.req(Method::GET, &format!("/api/notes?{q}"), None).await;
        assert_error(&got, 400, "bad_request", says);
    }
}

#[tokio::test]
async fn conflict_shows_every_version_and_resolves_once() {
    let r = start().await;
    let id = "note:clash";
    let base = json!({"type": "note", "notebook": "Work", "tags": [], "created_at": 1});
    let version = |rev: &str, hash: &str, title: &str, at: i64| {
        let mut d = base.clone();
        d["_id"] = json!(id);
        d["_rev"] = json!(rev);
        d["_revisions"] = json!({"start": 2, "ids": [hash, "root"]});
        d["title"] = json!(title);
        d["body"] = json!(format!("{title} body"));
        d["updated_at"] = json!(at);
        d
    };
    // Two devices' edits of one note, as replication writes them (the store's own call:
    // the facade writes new edits only).
    r.app
        .db()
        .store()
        .unwrap()
        .bulk_docs(
            vec![
                version("2-aaaa", "aaaa", "from A", 10),
                version("2-bbbb", "bbbb", "from B", 20),
            ],
            false,
        )
        .unwrap();
    let got = r
        .ok(Method::GET, "/api/notes/note:clash", Value::Null)
        .await;
    assert_eq!(got["state"], json!({"kind": "conflict"}));
    let versions: Vec<&str> = got["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["title"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["from B", "from A"], "winner first");
    let list = r.ok(Method::GET, "/api/notes", Value::Null).await;
    assert_eq!(list["notes"][0]["state"], json!({"kind": "conflict"}));

    let before = r.seq().await;
    for (body, status, name, says) in [
        (
            json!({"revs": ["2-aaaa"], "keep": "2-aaaa"}),
            409,
            "conflict",
            "other versions",
        ),
        (
            json!({"revs": ["2-aaaa", "2-bbbb"]}),
            400,
            "bad_request",
            "either keep",
        ),
        (
            json!({"revs": ["2-aaaa", "2-bbbb"], "keep": "2-cccc"}),
            400,
            "bad_request",
            "not one of the versions",
        ),
        (
            json!({"revs": ["nope"], "keep": "2-aaaa"}),
            400,
            "bad_request",
            "is not a revision",
        ),
        (
            json!({"revs": ["2-aaaa", "2-bbbb"], "merged": {"title": 1}}),
            400,
            "bad_request",
            "invalid JSON",
        ),
    ] {
        let got = r
            .req(
                Method::POST,
                "/api/notes/note:clash/resolve",
                Some(&body.to_string()),
            )
            .await;
        assert_error(&got, status, name, says);
    }
    let got = r
        .req(
            Method::POST,
            "/api/notes/note:nope/resolve",
            Some("{\"revs\": [], \"keep\": \"1-a\"}"),
        )
        .await;
    assert_error(&got, 404, "not_found", "note:nope");
    assert_eq!(
        r.seq().await,
        before,
        "a refused resolution wrote something"
    );

    let merged = r
        .ok(
            Method::POST,
            "/api/notes/note:clash/resolve",
            json!({"revs": ["2-bbbb", "2-aaaa"], "merged": {"title": "merged", "body": "both", "notebook": "Work"}}),
        )
        .await;
    assert_eq!(merged["note"]["title"], "merged");
    assert!(merged["note"]["rev"].as_str().unwrap().starts_with("3-"));
    let got = r
        .ok(Method::GET, "/api/notes/note:clash", Value::Null)
        .await;
    assert_eq!(got["versions"], json!([]));
    assert_eq!(got["state"], json!({"kind": "local_only"}));
    assert_eq!(got["note"]["body"], "both");
}

#[tokio::test]
async fn live_updates_arrive_as_server_sent_events() {
    let r = start().await;
    let resp = r
        .http
        .get(format!("{}/api/events", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut stream = resp.bytes_stream();
    let note = r.create("Live", "Work", &[]).await;
    let id = note["id"].as_str().unwrap().to_owned();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen.contains("event: changes") && seen.contains(&id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no changes event for {id}; saw {seen:?}"))
            .expect("the event stream ended")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = seen
        .lines()
        .skip_while(|l| *l != "event: changes")
        .nth(1)
        .unwrap();
    let update: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(update, json!({"type": "changes", "ids": [id]}));
}

#[tokio::test]
async fn sync_is_set_checked_started_and_stopped_without_showing_the_password() {
    let r = start().await;
    let note = r.create("Goes to the server", "Work", &[]).await;
    let st = r.ok(Method::GET, "/api/sync", Value::Null).await;
    assert_eq!(st["state"], "local_only");
    assert_eq!(st["remote"], Value::Null);

    for (body, says) in [
        (json!({"url": "not a url"}), "not a URL"),
        (json!({"url": "ftp://h/db"}), "http://"),
        (
            json!({"url": "http://127.0.0.1:5984/"}),
            "names no database",
        ),
        (json!({"uri": "http://127.0.0.1:5984/x"}), "invalid JSON"),
    ] {
        let got = r
            .req(Method::PUT, "/api/sync", Some(&body.to_string()))
            .await;
        assert_error(&got, 400, "bad_request", says);
    }
    let st = r.ok(Method::GET, "/api/sync", Value::Null).await;
    assert_eq!(st["state"], "local_only", "a refused server was taken");

    let db = TestDb::create("notes-api-sync");
    let (user, password) = db
        .server()
        .credentials()
        .expect("the test server has an admin");
    let set = r
        .req(
            Method::PUT,
            "/api/sync",
            Some(&json!({"url": db.url(), "user": user, "password": password}).to_string()),
        )
        .await;
    assert_eq!(set.0, 200, "{}", set.1);
    assert!(!set.1.to_string().contains(password));
    assert_eq!(set.1["remote"], db.url());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = r.ok(Method::GET, "/api/sync", Value::Null).await;
        assert!(!st.to_string().contains(password));
        let got = r.ok(Method::GET, &path(&note["id"]), Value::Null).await;
        if st["state"] == "synced" && st["unsynced"] == 0 && got["state"]["kind"] == "synced" {
            assert!(st["last_synced_at"].as_i64().unwrap() > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not synced within 30 s: {st} {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = db.server().raw_request(
        "GET",
        &format!("/{}/{}", db.name(), note["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");

    let st = r.ok(Method::DELETE, "/api/sync", Value::Null).await;
    assert_eq!(st["state"], "local_only");
    let got = r.ok(Method::GET, &path(&note["id"]), Value::Null).await;
    assert_eq!(got["state"]["kind"], "local_only");
}

/// "Sync now" (`POST /api/sync/now`) cuts short the wait of a sync that the server answered
/// with 503: it says it retried, and the note reaches the server. With nothing waiting it
/// says so and does nothing.
#[tokio::test]
async fn sync_now_retries_a_waiting_sync_at_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use settee_testkit::http::{Reply, Rule};

    let r = start().await;
    let idle = r.ok(Method::POST, "/api/sync/now", Value::Null).await;
    assert_eq!(idle["retried"], false, "{idle}");
    assert_eq!(idle["sync"]["state"], "local_only");

    let note = r.create("Waits for the server", "Work", &[]).await;
    let db = TestDb::create("notes-api-sync-now");
    let (user, password) = db
        .server()
        .credentials()
        .expect("the test server has an admin");
    // The server is up but busy: every write (`_bulk_docs`, `_revs_diff`) gets 503 until
    // `busy` is cleared, so the sync starts and its push waits to retry. (Reads pass: a
    // sync whose first request fails stops, and the supervisor restarts it instead.)
    let busy = Arc::new(AtomicBool::new(true));
    let b = busy.clone();
    let (proxy, _log) = settee_testkit::http::proxy(db.server().url(), move |req| {
        if b.load(Ordering::SeqCst) && req.method == "POST" {
            Rule::Answer(Reply::json(
                503,
                &json!({"error": "service_unavailable", "reason": "busy"}),
            ))
        } else {
            Rule::Forward
        }
    })
    .await;
    let url = format!("{proxy}/{}", db.name());
    r.ok(
        Method::PUT,
        "/api/sync",
        json!({"url": url, "user": user, "password": password}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = r.ok(Method::GET, "/api/sync", Value::Null).await;
        if st["state"] == "offline" {
            assert!(st["message"].as_str().unwrap().contains("503"), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "never offline: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    busy.store(false, Ordering::SeqCst);
    let now = r.ok(Method::POST, "/api/sync/now", Value::Null).await;
    assert_eq!(now["retried"], true, "{now}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = r.ok(Method::GET, "/api/sync", Value::Null).await;
        let got = r.ok(Method::GET, &path(&note["id"]), Value::Null).await;
        if st["state"] == "synced" && got["state"]["kind"] == "synced" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not synced within 30 s: {st} {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = db.server().raw_request(
        "GET",
        &format!("/{}/{}", db.name(), note["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    r.ok(Method::DELETE, "/api/sync", Value::Null).await;
}
