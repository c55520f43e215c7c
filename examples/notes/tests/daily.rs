//! The notes app for daily use (issue 23), in a real browser as the other browser tests
//! (`browser.rs`): why sync fails, shown in the page; no lost work; conflicts that name
//! their sides; search in bodies; a small screen. Screenshots go under
//! `target/tmp/notes-screenshots/<test>/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::pages::{port, start_app, write_note, ServerDb};
use support::{screenshot_dir, Driver};
use tokio::sync::Mutex;

/// One browser test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_sync_fails_is_shown_in_the_page_and_the_settings() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("sync-failures");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-failures").await;
    let (url, password) = server.app_remote(&server.proxy);
    let app = start_app(
        dir.path(),
        "app",
        Some(&(url, "not-the-password".to_owned())),
    );
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    b.goto(&app.url).await;

    // A wrong password: the header says so in words, not in a tooltip.
    b.wait_text("#sync-reason", "name or password is incorrect")
        .await;
    b.wait_text("#sync-state", "Sync error").await;
    b.screenshot("1-wrong-password").await;
    // The settings show the server, the user and the last error.
    b.click("#settings-btn").await;
    b.wait_text("#remote-shown", server.db.name()).await;
    let (user, _) = server.db.server().credentials().unwrap();
    b.wait_text("#settings-user", &format!("as {user}")).await;
    b.wait_text("#settings-last-error", "name or password is incorrect")
        .await;
    b.screenshot("2-settings-show-the-last-error").await;

    // The right password: synced, and the reason is gone from the header.
    b.type_into("#remote-password", &password).await;
    b.click("#connect").await;
    b.wait_text("#sync-state", "Synced").await;
    let reason = b.text("#sync-reason").await.unwrap();
    assert_eq!(reason, "", "a reason shown while synced");

    // The server goes away: "server unreachable".
    server.proxy.set_refusing(true);
    b.wait_text("#sync-reason", "server unreachable").await;
    b.wait_text("#sync-state", "Offline").await;
    b.screenshot("3-unreachable").await;
    let shown = b.js("return document.body.innerText;", json!([])).await;
    assert!(
        !shown.as_str().unwrap().contains(&password),
        "the page shows the password"
    );
    assert!(port(&server.proxy) > 0);
}

/// Polls the app's API until `path` answers something `done` accepts.
async fn wait_api(app_url: &str, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + support::DEADLINE;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = reqwest::get(format!("{app_url}{path}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited for {what}; the API last answered {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_saves_itself_and_nothing_is_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("no-lost-work");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-no-lost-work").await;
    let remote = server.app_remote(&server.proxy);
    let app = start_app(dir.path(), "app", Some(&remote));
    let driver = Driver::start().await;
    let b = driver.browser("app", &shots).await;
    b.goto(&app.url).await;
    b.wait_text("#sync-state", "Synced").await;

    // "+ New note" writes nothing until something is typed.
    b.click("#new-note").await;
    b.wait_for(
        "the editor of a new note",
        "return !document.querySelector('#editor').hidden;",
        json!([]),
        |v| v == true,
    )
    .await;
    b.click("#notebooks li:first-child").await;
    let listed = wait_api(&app.url, "api/notes", "the list", |_| true).await;
    assert_eq!(listed["notes"], json!([]), "an empty new note was written");
    let on_server = server.server_docs().await;
    assert!(
        !on_server.iter().any(|d| d["type"] == "note"),
        "{on_server:?}"
    );

    // Typing saves by itself: no Save click.
    b.click("#new-note").await;
    b.type_into("#title", "Autosaved").await;
    b.type_into("#body", "typed, never saved by hand").await;
    b.wait_badge("Autosaved", "synced").await;
    wait_api(&app.url, "api/notes", "the typed body", |v| {
        v["notes"][0]["excerpt"] == "typed, never saved by hand"
    })
    .await;
    b.screenshot("1-autosaved").await;

    // A reload keeps what was typed.
    b.type_into("#body", "typed, then the page reloaded").await;
    wait_api(&app.url, "api/notes", "the second body", |v| {
        v["notes"][0]["excerpt"] == "typed, then the page reloaded"
    })
    .await;
    b.goto(&app.url).await;
    b.open_note("Autosaved").await;
    let body = b
        .js("return document.querySelector('#body').value;", json!([]))
        .await;
    assert_eq!(body, "typed, then the page reloaded");

    // A title that is too long stops at the limit while typing.
    b.type_into("#title", &"x".repeat(600)).await;
    let len = b
        .js(
            "return document.querySelector('#title').value.length;",
            json!([]),
        )
        .await;
    assert_eq!(len, 500);
    b.wait_text("#title-limit", "limit of 500").await;
    b.screenshot("2-title-limit").await;
    b.type_into("#title", "Autosaved").await;
    wait_api(&app.url, "api/notes", "the title back", |v| {
        v["notes"][0]["title"] == "Autosaved"
    })
    .await;

    // Delete, then Undo: the note comes back with its text, here and on the server.
    b.click("#delete").await;
    b.wait_text("#editor-message", "Deleted").await;
    wait_api(&app.url, "api/notes", "the deletion", |v| {
        v["notes"] == json!([])
    })
    .await;
    b.screenshot("3-deleted-with-undo").await;
    b.click("#undo-delete").await;
    b.wait_text("#editor-message", "Brought back.").await;
    b.wait_badge("Autosaved", "synced").await;
    let body = b
        .js("return document.querySelector('#body').value;", json!([]))
        .await;
    assert_eq!(body, "typed, then the page reloaded");
    let docs = server.server_docs().await;
    let doc = docs.iter().find(|d| d["title"] == "Autosaved").unwrap();
    assert_eq!(doc["body"], "typed, then the page reloaded");
    b.screenshot("4-undone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_goes_back_to_the_servers_version() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("revert");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-revert").await;
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
    write_note(&b, "Plans", "for everyone").await;
    b.wait_badge("Plans", "synced").await;

    b.type_into("#title", "SECRET plans").await;
    b.wait_badge("SECRET plans", "rejected: titles may not contain SECRET")
        .await;
    b.wait_text("#sync-state", "1 rejected").await;
    b.screenshot("1-rejected").await;
    b.click("#revert").await;
    b.wait_text("#editor-message", "server's version").await;
    b.wait_badge("Plans", "synced").await;
    b.wait_text("#sync-state", "Synced").await;
    let title = b
        .js("return document.querySelector('#title').value;", json!([]))
        .await;
    assert_eq!(title, "Plans");
    b.screenshot("2-back-to-the-servers-version").await;
    let docs = server.server_docs().await;
    assert!(docs.iter().any(|d| d["title"] == "Plans"), "{docs:?}");
    assert!(
        !docs.iter().any(|d| d["title"] == "SECRET plans"),
        "{docs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_420_px_screen_shows_one_column_and_wraps_long_names() {
    let _one = ONE_AT_A_TIME.lock().await;
    let shots = screenshot_dir("small-screen");
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(dir.path(), "app", None);
    let long_book = "A notebook whose name is far longer than a phone is wide, really";
    let long_tag = "averyverylongtagwithnospacesthatmustwrapnow";
    let http = reqwest::Client::new();
    for (title, book) in [("Short", "Inbox"), ("In the long notebook", long_book)] {
        let resp = http
            .post(format!("{}api/notes", app.url))
            .json(&json!({"title": title, "body": "text", "notebook": book, "tags": [long_tag]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let driver = Driver::start().await;
    let b = driver.browser("phone", &shots).await;
    b.set_window_size(420, 860).await;
    b.goto(&app.url).await;
    b.wait_text("#list-count", "2 notes").await;
    let layout = "const shown = (s) => { const e = document.querySelector(s); return !!e && e.offsetParent !== null; };
        return {width: window.innerWidth, scroll: document.documentElement.scrollWidth,
                side: shown('#side'), list: shown('#list-pane'), editor: shown('#editor-pane')};";
    let first = b.js(layout, json!([])).await;
    assert!(first["width"].as_i64().unwrap() <= 420, "{first}");
    assert_eq!(
        (&first["side"], &first["list"], &first["editor"]),
        (&json!(false), &json!(true), &json!(false)),
        "one column, the list: {first}"
    );
    assert!(
        first["scroll"].as_i64() <= first["width"].as_i64(),
        "scrolls sideways: {first}"
    );
    b.screenshot("1-list").await;

    // The notebooks: long names wrap inside the screen.
    b.click("#show-side").await;
    let side = b
        .js(
            "const li = document.querySelector(`#notebooks li[data-notebook='${arguments[0]}']`);
             const t = document.querySelector(`#tags li[data-tag='${arguments[1]}']`);
             const r = li.getBoundingClientRect(), rt = t.getBoundingClientRect();
             const line = parseFloat(getComputedStyle(li).lineHeight) || 20;
             return {right: Math.max(r.right, rt.right), wrapped: r.height > 1.5 * line && rt.height > 1.5 * line,
                     list: document.querySelector('#list-pane').offsetParent !== null,
                     scroll: document.documentElement.scrollWidth};",
            json!([long_book, long_tag]),
        )
        .await;
    assert!(side["right"].as_f64().unwrap() <= 420.0, "{side}");
    assert_eq!(side["wrapped"], true, "{side}");
    assert_eq!(side["list"], false, "{side}");
    assert!(side["scroll"].as_i64().unwrap() <= 420, "{side}");
    b.screenshot("2-notebooks-wrap").await;

    // A notebook, then a note: each in its own column, and back.
    b.click(&format!("#notebooks li[data-notebook='{long_book}']"))
        .await;
    b.wait_text("#list-count", "1 note").await;
    b.open_note("In the long notebook").await;
    let editing = b.js(layout, json!([])).await;
    assert_eq!(
        (&editing["list"], &editing["editor"]),
        (&json!(false), &json!(true)),
        "{editing}"
    );
    assert!(
        editing["scroll"].as_i64() <= editing["width"].as_i64(),
        "{editing}"
    );
    b.screenshot("3-editor").await;
    b.click("#back").await;
    let back = b.js(layout, json!([])).await;
    assert_eq!(
        (&back["list"], &back["editor"]),
        (&json!(true), &json!(false)),
        "{back}"
    );
}
