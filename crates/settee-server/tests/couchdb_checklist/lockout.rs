//! auth_lockout_test.exs: warn mode (enforce mode is `users.rs`'s).

use super::*;

/// auth_lockout_test.exs, "do not lockout after multiple failed authentications": in warn
/// mode six failures are six 401s, and the right password still logs in. (Enforce mode is
/// `users.rs`'s `lockout_after_five_failures`; the shared CouchDB runs with lockout off.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_warn_mode_never_locks() {
    let serve = serve_with(|o| {
        o.lockout = Lockout {
            mode: LockoutMode::Warn,
            ..Default::default()
        }
    })
    .await;
    let s = Srv::settee(&serve, "");
    for n in 0..6 {
        let a = s.get(Who::Basic(ADMIN, "baz"), "/_all_dbs").await;
        s.check(&format!("failure {n}"), &a, 401, "unauthorized");
    }
    s.check(
        "the right password",
        &s.get(Who::Admin, "/_all_dbs").await,
        200,
        "",
    );
}
