//! One worker process seen from the parent: the program started ([`WorkerProgram`]), its
//! pipes, the thread that reads its answer frames into a bounded channel, and how its end
//! reads. When to kill it, and who may use it, is the pool's business (`pool.rs`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{sync_channel, Receiver};

use serde::Serialize;
use serde_json::Value;

use super::frame::{read_frame, write_frame};
use super::wire::{Request, Scope, Settings};
use crate::error::{Error, Result};

/// Answer frames buffered between a worker's reader thread and its caller. A full channel
/// stops the reader, then the worker (its stdout pipe fills): backpressure, not loss.
const REPLY_BUFFER: usize = 256;

/// The program a [`Pool`](super::Pool) runs as its workers: for Settee, the `settee` binary with the
/// argument `js-worker`. The program must call [`crate::worker::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProgram {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// One worker process.
pub(super) struct Worker {
    pub(super) child: Child,
    stdin: BufWriter<ChildStdin>,
    pub(super) replies: Receiver<std::io::Result<Vec<u8>>>,
    /// The scopes it ran most recently (most recent last), as the worker's runtimes are
    /// likely to hold them.
    pub(super) recent: VecDeque<String>,
}

impl Worker {
    pub(super) fn start(program: &WorkerProgram, settings: &Settings) -> Result<Worker> {
        let failed = |e: std::io::Error| Error::WorkerFailed {
            reason: format!(
                "cannot start the JavaScript worker {}: {e}",
                program.program.display()
            ),
        };
        let mut child = Command::new(&program.program)
            .args(&program.args)
            // One malloc arena: a second thread's arena would reserve 64 MiB of the
            // address space the worker is limited to.
            .env("MALLOC_ARENA_MAX", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(failed)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(std::io::Error::other("no pipes to the worker")));
        };
        let (tx, replies) = sync_channel(REPLY_BUFFER);
        let reader = std::thread::Builder::new()
            .name("js-worker-reader".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let mut stdout = BufReader::with_capacity(64 << 10, stdout);
                loop {
                    match read_frame(&mut stdout) {
                        Ok(Some(frame)) => {
                            if tx.send(Ok(frame)).is_err() {
                                return;
                            }
                        }
                        // The worker closed its stdout: dropping `tx` tells the caller.
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
        if let Err(e) = reader {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(e));
        }
        let mut worker = Worker {
            child,
            stdin: BufWriter::with_capacity(64 << 10, stdin),
            replies,
            recent: VecDeque::new(),
        };
        if let Err(e) = worker.send(&Request::<Value>::Init(settings)) {
            worker.kill();
            return Err(e);
        }
        Ok(worker)
    }

    pub(super) fn send<D: Serialize>(&mut self, request: &Request<'_, D>) -> Result<()> {
        let bytes = serde_json::to_vec(request).map_err(|e| Error::Engine {
            reason: format!("cannot encode a request to the worker: {e}"),
        })?;
        write_frame(&mut self.stdin, &bytes)
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Error::WorkerFailed {
                reason: format!("cannot write to the worker: {e}"),
            })
    }

    pub(super) fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    pub(super) fn remember(&mut self, scope: &Scope, capacity: usize) {
        let key = scope_key(scope);
        self.recent.retain(|k| *k != key);
        self.recent.push_back(key);
        while self.recent.len() > capacity.max(1) {
            self.recent.pop_front();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a worker's death reads: its exit status or signal.
pub(super) fn describe_exit(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "it could not be reaped".into();
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT: an allocation failed or a stack overflowed)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV: its stack overflowed)",
                _ => "",
            };
            return format!("it was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("it exited with status {code}"),
        None => format!("it ended ({status})"),
    }
}

/// The key a worker remembers a scope by (its runtimes are per scope).
pub(super) fn scope_key(scope: &Scope) -> String {
    format!("{}\u{0}{}\u{0}{}", scope.db, scope.ddoc, scope.rev)
}
