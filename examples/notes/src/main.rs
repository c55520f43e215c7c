//! `settee-notes`: starts the notes app and prints the page's address.
//!
//! ```text
//! settee-notes [--store DIR] [--listen ADDR] [--remote URL [--password-file FILE]]
//! ```
//! The password for `--remote` comes from `SETTEE_PASSWORD` or a file (never the command
//! line, where other users of the machine can read it); the URL names the user. The file is
//! read again whenever a sync starts, so a server whose password changed is signed in to
//! again once the file has the new one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use settee_notes::{App, AppOptions, Remote};

/// An offline-first notes app on Settee that syncs with CouchDB.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The local store's directory (created if missing).
    #[arg(long, default_value = "notes.settee")]
    store: PathBuf,
    /// Where the page is served. Port 0 picks a free one; the address is printed.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The CouchDB database to sync with, e.g. http://admin@127.0.0.1:5984/notes (the
    /// password from SETTEE_PASSWORD). Without it, the server set on the page, if any.
    #[arg(long)]
    remote: Option<String>,
    /// A file holding the password for --remote (its first line), read again at every
    /// attempt to sync: write a changed password there and the app picks it up.
    #[arg(long, requires = "remote")]
    password_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "settee_notes=info,warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("settee-notes: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settee-notes: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let remote = cli
        .remote
        .as_deref()
        .map(|url| Remote::parse(url, None, None))
        .transpose()?
        .map(|r| match &cli.password_file {
            Some(file) => r.with_password_file(file),
            None => r,
        });
    let app = App::start(AppOptions {
        store: cli.store.clone(),
        remote,
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    // The first line on stdout is the page's address (scripts and tests read it).
    println!("settee-notes: listening on http://{addr}/");
    tracing::info!(store = %cli.store.display(), "notes app started");
    let closing = app.clone();
    axum::serve(listener, settee_notes::router(app.clone()))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            closing.close_streams();
        })
        .await?;
    app.shutdown().await?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
