//! The app picks up a server's changed password from its password file (`--password-file`,
//! which `scripts/notes.sh` uses) with no restart: against the test server, in process.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use settee_notes::{App, AppOptions, Phase, Remote, SyncView};
use settee_testkit::TestDb;

async fn wait_state(app: &App, what: &str, done: impl Fn(&SyncView) -> bool) -> SyncView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = app.sync_view().await.unwrap();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "waited for {what}; last {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_changed_password_is_read_again_from_the_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create("notes-password-file");
    let (user, password) = db
        .server()
        .credentials()
        .expect("the test server has an admin");
    let file = dir.path().join("password");
    std::fs::write(&file, "the-old-password\n").unwrap();
    let remote = Remote::parse(&db.url(), Some(user.to_owned()), None)
        .unwrap()
        .with_password_file(&file);
    let app = App::start(AppOptions {
        store: dir.path().join("store"),
        remote: Some(remote),
    })
    .await
    .unwrap();
    let refused = wait_state(&app, "the refusal", |v| v.state == Phase::Error).await;
    assert_eq!(
        refused.message.as_deref(),
        Some("name or password is incorrect")
    );
    assert_eq!(refused.user.as_deref(), Some(user));

    // The server's password is written to the file: the next attempt signs in.
    std::fs::write(&file, format!("{password}\n")).unwrap();
    app.sync_now();
    let synced = wait_state(&app, "the sync", |v| v.state == Phase::Synced).await;
    assert_eq!(
        synced.last_error.as_deref(),
        Some("name or password is incorrect")
    );
    app.shutdown().await.unwrap();
}
