//! The `settee` command: replicate, sync and inspect CouchDB-compatible databases, local
//! stores and servers alike. Data goes to stdout as CouchDB-shaped JSON (one object, or one
//! JSON line per item); progress and logs go to stderr.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;
use settee::replicate::{Direction, Event, Filter, ReplicateOptions, Replication, Selector};
use settee::{CancellationToken, Db, GetArgs};

/// jemalloc instead of the system allocator: sled allocates and frees many short-lived node
/// buffers from several threads, and with glibc's malloc that was a fifth of a replication's
/// CPU (arena locks, chunk consolidation); see docs/benchmarks.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Offline-first CouchDB replication and document tool. A DB is a local store path or a
/// CouchDB database URL (`http://user@host:5984/db`; the password comes from
/// `SETTEE_PASSWORD`, never from the command line).
#[derive(Debug, Parser)]
#[command(name = "settee", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bar, and no line for each retry (failures and errors still show).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print replication events as JSON lines on stdout instead of a progress bar.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReplicationArgs {
    /// Keep running and follow changes as they happen (survives the server going away).
    #[arg(long, alias = "live")]
    continuous: bool,
    /// Create the target database if it does not exist.
    #[arg(long)]
    create_target: bool,
    /// Only these document ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    doc_ids: Option<Vec<String>>,
    /// Only documents matching this Mango selector (JSON).
    #[arg(long)]
    selector: Option<String>,
    /// A filter function of the source, `ddoc/name` (remote sources only).
    #[arg(long)]
    filter: Option<String>,
    /// Query parameters for --filter (a JSON object).
    #[arg(long, requires = "filter")]
    query_params: Option<String>,
    /// Start from this source sequence instead of the checkpoint.
    #[arg(long)]
    since: Option<String>,
    /// Changes per batch.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Seconds between checkpoints while running (one is always written at the end).
    #[arg(long, default_value_t = 5.0)]
    checkpoint_interval: f64,
    /// Stop cleanly after SECS seconds (for background tasks with a time limit): what is
    /// written is checkpointed, stderr says how much is left, and the next run resumes.
    /// Exit code 0 (3 if documents were rejected), as for a run that finished.
    #[arg(long, value_name = "SECS")]
    deadline: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicate SOURCE to TARGET (each a local path or a URL), one-shot or --continuous.
    Replicate {
        /// Where revisions come from.
        source: String,
        /// Where they go.
        target: String,
        #[command(flatten)]
        args: ReplicationArgs,
    },
    /// Sync a local store with a remote database both ways (push and pull together).
    Sync {
        /// The local store path.
        local: String,
        /// The remote database URL.
        url: String,
        #[command(flatten)]
        args: ReplicationArgs,
    },
    /// What is not synced between a local store and a remote: exact counts of documents not
    /// on the remote (unpushed, rejected by it, excluded by the sync's filter), the last push
    /// and pull, and how many documents the remote has that the store lacks (unpulled: the
    /// only part that needs the network; without it, it says so). On a terminal a table;
    /// piped, one JSON line (with --docs, one JSON line per document instead). While another
    /// process holds the store (`settee sync --live`, `settee serve`), that process answers.
    Status {
        /// The local store path.
        local: String,
        /// The remote database URL.
        url: String,
        /// List every unsynced document with its state (and the remote's reason for a
        /// rejected one).
        #[arg(long)]
        docs: bool,
    },
    /// Write a document (JSON argument, or stdin when omitted).
    Put {
        /// The database.
        db: String,
        /// The document JSON.
        doc: Option<String>,
    },
    /// Read a document.
    Get {
        /// The database.
        db: String,
        /// The document id.
        id: String,
        /// A specific revision.
        #[arg(long)]
        rev: Option<String>,
        /// Include `_revisions`.
        #[arg(long)]
        revs: bool,
        /// Include `_conflicts`.
        #[arg(long)]
        conflicts: bool,
        /// `all`, or a JSON array of revs: print every leaf (one JSON line each).
        #[arg(long)]
        open_revs: Option<String>,
    },
    /// Delete a document (its current revision unless --rev).
    Rm {
        /// The database.
        db: String,
        /// The document id.
        id: String,
        /// The revision to delete.
        #[arg(long)]
        rev: Option<String>,
    },
    /// List documents, one JSON row per line.
    AllDocs {
        /// The database.
        db: String,
        /// Include each document.
        #[arg(long)]
        include_docs: bool,
    },
    /// The changes feed, one JSON line per change.
    Changes {
        /// The database.
        db: String,
        /// Start after this sequence.
        #[arg(long)]
        since: Option<String>,
        /// Keep following new changes.
        #[arg(long)]
        follow: bool,
        /// Include each document.
        #[arg(long)]
        include_docs: bool,
    },
    /// Every conflicted document with its winner and leaves, one JSON line each.
    Conflicts {
        /// The database.
        db: String,
    },
    /// Database information.
    Info {
        /// The database.
        db: String,
    },
    /// Compact the database.
    Compact {
        /// The database.
        db: String,
    },
    /// Serve stores over CouchDB's HTTP API, so that PouchDB, CouchDB's replicator and curl
    /// can replicate with them. Prints {"ok":true,"url":...} on stdout once listening; runs
    /// until Ctrl-C.
    Serve {
        /// Store directories to serve, each as a database named after its directory.
        stores: Vec<std::path::PathBuf>,
        /// Where `PUT /{db}` creates databases (the stores already in it are served too).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// The address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:5984")]
        bind: std::net::SocketAddr,
        /// The admin user (password from SETTEE_PASSWORD). Without one every request is an
        /// admin, which is allowed on a loopback address only.
        #[arg(long)]
        admin: Option<String>,
        /// Origins browsers may call from (comma-separated; `*` for any).
        #[arg(long, value_delimiter = ',')]
        cors: Option<Vec<String>>,
        /// Let pages from the origins named in --cors (never `*`) send cookies and
        /// credentials (CouchDB's `[cors] credentials`; off by default).
        #[arg(long, requires = "cors")]
        cors_credentials: bool,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_body: usize,
        /// Users, login and cookie settings.
        #[command(flatten)]
        users: UserFlags,
        /// Design document JavaScript.
        #[command(flatten)]
        js: JsFlags,
    },
    /// Run design document JavaScript for a `settee serve` process on stdin and stdout
    /// (the server starts these itself).
    #[command(hide = true)]
    JsWorker,
    /// Find documents with a Mango selector, one JSON line each (CouchDB's `_find`). A sort
    /// needs an index that serves it (see `settee index create`); without a usable index
    /// every document is read, and a warning says so on stderr.
    Find {
        /// The database.
        db: String,
        /// The selector (JSON), e.g. '{"notebook": "work"}'.
        selector: String,
        /// Sort by this field, `FIELD` or `FIELD:desc` (repeat for more; one direction).
        #[arg(long)]
        sort: Vec<String>,
        /// At most this many documents.
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// Skip this many matches first.
        #[arg(long, default_value_t = 0)]
        skip: usize,
        /// Only these fields of each document (comma-separated).
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        /// Continue after a previous page (the bookmark it printed on stderr).
        #[arg(long)]
        bookmark: Option<String>,
        /// Use this index: `DDOC` or `DDOC/NAME`.
        #[arg(long)]
        use_index: Option<String>,
        /// Print how the query would run (CouchDB's `_explain`) instead of running it.
        #[arg(long)]
        explain: bool,
    },
    /// Manage Mango indexes: create, list, delete.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Create a JSON index on FIELDS (built over the existing documents of a local store,
    /// with progress on stderr). Prints `{"result": "created"|"exists", "id", "name"}`.
    Create {
        /// The database.
        db: String,
        /// The indexed fields, in order (dotted paths allowed).
        #[arg(required = true)]
        fields: Vec<String>,
        /// The index name (default: derived from the definition).
        #[arg(long)]
        name: Option<String>,
        /// The design document (default: derived from the definition).
        #[arg(long)]
        ddoc: Option<String>,
        /// Only index documents matching this selector (JSON).
        #[arg(long)]
        partial_filter_selector: Option<String>,
    },
    /// List the indexes, one JSON line each (`_all_docs` first).
    List {
        /// The database.
        db: String,
    },
    /// Delete an index.
    Delete {
        /// The database.
        db: String,
        /// Its design document (`_design/` optional).
        ddoc: String,
        /// Its name.
        name: String,
    },
}

/// How a run ended, for the exit code.
enum Outcome {
    Clean,
    /// Finished, but some documents were rejected.
    Rejected(u64),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
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
    let mut builder = if matches!(cli.command, Command::Serve { .. }) {
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
    match runtime.block_on(run(cli)) {
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
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("settee: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(verbose: u8) {
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

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let ui = Ui {
        json: cli.json,
        bar: !cli.quiet && !cli.json && std::io::stderr().is_terminal(),
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Replicate {
            source,
            target,
            args,
        } => {
            // A local source must exist; a local target is created.
            let src = with_location(&source, Db::open_source_for_replication(&source))?;
            let tgt = with_location(&target, Db::open_for_replication(&target))?;
            let mut opts = replication_options(&args)?;
            // Events name the direction: remote to local is a pull, anything else a push
            // (source to target).
            if matches!((&src, &tgt), (Db::Remote(_), Db::Local(_))) {
                opts.direction = Direction::Pull;
            }
            replicate(src, tgt, opts, &ui).await
        }
        Command::Sync { local, url, args } => {
            let l = with_location(&local, Db::open_for_replication(&local))?;
            let r = with_location(&url, Db::open_for_replication(&url))?;
            let opts = replication_options(&args)?;
            sync(l, r, opts, &ui).await
        }
        Command::Status { local, url, docs } => {
            let (l, r) = (existing(&local)?, existing(&url)?);
            status(&l, &r, docs).await
        }
        Command::Put { db, doc } => {
            let doc = match doc {
                Some(d) => d,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the document from stdin")?;
                    s
                }
            };
            let doc: Value =
                serde_json::from_str(&doc).context("the document is not valid JSON")?;
            let res = with_location(&db, Db::open(&db))?.put(doc).await?;
            print_json(&res)?;
            Ok(Outcome::Clean)
        }
        Command::Get {
            db,
            id,
            rev,
            revs,
            conflicts,
            open_revs,
        } => {
            let db = existing(&db)?;
            let args = GetArgs {
                rev,
                revs,
                conflicts,
                open_revs,
                attachments: false,
            };
            match &args.open_revs {
                Some(_) => {
                    for leaf in db.open_revs(&id, &args).await? {
                        print_json(&leaf)?;
                    }
                }
                None => print_json(&db.get(&id, &args).await?)?,
            }
            Ok(Outcome::Clean)
        }
        Command::Rm { db, id, rev } => {
            print_json(&existing(&db)?.delete(&id, rev.as_deref()).await?)?;
            Ok(Outcome::Clean)
        }
        Command::AllDocs { db, include_docs } => {
            for row in existing(&db)?.all_docs(include_docs).await? {
                print_json(&row)?;
            }
            Ok(Outcome::Clean)
        }
        Command::Changes {
            db,
            since,
            follow,
            include_docs,
        } => {
            let db = existing(&db)?;
            let mut since = since.map(|s| settee::Seq::from_json(parse_seq(&s)));
            loop {
                let (rows, last) = db.changes(since.clone(), include_docs, follow).await?;
                for row in &rows {
                    print_json(row)?;
                }
                since = Some(last);
                if !follow {
                    break;
                }
            }
            Ok(Outcome::Clean)
        }
        Command::Conflicts { db } => {
            for doc in existing(&db)?.conflicts().await? {
                print_json(&doc)?;
            }
            Ok(Outcome::Clean)
        }
        Command::Info { db } => {
            print_json(&existing(&db)?.info().await?)?;
            Ok(Outcome::Clean)
        }
        Command::Compact { db } => {
            print_json(&existing(&db)?.compact().await?)?;
            Ok(Outcome::Clean)
        }
        Command::Find {
            db,
            selector,
            sort,
            limit,
            skip,
            fields,
            bookmark,
            use_index,
            explain,
        } => {
            let db = existing(&db)?;
            let req = find_request(&selector, &sort, limit, skip, fields, bookmark, use_index)?;
            if explain {
                print_json(&db.explain(&req).await?)?;
                return Ok(Outcome::Clean);
            }
            let found = db.find(&req).await?;
            if let Some(w) = &found.warning {
                for line in w.lines() {
                    eprintln!("settee: warning: {line}");
                }
            }
            for doc in &found.docs {
                print_json(doc)?;
            }
            if let Some(b) = found.bookmark.as_deref().filter(|b| *b != "nil") {
                if found.docs.len() == req.limit && req.limit > 0 {
                    eprintln!("settee: more may follow: --bookmark {b}");
                }
            }
            Ok(Outcome::Clean)
        }
        Command::Index { command } => index_command(command, &ui).await,
        Command::Serve {
            stores,
            data_dir,
            bind,
            admin,
            cors,
            cors_credentials,
            max_body,
            users,
            js,
        } => {
            let cors = cors.map(|origins| settee::server::Cors {
                origins,
                credentials: cors_credentials,
                ..Default::default()
            });
            serve(stores, data_dir, bind, admin, cors, max_body, users, js).await
        }
        Command::JsWorker => Ok(Outcome::Clean),
    }
}

/// A find request from the command's arguments.
fn find_request(
    selector: &str,
    sort: &[String],
    limit: usize,
    skip: usize,
    fields: Option<Vec<String>>,
    bookmark: Option<String>,
    use_index: Option<String>,
) -> anyhow::Result<settee::FindRequest> {
    let selector: Value =
        serde_json::from_str(selector).context("the selector is not valid JSON")?;
    let sort: Vec<Value> = sort
        .iter()
        .map(|s| match s.rsplit_once(':') {
            Some((field, "desc")) => serde_json::json!({ field: "desc" }),
            Some((field, "asc")) => serde_json::json!({ field: "asc" }),
            _ => Value::String(s.clone()),
        })
        .collect();
    let mut body = serde_json::json!({"selector": selector, "limit": limit, "skip": skip});
    if !sort.is_empty() {
        body["sort"] = Value::Array(sort);
    }
    if let Some(f) = fields {
        body["fields"] = serde_json::json!(f);
    }
    if let Some(b) = bookmark {
        body["bookmark"] = Value::String(b);
    }
    if let Some(u) = use_index {
        body["use_index"] = Value::String(u);
    }
    Ok(settee::FindRequest::parse(&body)?)
}

async fn index_command(command: IndexCommand, ui: &Ui) -> anyhow::Result<Outcome> {
    match command {
        IndexCommand::Create {
            db,
            fields,
            name,
            ddoc,
            partial_filter_selector,
        } => {
            let db = existing(&db)?;
            let mut def = serde_json::json!({"fields": fields});
            if let Some(p) = partial_filter_selector {
                def["partial_filter_selector"] = serde_json::from_str(&p)
                    .context("--partial-filter-selector is not valid JSON")?;
            }
            let mut body = serde_json::json!({"index": def});
            if let Some(n) = name {
                body["name"] = Value::String(n);
            }
            if let Some(d) = ddoc {
                body["ddoc"] = Value::String(d);
            }
            let pb = ui.bar.then(|| {
                let pb = indicatif::ProgressBar::new(0);
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "building {msg} [{bar:30}] {pos}/{len} docs",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                pb
            });
            let bar = pb.clone();
            let res = db
                .create_index_with_progress(&body, move |p| {
                    if let Some(pb) = &bar {
                        pb.set_message(format!("{}/{}", p.ddoc, p.name));
                        pb.set_length(p.total);
                        pb.set_position(p.done);
                    }
                })
                .await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            print_json(&res)?;
            Ok(Outcome::Clean)
        }
        IndexCommand::List { db } => {
            for index in existing(&db)?.get_indexes().await?.indexes {
                print_json(&index)?;
            }
            Ok(Outcome::Clean)
        }
        IndexCommand::Delete { db, ddoc, name } => {
            existing(&db)?.delete_index(&ddoc, &name).await?;
            print_json(&serde_json::json!({"ok": true}))?;
            Ok(Outcome::Clean)
        }
    }
}

/// `settee status`: a table on a terminal, JSON lines otherwise.
async fn status(local: &Db, remote: &Db, docs: bool) -> anyhow::Result<Outcome> {
    use futures::StreamExt;
    let terminal = std::io::stdout().is_terminal();
    let st = settee::status(local, remote).await?;
    if terminal {
        print_status_table(&st)?;
    } else if !docs {
        print_json(&st)?;
    }
    if docs {
        let mut rows = Box::pin(local.unsynced(remote)?);
        let mut table = Vec::new();
        while let Some(row) = rows.next().await {
            let (id, state) = row?;
            if terminal {
                table.push((id, state));
            } else {
                // {"id", "state", ...the state's fields}: the id first.
                let mut line = serde_json::Map::new();
                line.insert("id".into(), Value::String(id));
                if let Value::Object(fields) = serde_json::to_value(&state)? {
                    line.extend(fields);
                }
                print_json(&line)?;
            }
        }
        if terminal {
            print_docs_table(&table)?;
        }
    }
    Ok(Outcome::Clean)
}

fn print_status_table(st: &settee::Status) -> anyhow::Result<()> {
    let l = &st.local;
    let mut out = std::io::stdout().lock();
    let never = |t: &Option<String>| t.clone().unwrap_or_else(|| "never".into());
    writeln!(out, "remote          {}", l.remote)?;
    writeln!(
        out,
        "unpushed        {}{}",
        l.unpushed,
        match l.rejected {
            0 => String::new(),
            n => format!(" ({n} rejected by the remote)"),
        }
    )?;
    if l.not_replicated > 0 {
        writeln!(
            out,
            "not replicated  {} (excluded by the sync's filter)",
            l.not_replicated
        )?;
    }
    if l.pull_failed > 0 {
        writeln!(
            out,
            "pull failed     {} (the remote has them; the next sync tries again)",
            l.pull_failed
        )?;
    }
    match (st.unpulled, &st.unpulled_error) {
        (Some(n), _) => writeln!(out, "unpulled        {n}")?,
        (None, Some(e)) => writeln!(out, "unpulled        {e}")?,
        (None, None) => writeln!(out, "unpulled        unknown")?,
    }
    writeln!(out, "last push       {}", never(&l.last_push))?;
    writeln!(out, "last pull       {}", never(&l.last_pull))?;
    Ok(())
}

fn print_docs_table(rows: &[(String, settee::SyncState)]) -> anyhow::Result<()> {
    use settee::SyncState;
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "\nevery document is on the remote")?;
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|(id, _)| id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    writeln!(out, "\n{:width$}  {:10}  DETAIL", "ID", "STATE")?;
    for (id, state) in rows {
        let detail = match state {
            SyncState::Unpushed { revs } => revs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            SyncState::Rejected { rev, error, reason } => format!("{rev}: {error}: {reason}"),
            SyncState::PullFailed { rev, error, reason } => {
                format!("{rev}: {error}: {reason} (not pulled; the next sync tries again)")
            }
            SyncState::Conflicted { winner, losers } => format!(
                "{winner} wins over {}",
                losers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SyncState::Synced | SyncState::NotReplicated => String::new(),
        };
        writeln!(out, "{id:width$}  {:10}  {detail}", state.name())?;
    }
    Ok(())
}

/// Opens a database that must exist (a local path without a store is an error, and
/// nothing is created there).
fn existing(location: &str) -> anyhow::Result<Db> {
    with_location(location, Db::open_existing(location))
}

/// `settee serve`'s flags for users (`_users`, `--peruser`), the login lockout and the
/// session cookie.
#[derive(Debug, clap::Args)]
struct UserFlags {
    /// Create a private database `userdb-<hex of name>` for each user of `_users`
    /// (CouchDB's `[couch_peruser] enable`).
    #[arg(long)]
    peruser: bool,
    /// With --peruser: delete a user's database when the user is deleted.
    #[arg(long, requires = "peruser")]
    peruser_delete_dbs: bool,
    /// Failed-login lockout (CouchDB's `[chttpd_auth_lockout] mode`).
    #[arg(long, default_value = "enforce", value_parser = ["enforce", "warn", "off"])]
    lockout: String,
    /// Failures after which a name is locked out for the address they came from.
    #[arg(long, default_value_t = 5)]
    lockout_threshold: u32,
    /// How long failures are remembered, in seconds from the first one.
    #[arg(long, default_value_t = 300)]
    lockout_seconds: u64,
    /// The `SameSite` attribute of the `AuthSession` cookie.
    #[arg(long, default_value = "lax", value_parser = ["lax", "strict", "none", "unset"])]
    cookie_same_site: String,
    /// Send the `AuthSession` cookie with `Secure` (behind an HTTPS proxy).
    #[arg(long)]
    cookie_secure: bool,
    /// Let admins change `_users`' security object (CouchDB's `[couchdb]
    /// users_db_security_editable`), e.g. to let users sign up and change their password.
    #[arg(long)]
    users_db_security_editable: bool,
    /// PBKDF2 rounds for passwords written to `_users` (CouchDB's `[chttpd_auth]
    /// iterations`).
    #[arg(long, default_value_t = 600_000)]
    password_iterations: u32,
}

impl UserFlags {
    fn apply(self, opts: settee::server::ServerOptions) -> settee::server::ServerOptions {
        use settee::server::{Lockout, LockoutMode, PerUser, SameSite};
        settee::server::ServerOptions {
            peruser: self.peruser.then_some(PerUser {
                delete_dbs: self.peruser_delete_dbs,
            }),
            lockout: Lockout {
                mode: match self.lockout.as_str() {
                    "warn" => LockoutMode::Warn,
                    "off" => LockoutMode::Off,
                    _ => LockoutMode::Enforce,
                },
                threshold: self.lockout_threshold,
                max_lifetime: std::time::Duration::from_secs(self.lockout_seconds),
                ..Default::default()
            },
            same_site: match self.cookie_same_site.as_str() {
                "strict" => SameSite::Strict,
                "none" => SameSite::None,
                "unset" => SameSite::Unset,
                _ => SameSite::Lax,
            },
            secure_cookie: self.cookie_secure,
            users_db_security_editable: self.users_db_security_editable,
            password_iterations: self.password_iterations.max(1),
            ..opts
        }
    }
}

/// `settee serve`'s flags for design document JavaScript (run in `settee js-worker`
/// processes).
#[derive(Debug, clap::Args)]
struct JsFlags {
    /// JavaScript worker processes at most (default: one per core, at least 2); requests
    /// past them wait for one.
    #[arg(long)]
    js_workers: Option<usize>,
    /// Seconds one call of a design document function may run (CouchDB's
    /// `os_process_timeout`); its worker is killed after that.
    #[arg(long, default_value_t = 5.0)]
    js_timeout: f64,
    /// Each JavaScript worker's memory (address space), in MiB.
    #[arg(long, default_value_t = 512)]
    js_memory_mib: usize,
}

impl JsFlags {
    fn limits(&self) -> anyhow::Result<settee::server::PoolLimits> {
        let defaults = settee::server::PoolLimits::default();
        Ok(settee::server::PoolLimits {
            workers: self.js_workers.unwrap_or(defaults.workers).max(1),
            timeout: Duration::try_from_secs_f64(self.js_timeout)
                .context("--js-timeout must be a number of seconds")?,
            memory: self.js_memory_mib.max(64) << 20,
            ..defaults
        })
    }
}

/// This program run as a JavaScript worker (`settee js-worker`).
fn js_worker_program() -> Option<settee::server::WorkerProgram> {
    match std::env::current_exe() {
        Ok(program) => Some(settee::server::WorkerProgram {
            program,
            args: vec!["js-worker".into()],
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program to run JavaScript workers; design document functions will fail");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)] // one per flag group of `settee serve`
async fn serve(
    stores: Vec<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
    bind: std::net::SocketAddr,
    admin: Option<String>,
    cors: Option<settee::server::Cors>,
    max_body: usize,
    users: UserFlags,
    js: JsFlags,
) -> anyhow::Result<Outcome> {
    use settee::server::{Admin, Limits, Server, ServerOptions};
    let admin = match admin {
        Some(name) => {
            let password = std::env::var("SETTEE_PASSWORD")
                .context("--admin needs the admin's password in SETTEE_PASSWORD")?;
            Some(Admin { name, password })
        }
        None => None,
    };
    let server = Server::start(ServerOptions {
        bind,
        stores,
        data_dir,
        admin,
        cors,
        limits: Limits {
            max_body,
            ..Default::default()
        },
        advertise: true,
        js_worker: js_worker_program(),
        js_limits: js.limits()?,
        ..users.apply(Default::default())
    })
    .await?;
    print_json(&serde_json::json!({"ok": true, "url": format!("http://{}", server.local_addr())}))?;
    stop_signal().await;
    server.shutdown().await;
    Ok(Outcome::Clean)
}

/// Names a URL that could not be opened (its errors do not). A local store's errors name
/// its path already.
fn with_location(location: &str, opened: settee::Result<Db>) -> anyhow::Result<Db> {
    if location.starts_with("http://") || location.starts_with("https://") {
        opened.with_context(|| format!("opening {}", settee::redact(location)))
    } else {
        Ok(opened?)
    }
}

/// A sequence given on the command line: a number, JSON, or an opaque string.
fn parse_seq(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::from(s))
}

fn replication_options(args: &ReplicationArgs) -> anyhow::Result<ReplicateOptions> {
    let chosen = [
        args.doc_ids.is_some(),
        args.selector.is_some(),
        args.filter.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        bail!("choose one of --doc-ids, --selector and --filter");
    }
    let filter = if let Some(ids) = &args.doc_ids {
        Filter::DocIds(ids.clone())
    } else if let Some(sel) = &args.selector {
        let v: Value = serde_json::from_str(sel).context("--selector is not valid JSON")?;
        Filter::Selector(Selector::parse(&v)?)
    } else if let Some(name) = &args.filter {
        let query_params = match &args.query_params {
            Some(q) => match serde_json::from_str(q).context("--query-params is not valid JSON")? {
                Value::Object(m) => m,
                _ => bail!("--query-params must be a JSON object"),
            },
            None => Default::default(),
        };
        Filter::Named {
            name: name.clone(),
            query_params,
        }
    } else {
        Filter::All
    };
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    Ok(ReplicateOptions {
        continuous: args.continuous,
        create_target: args.create_target,
        filter,
        since: args
            .since
            .as_deref()
            .map(|s| settee::Seq::from_json(parse_seq(s))),
        batch_size: args.batch_size,
        checkpoint_interval: Duration::try_from_secs_f64(args.checkpoint_interval)
            .context("--checkpoint-interval must be a number of seconds")?,
        deadline: args
            .deadline
            .map(Duration::try_from_secs_f64)
            .transpose()
            .context("--deadline must be a number of seconds")?,
        ..Default::default()
    })
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Waits for Ctrl-C, or SIGTERM on Unix (how service managers stop a server).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// How progress is shown.
#[derive(Debug, Clone, Copy)]
struct Ui {
    json: bool,
    bar: bool,
    /// No line per retry.
    quiet: bool,
}

/// Stops a replication on Ctrl-C (it writes a final checkpoint first).
fn cancel_on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

async fn replicate(src: Db, tgt: Db, opts: ReplicateOptions, ui: &Ui) -> anyhow::Result<Outcome> {
    let _held_src = serve_held_store(&src, opts.continuous).await;
    let _held_tgt = serve_held_store(&tgt, opts.continuous).await;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let cancel = cancel_on_ctrl_c();
    let show = tokio::spawn(show_progress(rx, *ui, false));
    let result = Replication::new(src.to_peer(), tgt.to_peer(), opts)
        .run_with(Some(tx), cancel)
        .await;
    show.await.ok();
    let summary = result?;
    if !ui.json {
        print_json(&summary)?;
    }
    report_deadline(&[("", &summary)]);
    Ok(match summary.stats.doc_write_failures {
        0 => Outcome::Clean,
        n => Outcome::Rejected(n),
    })
}

/// While a continuous replication holds a local store, other `settee` commands on the store
/// reach it through a loopback server of this process (only with the credential it
/// advertises in the store directory).
async fn serve_held_store(db: &Db, continuous: bool) -> Option<settee::server::Server> {
    let (true, Db::Local(store)) = (continuous, db) else {
        return None;
    };
    let opts = settee::server::ServerOptions {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        databases: vec![store.clone()],
        advertise: true,
        admin_party: false,
        js_worker: js_worker_program(),
        ..Default::default()
    };
    match settee::server::Server::start(opts).await {
        Ok(s) => Some(s),
        Err(e) => {
            // The sync runs all the same; other commands then get store_in_use.
            tracing::warn!(error = %e, "cannot serve the store to other settee commands");
            None
        }
    }
}

async fn sync(local: Db, remote: Db, opts: ReplicateOptions, ui: &Ui) -> anyhow::Result<Outcome> {
    let _held = serve_held_store(&local, opts.continuous).await;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let cancel = cancel_on_ctrl_c();
    let show = tokio::spawn(show_progress(rx, *ui, true));
    let result =
        settee::replicate::sync(local.to_peer(), remote.to_peer(), opts, Some(tx), cancel).await;
    show.await.ok();
    let summary = result?;
    if !ui.json {
        print_json(&summary)?;
    }
    report_deadline(&[("push: ", &summary.push), ("pull: ", &summary.pull)]);
    let rejected = summary.push.stats.doc_write_failures + summary.pull.stats.doc_write_failures;
    Ok(if rejected == 0 {
        Outcome::Clean
    } else {
        Outcome::Rejected(rejected)
    })
}

/// Says on stderr, one line per direction, that a run stopped at its `--deadline` and how
/// much is left (a local source's exact count; a remote's is unknown without asking it).
/// Stopping at the deadline is not a failure: the exit code is the run's (0, or 3 if
/// documents were rejected), and the next run resumes from the checkpoint.
fn report_deadline(runs: &[(&str, &settee::replicate::Summary)]) {
    for (way, s) in runs.iter().filter(|(_, s)| s.deadline_reached) {
        let left = match s.pending {
            Some(n) => format!("{n} changes left"),
            None => "changes may be left".to_owned(),
        };
        eprintln!("settee: {way}stopped at the deadline, {left}; run again to continue");
    }
}

/// Renders events: JSON lines on stdout with --json, a progress bar on a terminal, and
/// rejected documents on stderr in any case, and each retry as one line (unless quiet).
/// The error a run ends with is not shown here: `main` prints it, once. With `both_ways`
/// (a sync), lines name their direction.
async fn show_progress(mut rx: tokio::sync::mpsc::Receiver<Event>, ui: Ui, both_ways: bool) {
    let Ui { json, bar, quiet } = ui;
    let start = Instant::now();
    let pb = bar.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(200));
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb
    });
    let mut written = [0u64; 2];
    let mut pending: [Option<u64>; 2] = [None, None];
    let mut seen = [false; 2];
    while let Some(event) = rx.recv().await {
        if let Event::Active { direction } = &event {
            seen[dir_index(*direction)] = true;
        }
        if json {
            let _ = print_json(&event);
        }
        match &event {
            Event::Change {
                direction,
                stats,
                pending: p,
                failures,
                ..
            } => {
                let i = dir_index(*direction);
                written[i] = stats.docs_written;
                pending[i] = *p;
                for f in failures {
                    if !json {
                        // Escaped: an id or a revision may hold a newline or other
                        // control characters, which must not break the line.
                        let rev = f
                            .rev
                            .as_deref()
                            .map(|r| format!(" {}", r.escape_debug()))
                            .unwrap_or_default();
                        eprintln!(
                            "settee: rejected {}{rev}: {}: {}",
                            f.id.escape_debug(),
                            f.error,
                            f.reason
                        );
                    }
                }
            }
            Event::Paused {
                direction,
                pending: p,
            } => pending[dir_index(*direction)] = *p,
            Event::Error {
                direction,
                message,
                retrying: true,
                retry_in_ms,
                ..
            } if !json && !quiet => {
                let way = match (both_ways, direction) {
                    (false, _) => "",
                    (true, Direction::Push) => "push: ",
                    (true, Direction::Pull) => "pull: ",
                };
                let msg = match retry_in_ms {
                    Some(ms) => format!("{way}{message} (retrying in {:.1}s)", *ms as f64 / 1000.0),
                    None => format!("{way}{message} (retrying)"),
                };
                match &pb {
                    Some(pb) => pb.println(format!("settee: {msg}")),
                    None => eprintln!("settee: {msg}"),
                }
            }
            _ => {}
        }
        if let Some(pb) = &pb {
            let total = written[0] + written[1];
            let rate = total as f64 / start.elapsed().as_secs_f64().max(0.001);
            let pend = |p: Option<u64>| p.map_or("?".to_owned(), |n| n.to_string());
            let pending = match (seen[0], seen[1]) {
                (true, true) => format!(
                    "pending push {} pull {}",
                    pend(pending[0]),
                    pend(pending[1])
                ),
                (false, true) => format!("pending {}", pend(pending[1])),
                _ => format!("pending {}", pend(pending[0])),
            };
            pb.set_message(format!(
                "{total} docs written ({rate:.0} docs/s), {pending}"
            ));
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Push => 0,
        Direction::Pull => 1,
    }
}
