//! `settee status`: what is not synced between a local store and a remote, as a table on a
//! terminal and as JSON lines when piped.

use std::io::{IsTerminal, Write};

use serde_json::Value;
use settee::{Db, Local, Remote};

use super::{existing, print_json, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Status {
    /// The local store path.
    local: String,
    /// The remote database URL.
    url: String,
    /// List every unsynced document with its state (and the remote's reason for a
    /// rejected one).
    #[arg(long)]
    docs: bool,
}

/// `settee status`: a table on a terminal, JSON lines otherwise.
pub(crate) async fn status(Status { local, url, docs }: Status) -> anyhow::Result<Outcome> {
    let Db::Local(local_store) = existing(&local)? else {
        anyhow::bail!(
            "{} is a server's database; `settee status` compares a local store with a server: give the store's path first",
            settee::redact(&local)
        );
    };
    if !settee::is_url(&url) {
        anyhow::bail!(
            "{url} is not a URL; `settee status` compares a local store with a server's database (http:// or https://)"
        );
    }
    let remote = {
        use anyhow::Context;
        super::remote(&url).with_context(|| format!("opening {}", settee::redact(&url)))?
    };
    show(&local_store, &remote, docs).await
}

async fn show(local: &Local, remote: &Remote, docs: bool) -> anyhow::Result<Outcome> {
    use futures::StreamExt;
    let terminal = std::io::stdout().is_terminal();
    let st = local.status(remote).await?;
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
    if l.never_synced {
        writeln!(out, "never synced with {}", l.remote)?;
    }
    // The design documents among them (a Mango index is one), so that an app's own
    // documents are the rest.
    let mut notes: Vec<String> = Vec::new();
    match l.unpushed_design {
        0 => {}
        1 => notes.push("1 design document".into()),
        n => notes.push(format!("{n} design documents")),
    }
    if l.rejected > 0 {
        notes.push(format!("{} rejected by the remote", l.rejected));
    }
    let notes = match notes.is_empty() {
        true => String::new(),
        false => format!(" ({})", notes.join(", ")),
    };
    writeln!(out, "unpushed        {}{notes}", l.unpushed)?;
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
            "pull failed     {} (the remote has {}; the next sync tries again)",
            l.pull_failed,
            if l.pull_failed == 1 { "it" } else { "them" }
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
