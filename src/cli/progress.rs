//! How a replication's events are shown: JSON lines on stdout with `--json`, a spinner on
//! a terminal, and rejected documents and retries on stderr.

use std::time::{Duration, Instant};

use settee::replicate::{Direction, Event};

use super::{count, print_json, Ui};

/// Renders events: JSON lines on stdout with --json, a progress bar on a terminal, and
/// rejected documents on stderr in any case, and each retry as one line (unless quiet).
/// The error a run ends with is not shown here: `main` prints it, once. With `both_ways`
/// (a sync), lines name their direction.
pub(super) async fn show_progress(
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    ui: Ui,
    both_ways: bool,
) {
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
                "{} written ({rate:.0} docs/s), {pending}",
                count(total, "doc", "docs")
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
