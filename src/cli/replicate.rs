//! `settee replicate` and `settee sync`: their flags, the options they make, and a run from
//! start to summary (a continuous run also serves its local store to other commands).

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use settee::replicate::{Direction, Filter, ReplicateOptions, Replication, Selector};
use settee::{CancellationToken, Db};

use super::progress::show_progress;
use super::serve::js_worker_program;
use super::{count, open_as, parse_seq, print_json, with_location, Opening, Outcome, Ui};

#[derive(Debug, clap::Args)]
pub(crate) struct Replicate {
    /// Where revisions come from.
    source: String,
    /// Where they go.
    target: String,
    #[command(flatten)]
    args: ReplicationArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Sync {
    /// The local store path.
    local: String,
    /// The remote database URL.
    url: String,
    #[command(flatten)]
    args: ReplicationArgs,
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

/// `settee replicate SOURCE TARGET`.
pub(crate) async fn replicate(
    Replicate {
        source,
        target,
        args,
    }: Replicate,
    ui: &Ui,
) -> anyhow::Result<Outcome> {
    // A local source must exist; a local target is created.
    let src = with_location(&source, open_as(&source, Opening::ReplicationSource))?;
    let tgt = with_location(&target, open_as(&target, Opening::ReplicationTarget))?;
    let mut opts = replication_options(&args)?;
    // Events name the direction: remote to local is a pull, anything else a push
    // (source to target).
    if matches!((&src, &tgt), (Db::Remote(_), Db::Local(_))) {
        opts.direction = Direction::Pull;
    }
    let written_store = open_here(&tgt);
    let (outcome, written) = run_replication(src, tgt, opts, ui).await?;
    settle(written_store, written);
    Ok(outcome)
}

/// Stores that wrote at least this many documents in a run are opened once more before the
/// command exits (see [`settle`]).
const SETTLE_AFTER_DOCS: u64 = 10_000;

/// The path of a store open in this process (not one another process holds).
fn open_here(db: &Db) -> Option<std::path::PathBuf> {
    db.local()
        .filter(|l| l.store().is_some())
        .map(settee::Local::path)
}

/// Opens the store at `path` once more, after every handle of the run is gone, when the run
/// wrote `written` documents or more into it. sled 0.34 writes its recovery snapshot only
/// when a store is opened, after replaying the whole log written since the last one: after a
/// pull of a million documents, the next open (a no-op re-sync, `settee status`) would
/// replay about 2 GB of log (2.5 s). The run that wrote pays it instead, about 1% of its
/// time, and the next command opens at once. A failure here is only logged: the run's
/// data is already durable.
fn settle(path: Option<std::path::PathBuf>, written: u64) {
    let Some(path) = path.filter(|_| written >= SETTLE_AFTER_DOCS) else {
        return;
    };
    let started = std::time::Instant::now();
    match settee::Local::open(&path) {
        Ok(local) => {
            drop(local);
            tracing::debug!(path = %path.display(), elapsed = ?started.elapsed(), "store settled");
        }
        Err(e) => tracing::warn!(error = %e, "cannot reopen the store to settle its log"),
    }
}

/// `settee sync LOCAL URL`.
pub(crate) async fn sync(Sync { local, url, args }: Sync, ui: &Ui) -> anyhow::Result<Outcome> {
    let l = with_location(&local, open_as(&local, Opening::ReplicationTarget))?;
    let r = with_location(&url, open_as(&url, Opening::ReplicationTarget))?;
    let opts = replication_options(&args)?;
    let written_store = open_here(&l);
    let (outcome, written) = run_sync(l, r, opts, ui).await?;
    settle(written_store, written);
    Ok(outcome)
}

/// The replication's options from the command's flags.
fn replication_options(args: &ReplicationArgs) -> anyhow::Result<ReplicateOptions> {
    let chosen = [
        args.doc_ids.is_some(),
        args.selector.is_some(),
        args.filter.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        bail!("--doc-ids, --selector and --filter cannot be combined; choose one");
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
            .context("--checkpoint-interval must be a number of seconds, 0 or more")?,
        deadline: args
            .deadline
            .map(Duration::try_from_secs_f64)
            .transpose()
            .context("--deadline must be a number of seconds, 0 or more")?,
        ..Default::default()
    })
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

/// Runs one replication to its summary (or, `--continuous`, until Ctrl-C).
async fn run_replication(
    src: Db,
    tgt: Db,
    opts: ReplicateOptions,
    ui: &Ui,
) -> anyhow::Result<(Outcome, u64)> {
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
    let outcome = match summary.stats.doc_write_failures {
        0 => Outcome::Clean,
        n => Outcome::Rejected(n),
    };
    Ok((outcome, summary.stats.docs_written))
}

/// While a continuous replication holds a local store, other `settee` commands on the store
/// reach it through a loopback server of this process (only with the credential it
/// advertises in the store directory).
async fn serve_held_store(db: &Db, continuous: bool) -> Option<settee::server::Server> {
    let (true, Some(store)) = (continuous, db.local().and_then(settee::Local::store)) else {
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

/// Runs a push and a pull together to their summaries (or, `--continuous`, until Ctrl-C).
async fn run_sync(
    local: Db,
    remote: Db,
    opts: ReplicateOptions,
    ui: &Ui,
) -> anyhow::Result<(Outcome, u64)> {
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
    let outcome = if rejected == 0 {
        Outcome::Clean
    } else {
        Outcome::Rejected(rejected)
    };
    // The pull's writes are the local store's.
    Ok((outcome, summary.pull.stats.docs_written))
}

/// Says on stderr, one line per direction, that a run stopped at its `--deadline` and how
/// much is left (a local source's exact count; a remote's is unknown without asking it).
/// Stopping at the deadline is not a failure: the exit code is the run's (0, or 3 if
/// documents were rejected), and the next run resumes from the checkpoint.
fn report_deadline(runs: &[(&str, &settee::replicate::Summary)]) {
    for (way, s) in runs.iter().filter(|(_, s)| s.deadline_reached) {
        let left = match s.pending {
            Some(n) => count(n, "change left", "changes left"),
            None => "changes may be left".to_owned(),
        };
        eprintln!("settee: {way}stopped at the deadline, {left}; run again to continue");
    }
}
