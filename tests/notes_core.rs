//! Runs `examples/notes_core.rs`, the notes service core on the facade (issue 22), against
//! the test server, as a user runs it: the example checks every step itself and exits
//! non-zero on anything unexpected; this test checks its exit, what it printed and that it
//! left no database behind.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use settee_testkit::{wait_until, TestDb};

/// How long the whole example may run before the test calls it a hang (it takes a few
/// seconds).
const HANG: Duration = Duration::from_secs(180);

/// The example's binary, built now if it is missing or stale: cargo builds examples for
/// `cargo test --workspace --all-targets` (scripts/test.sh), but not for `cargo test --test
/// notes_core`. The build asks for what the suite builds (the workspace's examples, so the
/// same features of every dependency), so it is a no-op in the suite; `-p settee` alone
/// would resolve other features and rebuild the dependencies.
fn example_binary() -> PathBuf {
    // target/<profile>/deps/notes_core-HASH -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["build", "--quiet", "--workspace", "--examples"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building the notes_core example failed");
    profile_dir.join("examples").join("notes_core")
}

#[test]
fn issue_22_notes_core_example_runs_against_the_server() {
    let db = TestDb::named("notes-core");
    let server = db.server().clone();
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(example_binary());
    cmd.env("SETTEE_EXAMPLE_URL", db.url())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    // The credentials go in the environment, as the example's documentation asks.
    if let Some((user, password)) = server.credentials() {
        cmd.env("SETTEE_EXAMPLE_USER", user)
            .env("SETTEE_EXAMPLE_PASSWORD", password);
    }
    let mut child = cmd.spawn().unwrap();
    let mut status = None;
    wait_until(HANG, "the notes_core example to finish", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        status.unwrap().success(),
        "the example failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for line in [
        "badge note:1: synced",
        "status: 1 unpushed, 0 rejected, Some(0) unpulled",
        "the server has the merged note:3 and no conflict",
        r#"the server answers the query alike: ["roadmap 2025", "standup"]"#,
        "notes core: every step as expected",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "the example did not print {line:?}\n--- stdout\n{stdout}"
        );
    }
    // The live sync's events name the notes they carried.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sync Push: wrote [") && l.contains(r#""note:3""#)),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("offline, as expected: cannot connect to")),
        "{stdout}"
    );
    // It created the database and destroyed it at the end.
    let (code, body) = server.raw_request("GET", &format!("/{}", db.name()), None);
    assert_eq!(code, 404, "the example's database is still there: {body}");
}
