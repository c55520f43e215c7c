//! Running a command under test: one runner for the tests of the `settee` command, which
//! pass it the binary (`env!("CARGO_BIN_EXE_settee")` exists only in the binary's package).
//! What to run and what to expect is the test's.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// A command under test, with the environment every run of it gets.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    /// Runs `bin`.
    pub fn new(bin: impl Into<PathBuf>) -> Cli {
        Cli {
            bin: bin.into(),
            env: Vec::new(),
        }
    }

    /// Sets `name` to `value` in every run's environment (e.g. `SETTEE_PASSWORD`).
    pub fn env(mut self, name: &str, value: &str) -> Cli {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A command to add arguments and pipes to.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs it with `args` to its end.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()))
    }

    /// Runs it with `args` and reads its stdout as one JSON value.
    ///
    /// # Panics
    /// If it fails (the message has its stderr) or prints something else.
    pub fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// A run's stdout as JSON lines, one value each.
///
/// # Panics
/// If a line is not JSON.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
