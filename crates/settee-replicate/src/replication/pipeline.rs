//! The batch pipeline: pages of `_changes` read lazily, up to `batches_in_flight` batches
//! diffed, fetched and written at once, taken in feed order so that "everything up to S is
//! written" is "the batch ending at S was taken", with progress events and interval
//! checkpoints as batches are taken.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use settee_revtree::{Rev, RevsDiff, Seq};
use tokio_util::sync::CancellationToken;

use super::run::{Progress, SessionMeta};
use super::sink::Ctx;
use super::Replication;
use crate::checkpoint::Logs;
use crate::events::{Event, Stats};
use crate::fetch::FetchQueue;
use crate::peer::{ChangesBatch, DocFailure, FetchRequest, Peer};
use crate::reader::{ChangesReader, Feed, Item};
use crate::{Error, Result};

/// At most this many failed documents are kept in a checkpoint (all are in events).
pub(super) const MAX_RECORDED_FAILURES: usize = 1000;

/// What one batch did.
pub(super) struct Processed {
    pub(super) last_seq: Seq,
    pub(super) pending: Option<u64>,
    pub(super) delta: Stats,
    pub(super) failures: Vec<DocFailure>,
    /// The documents written to the target, in id order.
    pub(super) written: Vec<String>,
}

/// What the pipeline yields for one item of the changes reader.
enum Outcome {
    Processed(Processed),
    Idle(Seq),
    Skip(Seq),
}

impl<S: Peer, T: Peer> Replication<S, T> {
    /// One attempt of the pipeline, from `progress.done_seq`, until caught up (one-shot),
    /// cancelled, or failed.
    pub(super) async fn pump(
        &self,
        ctx: &Ctx,
        session: &SessionMeta,
        progress: &mut Progress,
        logs: &mut Logs,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let reader = ChangesReader::new(
            self.source.clone(),
            Feed::of(&self.opts),
            progress.done_seq.clone(),
        )
        .last_read_after(self.last_read_after.clone())
        .into_stream();
        let this = self.clone();
        let initial_load = progress.initial_load.clone();
        let pipeline = reader
            .map(move |item| {
                let this = this.clone();
                let skip_diff = initial_load.load(Ordering::Relaxed);
                async move {
                    match item? {
                        Item::Batch(batch) => {
                            this.process(batch, skip_diff).await.map(Outcome::Processed)
                        }
                        Item::Idle(seq) => Ok(Outcome::Idle(seq)),
                        Item::Skip(seq) => Ok(Outcome::Skip(seq)),
                    }
                }
            })
            .buffered(self.opts.batches_in_flight.max(1));
        let mut pipeline = std::pin::pin!(pipeline);

        loop {
            // `next()` on a Buffered stream is cancel-safe: dropping it loses no item.
            let next = tokio::select! {
                n = pipeline.next() => n,
                () = cancel.cancelled() => return Err(Error::Cancelled),
            };
            match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(Outcome::Processed(p))) => {
                    progress.steps += 1;
                    if progress.paused {
                        progress.paused = false;
                        ctx.emit(Event::Active {
                            direction: ctx.direction,
                        })
                        .await;
                    }
                    add(&mut progress.stats, &p.delta);
                    progress.done_seq = p.last_seq;
                    for f in &p.failures {
                        tracing::warn!(id = %f.id, error = %f.error, reason = %f.reason, "document not replicated");
                    }
                    if progress.failures.len() < MAX_RECORDED_FAILURES {
                        progress.failures.extend(p.failures.iter().cloned());
                    }
                    progress.read_since_base = progress
                        .read_since_base
                        .saturating_add(p.delta.changes_read);
                    let pending = if self.source.is_local() {
                        if progress.pending_base.is_none() {
                            self.refresh_pending(progress).await;
                        }
                        progress
                            .pending_base
                            .map(|b| b.saturating_sub(progress.read_since_base))
                    } else {
                        p.pending
                    };
                    ctx.emit_change(Event::Change {
                        direction: ctx.direction,
                        stats: progress.stats.clone(),
                        last_seq: progress.done_seq.clone(),
                        pending,
                        failures: p.failures,
                        ids: p.written,
                    });
                    if progress.last_checkpoint.elapsed() >= self.opts.checkpoint_interval {
                        self.checkpoint(ctx, session, progress, logs, false).await?;
                    }
                }
                Some(Ok(Outcome::Skip(seq))) => {
                    progress.steps += 1;
                    // Everything before this point in the feed has been taken, and the reader
                    // found nothing to replicate up to `seq`.
                    progress.done_seq = seq;
                }
                Some(Ok(Outcome::Idle(seq))) => {
                    progress.steps += 1;
                    // Everything before this point in the feed has been taken, so all of it
                    // is written.
                    progress.done_seq = seq;
                    progress.initial_load.store(false, Ordering::Relaxed);
                    self.checkpoint(ctx, session, progress, logs, false).await?;
                    if !progress.paused {
                        progress.paused = true;
                        if self.opts.continuous {
                            self.record_caught_up().await;
                        }
                        let pending = if self.source.is_local() {
                            self.refresh_pending(progress).await;
                            progress.pending_base
                        } else {
                            Some(0)
                        };
                        ctx.emit(Event::Paused {
                            direction: ctx.direction,
                            pending,
                        })
                        .await;
                    }
                }
            }
        }
    }

    /// Counts a local source's changes after `done_seq` exactly (at start, at checkpoints
    /// and when caught up); `Change` events subtract the rows read since.
    pub(super) async fn refresh_pending(&self, progress: &mut Progress) {
        progress.pending_base = self.source.pending_since(&progress.done_seq).await;
        progress.read_since_base = 0;
    }

    /// Diffs, fetches and writes one batch. With `skip_diff` (the target was empty when the
    /// session began and this is its first catch-up) every revision counts as missing
    /// without asking the target: `_revs_diff` would say so, and a revision the target got
    /// meanwhile from elsewhere is written again harmlessly (`new_edits=false` merges a
    /// known revision as a no-op). It saves the target a lookup per document on an initial
    /// upload, which on a single-process server is a large part of a push.
    pub(super) async fn process(&self, batch: ChangesBatch, skip_diff: bool) -> Result<Processed> {
        let mut delta = Stats {
            changes_read: batch.changes.len() as u64,
            ..Stats::default()
        };
        // A clustered feed can list a document twice (after a rewind): merge its revs.
        let mut revs: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
        let mut failures = Vec::new();
        for change in batch.changes {
            // A revision no `Rev` can hold is that document's failure, reported; the rest
            // of the batch replicates.
            for text in change.invalid_revs {
                failures.push(unrepresentable(&change.id, text));
            }
            if change.changes.is_empty() {
                continue;
            }
            let entry = revs.entry(change.id).or_default();
            for rev in change.changes {
                if !entry.contains(&rev) {
                    entry.push(rev);
                }
            }
        }
        delta.doc_write_failures += failures.len() as u64;
        delta.missing_checked = revs.values().map(|r| r.len() as u64).sum();
        // Every revision the source listed, for the sync-state hook below.
        let listed = revs.clone();
        let asked = if skip_diff { None } else { Some(revs.clone()) };
        let diff = if skip_diff {
            revs.into_iter()
                .map(|(id, missing)| {
                    let diff = RevsDiff {
                        missing,
                        possible_ancestors: Vec::new(),
                    };
                    (id, diff)
                })
                .collect()
        } else {
            self.diff_checked(revs).await?
        };
        let mut reqs = Vec::new();
        let mut missing: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
        for (id, d) in diff {
            if !d.missing.is_empty() {
                missing.insert(id.clone(), d.missing.clone());
            }
            for rev in d.missing {
                // Fetch only what was asked about: a target that names another revision
                // (CouchDB writes some hashes differently from how it was given them, e.g.
                // upper-case hex in lower case) would make the fetch fail on every retry.
                let was_asked = asked
                    .as_ref()
                    .is_none_or(|a| a.get(&id).is_some_and(|r| r.contains(&rev)));
                if !was_asked {
                    failures.push(DocFailure {
                        id: id.clone(),
                        rev: Some(rev.to_string()),
                        error: "bad_request".into(),
                        reason: "the target's _revs_diff named a revision that was not asked about"
                            .into(),
                    });
                    delta.doc_write_failures += 1;
                    continue;
                }
                reqs.push(FetchRequest {
                    id: id.clone(),
                    rev,
                    atts_since: d.possible_ancestors.clone(),
                });
            }
        }
        delta.missing_found = reqs.len() as u64;
        // What the target says it lacks overrides what the source recorded it to hold (it
        // may have been reset or restored since): unsynced until the write below confirms.
        if !skip_diff && !missing.is_empty() {
            self.source
                .record_peer_lacks(&self.target.identity(), missing.clone())
                .await?;
        }
        let source_id = self.source.identity();
        let mut queue = FetchQueue::new(reqs, crate::write::streams(&self.source, &self.target));
        while let Some(piece) = queue.next(&self.source, &self.budget).await? {
            let docs = piece.docs;
            delta.docs_read += docs.len() as u64;
            delta.doc_write_failures += piece.failures.len() as u64;
            failures.extend(piece.failures);
            let n = docs.len() as u64;
            // Written: the documents' share of the byte budget is free again (`write_docs`
            // gives it back before it fetches anything more).
            let rejected = crate::write::write_docs(
                &self.source,
                &self.target,
                &self.budget,
                docs,
                piece.held,
                self.opts.confirm_writes,
            )
            .await?;
            // A server may answer with more results than documents sent: never underflow.
            delta.docs_written += n.saturating_sub(rejected.len() as u64);
            delta.doc_write_failures += rejected.len() as u64;
            failures.extend(rejected);
        }
        let failed: std::collections::HashSet<&str> =
            failures.iter().map(|f| f.id.as_str()).collect();
        let written = missing
            .keys()
            .filter(|id| !failed.contains(id.as_str()))
            .cloned()
            .collect();
        self.record_sync_state(&source_id, listed, missing, &failures)
            .await?;
        Ok(Processed {
            last_seq: batch.last_seq,
            pending: batch.pending,
            delta,
            failures,
            written,
        })
    }

    /// `_revs_diff` on the target, checked: an answer leaves out what the target holds, so a
    /// row lost on the way (a proxy, a cut answer sent again) would make revisions look held,
    /// and the checkpoint would move past them unsent. Revisions left out that the source
    /// records as not held there are asked about again, alone, up to [`DIFF_ASKS`] times in
    /// all; only answers that leave them out every time are believed (a target that really
    /// holds them says so each time). What the source already knows the target holds (the
    /// echo of a pull, in a sync) costs nothing more.
    async fn diff_checked(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        let mut diff = self.target.revs_diff(revs.clone()).await?;
        let mut asked = revs;
        for _ in 1..DIFF_ASKS {
            let omitted = left_out(asked, &diff);
            if omitted.is_empty() {
                break;
            }
            let doubtful = self
                .source
                .not_held_by(&self.target.identity(), omitted)
                .await?;
            if doubtful.is_empty() {
                break;
            }
            tracing::debug!(
                documents = doubtful.len(),
                "_revs_diff left out revisions the target is not known to hold; asking again"
            );
            for (id, again) in self.target.revs_diff(doubtful.clone()).await? {
                let d = diff.entry(id).or_insert_with(|| RevsDiff {
                    missing: Vec::new(),
                    possible_ancestors: Vec::new(),
                });
                for r in again.missing {
                    if !d.missing.contains(&r) {
                        d.missing.push(r);
                    }
                }
                for r in again.possible_ancestors {
                    if !d.possible_ancestors.contains(&r) {
                        d.possible_ancestors.push(r);
                    }
                }
            }
            asked = doubtful;
        }
        Ok(diff)
    }
}

/// How many times, at most, `_revs_diff` is asked about a revision it leaves out that the
/// source does not know the target to hold (see `diff_checked`).
const DIFF_ASKS: usize = 3;

/// Of `asked`, the revisions `diff` does not list as missing.
fn left_out(
    asked: BTreeMap<String, Vec<Rev>>,
    diff: &BTreeMap<String, RevsDiff>,
) -> BTreeMap<String, Vec<Rev>> {
    asked
        .into_iter()
        .filter_map(|(id, listed)| {
            let said = diff.get(&id).map(|d| &d.missing);
            let left_out: Vec<Rev> = listed
                .into_iter()
                .filter(|r| said.is_none_or(|m| !m.contains(r)))
                .collect();
            (!left_out.is_empty()).then_some((id, left_out))
        })
        .collect()
}

pub(super) fn add(total: &mut Stats, d: &Stats) {
    // Saturating: counts come from servers' answers, and a counter never wraps to 0.
    total.changes_read = total.changes_read.saturating_add(d.changes_read);
    total.missing_checked = total.missing_checked.saturating_add(d.missing_checked);
    total.missing_found = total.missing_found.saturating_add(d.missing_found);
    total.docs_read = total.docs_read.saturating_add(d.docs_read);
    total.docs_written = total.docs_written.saturating_add(d.docs_written);
    total.doc_write_failures = total
        .doc_write_failures
        .saturating_add(d.doc_write_failures);
}

/// The failure reported for a revision the source listed that no `Rev` can hold.
fn unrepresentable(id: &str, text: String) -> DocFailure {
    let reason = match text.parse::<Rev>() {
        Err(settee_revtree::Error::InvalidRev { reason, .. }) => reason,
        _ => "not a revision id",
    };
    DocFailure {
        id: id.to_owned(),
        reason: format!("Settee cannot represent this revision id ({reason})"),
        rev: Some(text),
        error: "bad_request".into(),
    }
}
