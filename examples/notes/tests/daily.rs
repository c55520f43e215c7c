//! The notes app for daily use (issue 23), in a real browser as the other browser tests
//! (`browser.rs`): why sync fails, shown in the page; no lost work; conflicts that name
//! their sides; search in bodies; a small screen. Screenshots go under
//! `target/tmp/notes-screenshots/<test>/`.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::pages::{port, start_app, ServerDb};
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
