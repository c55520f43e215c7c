//! The command line: the `Cli` and `Command` types (whose doc comments are the `--help`
//! text), the dispatch to one module per command group, and what every command shares:
//! how a database is opened, how progress is shown and how JSON reaches stdout.
//!
//! Each group's arguments and work live in its module: [`replicate`] (`replicate`, `sync`),
//! [`status`], [`docs`] (the document commands), [`attach`] (`attach`, `get-attachment`),
//! [`find`] (`find`, `index`) and [`serve`].

use std::io::{IsTerminal, Write};

use clap::{Parser, Subcommand};
use serde_json::Value;
use settee::Db;

mod attach;
mod docs;
mod find;
mod progress;
mod replicate;
mod serve;
mod status;

/// Offline-first CouchDB replication and document tool. A DB is a local store path or a
/// CouchDB database URL (`http://user@host:5984/db`; the password comes from
/// `SETTEE_PASSWORD`, never from the command line).
#[derive(Debug, Parser)]
#[command(name = "settee", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// No progress bar, and no line for each retry (failures and errors still show).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print replication events as JSON lines on stdout instead of a progress bar.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Replicate SOURCE to TARGET (each a local path or a URL), one-shot or --continuous.
    Replicate(replicate::Replicate),
    /// Sync a local store with a remote database both ways (push and pull together).
    Sync(replicate::Sync),
    /// What is not synced between a local store and a remote: exact counts of documents not
    /// on the remote (unpushed, rejected by it, excluded by the sync's filter), the last push
    /// and pull, and how many documents the remote has that the store lacks (unpulled: the
    /// only part that needs the network; without it, it says so). On a terminal a table;
    /// piped, one JSON line (with --docs, one JSON line per document instead). While another
    /// process holds the store (`settee sync --live`, `settee serve`), that process answers.
    Status(status::Status),
    /// Write a document (JSON argument, or stdin when omitted).
    Put(docs::Put),
    /// Read a document.
    Get(docs::Get),
    /// Delete a document (its current revision unless --rev).
    Rm(docs::Rm),
    /// List documents, one JSON row per line.
    AllDocs(docs::AllDocs),
    /// The changes feed, one JSON line per change.
    Changes(docs::Changes),
    /// Every conflicted document with its winner and leaves, one JSON line each.
    Conflicts(docs::OneDb),
    /// Stream FILE in as attachment NAME of document ID (a new revision on top of --rev, or
    /// of the current one); prints {"ok":true,"id":...,"rev":...}.
    Attach(attach::Attach),
    /// Stream attachment NAME of document ID out to FILE (`-` for stdout).
    GetAttachment(attach::GetAttachment),
    /// Database information.
    Info(docs::OneDb),
    /// Compact the database: drop old revisions' bodies and unused attachments; a local
    /// store's files are then rewritten to give the disk space back.
    Compact(docs::OneDb),
    /// Serve stores over CouchDB's HTTP API, so that PouchDB, CouchDB's replicator and curl
    /// can replicate with them. Prints {"ok":true,"url":...} on stdout once listening; runs
    /// until Ctrl-C.
    Serve(serve::Serve),
    /// Run design document JavaScript for a `settee serve` process on stdin and stdout
    /// (the server starts these itself).
    #[command(hide = true)]
    JsWorker,
    /// Find documents with a Mango selector, one JSON line each (CouchDB's `_find`). A sort
    /// needs an index that serves it (see `settee index create`); without a usable index
    /// every document is read, and a warning says so on stderr.
    Find(find::Find),
    /// Manage Mango indexes: create, list, delete.
    Index {
        #[command(subcommand)]
        command: find::IndexCommand,
    },
}

/// How a run ended, for the exit code.
pub(crate) enum Outcome {
    Clean,
    /// Finished, but some documents were rejected.
    Rejected(u64),
}

/// How progress is shown.
#[derive(Debug, Clone, Copy)]
struct Ui {
    json: bool,
    bar: bool,
    /// No line per retry.
    quiet: bool,
}

/// Runs the command (all but `js-worker`, which `main` runs without a runtime).
pub(crate) async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let ui = Ui {
        json: cli.json,
        bar: !cli.quiet && !cli.json && std::io::stderr().is_terminal(),
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Replicate(args) => replicate::replicate(args, &ui).await,
        Command::Sync(args) => replicate::sync(args, &ui).await,
        Command::Status(args) => status::status(args).await,
        Command::Put(args) => docs::put(args).await,
        Command::Get(args) => docs::get(args).await,
        Command::Rm(args) => docs::rm(args).await,
        Command::AllDocs(args) => docs::all_docs(args).await,
        Command::Changes(args) => docs::changes(args).await,
        Command::Conflicts(args) => docs::conflicts(args).await,
        Command::Attach(args) => attach::attach(args, &ui).await,
        Command::GetAttachment(args) => attach::get_attachment(args, &ui).await,
        Command::Info(args) => docs::info(args).await,
        Command::Compact(args) => docs::compact(args).await,
        Command::Find(args) => find::find(args).await,
        Command::Index { command } => find::index(command, &ui).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::JsWorker => Ok(Outcome::Clean),
    }
}

/// Whether a run failed only because stdout was closed (`settee changes db | head`): a
/// normal stop, not a failure.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs on stderr at the level `-v` asks for (or `RUST_LOG`'s).
pub(crate) fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // Without -v, only errors: what a replication retries or rejects is reported once, by
    // the command itself from the replication's events, not again by the libraries' warn
    // logs (which -v shows).
    let default = match verbose {
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs on stderr only: stdout carries data.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Names a URL that could not be opened (its errors do not). A local store's errors name
/// its path already.
fn with_location(location: &str, opened: settee::Result<Db>) -> anyhow::Result<Db> {
    if location.starts_with("http://") || location.starts_with("https://") {
        use anyhow::Context;
        opened.with_context(|| format!("opening {}", settee::redact(location)))
    } else {
        Ok(opened?)
    }
}

/// The password of a URL that names a user without one: the command reads it from this
/// variable, never from its arguments (where `ps` would show it).
const PASSWORD_VAR: &str = "SETTEE_PASSWORD";

/// A server's database, with the password from [`PASSWORD_VAR`] when the URL names a
/// user without one.
fn remote(url: &str) -> settee::Result<settee::Remote> {
    settee::Remote::builder(url)
        .password_from_env(PASSWORD_VAR)
        .build()
}

/// How a command opens a local store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Created if missing; every write durable when it returns.
    Create,
    /// Must exist (nothing is created for a command that only reads).
    Existing,
    /// A replication's target: created if missing, flushed every second.
    ReplicationTarget,
    /// A replication's source: must exist, flushed every second.
    ReplicationSource,
}

/// Opens a location as the command line gives it: a URL (password from
/// [`PASSWORD_VAR`]) or a store path, opened as `how` says.
fn open_as(location: &str, how: Opening) -> settee::Result<Db> {
    if settee::is_url(location) {
        return Ok(Db::Remote(remote(location)?));
    }
    let builder = settee::Local::builder(location);
    let builder = match how {
        Opening::Create => builder,
        Opening::Existing => builder.create(false),
        Opening::ReplicationTarget => builder.for_replication(),
        Opening::ReplicationSource => builder.for_replication().create(false),
    };
    Ok(Db::Local(builder.open()?))
}

/// Opens a location, creating a store if missing.
fn open(location: &str) -> settee::Result<Db> {
    open_as(location, Opening::Create)
}

/// Opens a database that must exist (a local path without a store is an error, and
/// nothing is created there).
fn existing(location: &str) -> anyhow::Result<Db> {
    with_location(location, open_as(location, Opening::Existing))
}

/// A sequence given on the command line: a number, JSON, or an opaque string.
fn parse_seq(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::from(s))
}

/// `n` and the noun, singular for one: "1 change", "2 changes".
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Writes one JSON line to stdout.
fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
