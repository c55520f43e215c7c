//! The notes app end to end, in a real browser: Debian's headless Chromium driven over
//! WebDriver, against `settee-notes` processes syncing with the test server (Apache CouchDB
//! under `scripts/test.sh`). The network between an app and the server goes through a
//! proxy the test can cut, which is how "offline" is made here.
//!
//! Each step's screenshot is saved under `target/tmp/notes-screenshots/<test>/` (the test
//! output prints every path). The tests run one at a time (a lock), so that a browser test
//! has the machine's cores to itself.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;
use tokio::sync::Mutex;

use serde_json::{json, Value};
use support::pages::{edit_body, port, start_app, write_note, ServerDb};
use support::{expected_titles, fill_store, screenshot_dir, Driver};

/// One browser test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn note_written_offline_waits_to_upload_then_syncs_by_itself() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("offline");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-offline").await;
    // The app starts with no server; the person sets it in the page's settings.
    let app = start_app(dir.path(), "app", None);
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    b.goto(&app.url).await;
    b.wait_text("#sync-state", "Local only").await;
    let (user, password) = server.db.server().credentials().unwrap();
    b.click("#settings-btn").await;
    b.type_into(
        "#remote-url",
        &format!(
            "http://127.0.0.1:{}/{}",
            port(&server.proxy),
            server.db.name()
        ),
    )
    .await;
    b.type_into("#remote-user", user).await;
    b.type_into("#remote-password", password).await;
    b.screenshot("0-settings").await;
    b.click("#connect").await;
    b.wait_text("#sync-state", "Synced").await;
    let shown = b
        .js(
            "return document.body.innerText + document.querySelector('#sync').title;",
            json!([]),
        )
        .await;
    assert!(
        shown.as_str().unwrap().contains(server.db.name()),
        "{shown}"
    );
    assert!(
        !shown.as_str().unwrap().contains(password),
        "the page shows the password"
    );
    b.screenshot("1-synced").await;

    // The network goes away: the page says offline, and when it retries.
    server.proxy.set_refusing(true);
    b.wait_text("#sync-state", "Offline").await;
    b.wait_text("#sync-detail", "retrying").await;
    write_note(&b, "Written offline", "while the server was away").await;
    b.wait_badge("Written offline", "waiting to upload").await;
    b.wait_text("#unsynced-count", "1 unsynced").await;
    b.screenshot("2-offline-waiting-to-upload").await;
    assert!(
        !server
            .server_docs()
            .await
            .iter()
            .any(|d| d["title"] == "Written offline"),
        "the server was reachable: the test proved nothing"
    );

    // The network comes back; nobody clicks anything.
    server.proxy.set_refusing(false);
    let back = Instant::now();
    b.wait_badge("Written offline", "synced").await;
    b.wait_text("#sync-state", "Synced").await;
    b.wait_text("#unsynced-count", "all notes uploaded").await;
    eprintln!("synced {:?} after the network came back", back.elapsed());
    b.screenshot("3-synced-again").await;
    let on_server: Vec<Value> = server
        .server_docs()
        .await
        .into_iter()
        .filter(|d| d["title"] == "Written offline")
        .collect();
    assert_eq!(on_server.len(), 1);
    assert_eq!(on_server[0]["body"], "while the server was away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_from_two_devices_is_resolved_on_one_and_gone_on_the_other() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("conflict");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-conflict").await;
    let proxy_b = server.proxy().await;
    let (remote_a, remote_b) = (
        server.app_remote(&server.proxy),
        server.app_remote(&proxy_b),
    );
    let app_a = start_app(dir.path(), "a", Some(&remote_a));
    let app_b = start_app(dir.path(), "b", Some(&remote_b));
    let driver = Driver::start().await;
    let a = driver.browser("A", &shots).await;
    let b = driver.browser("B", &shots).await;
    a.goto(&app_a.url).await;
    b.goto(&app_b.url).await;
    a.wait_text("#sync-state", "Synced").await;
    b.wait_text("#sync-state", "Synced").await;

    // Both online: a note written in A shows in B, and an edit in B shows in A.
    write_note(&a, "Shopping", "bread").await;
    let written = Instant::now();
    b.wait_badge("Shopping", "synced").await;
    eprintln!(
        "A -> B: the new note showed in B after {:?}",
        written.elapsed()
    );
    edit_body(&b, "Shopping", "bread, milk").await;
    let edited = Instant::now();
    a.open_note("Shopping").await;
    a.wait_for(
        "B's edit in A's editor",
        "return document.querySelector('#body').value;",
        json!([]),
        |v| v == "bread, milk",
    )
    .await;
    eprintln!("B -> A: the edit showed in A after {:?}", edited.elapsed());
    a.screenshot("1-both-online").await;

    // Apart: each device edits the note.
    server.proxy.set_refusing(true);
    proxy_b.set_refusing(true);
    a.wait_text("#sync-state", "Offline").await;
    b.wait_text("#sync-state", "Offline").await;
    edit_body(&a, "Shopping", "bread, milk, eggs (from A)").await;
    edit_body(&b, "Shopping", "bread, milk, apples (from B)").await;
    a.wait_badge("Shopping", "waiting to upload").await;
    b.wait_badge("Shopping", "waiting to upload").await;
    b.screenshot("2-apart").await;

    // Together again: both see the conflict, with both versions side by side.
    server.proxy.set_refusing(false);
    proxy_b.set_refusing(false);
    a.wait_badge("Shopping", "conflict").await;
    b.wait_badge("Shopping", "conflict").await;
    a.wait_text("#unsynced-count", "1 in conflict").await;
    a.open_note("Shopping").await;
    a.wait_for(
        "both versions side by side",
        "return [...document.querySelectorAll('#versions .version .v-body')].map(e => e.textContent).sort();",
        json!([]),
        |v| v == &json!(["bread, milk, apples (from B)", "bread, milk, eggs (from A)"]),
    )
    .await;
    // The versions name their sides, and the suggested merge marks the differing lines.
    let labels = a
        .js(
            "return [...document.querySelectorAll('#versions .version .v-label')].map(e => e.textContent);",
            json!([]),
        )
        .await;
    let labels = labels.as_array().unwrap();
    assert!(
        labels
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("This device · edited ")),
        "{labels:?}"
    );
    assert!(
        labels
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("Device ")),
        "{labels:?}"
    );
    let merge = a
        .js(
            "return document.querySelector('#merge-body').value;",
            json!([]),
        )
        .await;
    let merge = merge.as_str().unwrap();
    assert!(
        merge.contains("<<<<<<< this device\nbread, milk, eggs (from A)\n======="),
        "{merge}"
    );
    assert!(
        merge.contains("bread, milk, apples (from B)\n>>>>>>> device "),
        "{merge}"
    );
    a.screenshot("3-conflict-side-by-side").await;
    b.screenshot("3-conflict").await;

    // A keeps B's version; B sees the conflict gone, and the server has one version.
    let index = a
        .js(
            "return [...document.querySelectorAll('#versions .version .v-body')].findIndex(e => e.textContent.includes('from B'));",
            json!([]),
        )
        .await;
    a.click(&format!(
        "#versions .version:nth-child({}) .keep",
        index.as_i64().unwrap() + 1
    ))
    .await;
    a.wait_text("#editor-message", "Conflict resolved.").await;
    a.wait_for(
        "the kept version in A's editor",
        "return document.querySelector('#body').value;",
        json!([]),
        |v| v == "bread, milk, apples (from B)",
    )
    .await;
    a.wait_badge("Shopping", "synced").await;
    b.wait_badge("Shopping", "synced").await;
    b.open_note("Shopping").await;
    b.wait_for(
        "the resolution in B's editor",
        "return [document.querySelector('#conflict').hidden, document.querySelector('#body').value];",
        json!([]),
        |v| v == &json!([true, "bread, milk, apples (from B)"]),
    )
    .await;
    b.wait_text("#unsynced-count", "all notes uploaded").await;
    a.screenshot("4-resolved").await;
    b.screenshot("4-resolved").await;
    let docs = server.server_docs().await;
    let id = docs.iter().find(|d| d["title"] == "Shopping").unwrap()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = server.server_doc(&id).await;
    assert_eq!(doc["body"], "bread, milk, apples (from B)");
    assert!(doc.get("_conflicts").is_none(), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn note_the_server_refuses_shows_the_servers_reason() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("rejected");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-rejected").await;
    let ddoc = json!({
        "validate_doc_update": "function (doc) { if (doc.title && doc.title.indexOf('SECRET') >= 0) { throw({forbidden: 'titles may not contain SECRET'}); } }"
    });
    let (status, body) = server.db.server().raw_request(
        "PUT",
        &format!("/{}/_design/rules", server.db.name()),
        Some(&ddoc.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let remote = server.app_remote(&server.proxy);
    let app = start_app(dir.path(), "app", Some(&remote));
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    b.goto(&app.url).await;
    b.wait_text("#sync-state", "Synced").await;

    write_note(&b, "SECRET plans", "nobody may know").await;
    b.wait_badge("SECRET plans", "rejected: titles may not contain SECRET")
        .await;
    b.wait_text("#editor-badge", "rejected: titles may not contain SECRET")
        .await;
    b.wait_text("#unsynced-count", "1 unsynced").await;
    // The header never says "Synced" while a note is refused.
    b.wait_text("#sync-state", "1 rejected").await;
    b.screenshot("1-rejected").await;

    // Fixed: the next revision is accepted.
    b.type_into("#title", "Public plans").await;
    b.click("#save").await;
    b.wait_badge("Public plans", "synced").await;
    b.wait_text("#unsynced-count", "all notes uploaded").await;
    b.wait_text("#sync-state", "Synced").await;
    b.screenshot("2-accepted").await;
    let on_server = server
        .server_docs()
        .await
        .iter()
        .any(|d| d["title"] == "Public plans");
    if std::env::var("SETTEE_TEST_SERVER_KIND").as_deref() == Ok("pouchdb-server") {
        // FIXME(pouchdb-server 4.2.0): with a validate_doc_update design document, it
        // answers success to a replicated revision whose parent it lacks (here, the refused
        // one) and does not store it. Apache CouchDB stores it.
        assert!(
            !on_server,
            "pouchdb-server now stores the fixed revision: drop this branch"
        );
    } else {
        assert!(on_server, "the fixed note is not on the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_notes_are_listed_newest_first_and_filtered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("thousand");
    let dir = tempfile::tempdir().unwrap();
    let notes = fill_store(&dir.path().join("app"), 1000).await;
    let app = start_app(dir.path(), "app", None);
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    b.goto(&app.url).await;
    b.wait_text("#list-count", "1000 notes").await;
    b.wait_text("#sync-state", "Local only").await;
    let all = expected_titles(&notes, |_| true);
    b.wait_titles(&all[..100]).await;
    b.screenshot("1-all").await;

    // The next page.
    b.click("#more").await;
    b.wait_for(
        "200 rows",
        "return document.querySelectorAll('#note-list li').length;",
        json!([]),
        |v| v == 200,
    )
    .await;
    b.wait_titles(&all[..200]).await;

    // A notebook.
    b.click("#notebooks li[data-notebook='Ideas']").await;
    let ideas = expected_titles(&notes, |n| n["notebook"] == "Ideas");
    b.wait_text("#list-count", &format!("{} notes", ideas.len()))
        .await;
    b.wait_titles(&ideas[..100]).await;
    b.screenshot("2-notebook").await;

    // A tag.
    b.click("#tags li[data-tag='blue']").await;
    let blue = expected_titles(&notes, |n| {
        n["tags"].as_array().unwrap().contains(&json!("blue"))
    });
    b.wait_text("#list-count", &format!("{} notes", blue.len()))
        .await;
    b.wait_titles(&blue[..100]).await;

    // A search of titles, within everything.
    b.click("#notebooks li:first-child").await;
    b.type_into("#search", "note 0012").await;
    let found = expected_titles(&notes, |n| {
        n["title"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("note 0012")
    });
    b.wait_text("#list-count", &format!("{} notes", found.len()))
        .await;
    b.wait_titles(&found).await;
    b.screenshot("3-search").await;

    // A search of bodies: "Generated note number 123." is found by its words.
    b.type_into("#search", "NUMBER 123").await;
    b.wait_text("#list-count", "1 note").await;
    b.wait_titles(&["Note 00123".to_owned()]).await;
    b.screenshot("4-search-bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_notes_first_paint_is_measured() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("ten-thousand");
    let dir = tempfile::tempdir().unwrap();
    let notes = fill_store(&dir.path().join("app"), 10_000).await;
    let app = start_app(dir.path(), "app", None);
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        b.goto(&app.url).await;
        let perf = b
            .wait_for(
                "the first list's timings",
                "const p = window.__notesPerf; return p && p.firstListPaint ? p : null;",
                json!([]),
                |v| !v.is_null(),
            )
            .await;
        runs.push(perf);
    }
    assert_eq!(
        b.list_titles().await,
        expected_titles(&notes, |_| true)[..100]
    );
    // Typing a search with 10,000 notes: from the first keystroke to the list showing the
    // hits (the page waits 150 ms after the last keystroke before it asks). The search
    // itself is the word index's (search.rs prints its own time for 10,000 notes).
    let t = Instant::now();
    b.type_into("#search", "note 0999").await;
    let hits = expected_titles(&notes, |n| {
        n["title"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("note 0999")
    });
    b.wait_text("#list-count", &format!("{} notes", hits.len()))
        .await;
    let search = t.elapsed();
    b.screenshot("1-ten-thousand").await;
    // Reported, not asserted (docs/benchmarks.md): the machine's load decides the numbers.
    let report = json!({"first_paint_runs": runs, "search_ms": search.as_millis() as u64});
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("notes-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("10,000 notes: {report}\n(written to {})", out.display());
}
