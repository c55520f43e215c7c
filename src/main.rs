//! The `settee` command: replicate, sync and inspect CouchDB-compatible databases, local
//! stores and servers alike. Data goes to stdout as CouchDB-shaped JSON (one object, or one
//! JSON line per item); progress and logs go to stderr.
//!
//! `main` parses the command line, starts the runtime and turns the outcome into an exit
//! code; each command group lives in a module of [`cli`].

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Command, Outcome};

/// jemalloc instead of the system allocator: sled allocates and frees many short-lived node
/// buffers from several threads, and with glibc's malloc that was a fifth of a replication's
/// CPU (arena locks, chunk consolidation); see docs/benchmarks.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.verbose);
    if matches!(cli.command, Command::JsWorker) {
        // A worker of `settee serve`: no runtime, stdout is the protocol's.
        return match settee::server::run_js_worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("settee js-worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // One runtime thread: the command's async work is HTTP and JSON, and the store runs on
    // the blocking pool, so a second worker only added cross-thread wake-ups (a pull of
    // 100,000 notes made ~70,000 context switches and spent a third of its CPU in the
    // kernel with the multi-threaded runtime). A server serves many clients at once, so
    // `serve` gets a worker per core.
    let mut builder = if matches!(cli.command, Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("settee: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected(n)) => {
            let what = if n == 1 {
                "1 document was".to_owned()
            } else {
                format!("{n} documents were")
            };
            eprintln!("settee: {what} rejected (see the failures above)");
            ExitCode::from(3)
        }
        Err(err) => {
            if cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("settee: {err:#}");
            ExitCode::FAILURE
        }
    }
}
