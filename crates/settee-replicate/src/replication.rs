//! The replication loop: verify peers, find where to start from the checkpoints, then read
//! changes, `_revs_diff`, fetch and write in a pipeline with a bound on batches in flight,
//! checkpointing only what is durable on the target. One-shot or continuous; transient
//! failures are retried with backoff.
//!
//! Pipeline: a reader pulls pages of `_changes` (`style=all_docs`) lazily; up to
//! `batches_in_flight` batches are diffed, fetched and written concurrently, and their
//! results are taken in feed order, so "everything up to sequence S is written" is simply
//! "the batch ending at S has been taken". A checkpoint then asks the target to make its
//! writes durable (`commit`) before recording S on both peers. A one-shot run ends on an
//! empty page; a continuous one reports `Paused` on a short page and then longpolls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use serde_json::value::RawValue;
use settee_revtree::{Rev, RevsDiff, Seq};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, LogSlot, ReplicationLog, Session, HISTORY_LIMIT};
use crate::events::{Direction, Event, Stats, Summary};
use crate::peer::{ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer};
use crate::{Error, Result, RetryPolicy};

/// How a replication runs. Build with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct ReplicateOptions {
    /// Changes rows per batch (CouchDB's `worker_batch_size` is 500, PouchDB's 100).
    pub batch_size: usize,
    /// Batches diffed, fetched and written at once; bounds memory at about
    /// `batch_size * batches_in_flight` documents.
    pub batches_in_flight: usize,
    /// Follow changes as they happen instead of stopping when caught up.
    pub continuous: bool,
    /// Create the target database if it does not exist.
    pub create_target: bool,
    /// Which documents to replicate.
    pub filter: Filter,
    /// Start from this source sequence instead of the checkpoint.
    pub since: Option<Seq>,
    /// Write a checkpoint at most this often while running (and always at the end).
    pub checkpoint_interval: Duration,
    /// How long one longpoll for new changes waits in continuous mode.
    pub longpoll: Duration,
    /// Retrying after transient failures.
    pub retry: RetryPolicy,
    /// Label for events (a sync runs a push and a pull).
    pub direction: Direction,
    /// Revisions fetched and written per request within a batch (bounds memory when
    /// documents carry attachments). The default, 500, fetches a default batch with one
    /// `_bulk_get` and writes it with one `_bulk_docs` (a local store writes it in batches
    /// of 100, see `peer_store.rs`): fewer, larger requests cost the client about a third
    /// less CPU than chunks of 100 did.
    pub fetch_chunk: usize,
}

impl Default for ReplicateOptions {
    fn default() -> ReplicateOptions {
        ReplicateOptions {
            batch_size: 500,
            batches_in_flight: 4,
            continuous: false,
            create_target: false,
            filter: Filter::All,
            since: None,
            checkpoint_interval: Duration::from_secs(5),
            longpoll: Duration::from_secs(25),
            retry: RetryPolicy::default(),
            direction: Direction::Push,
            fetch_chunk: 500,
        }
    }
}

/// A replication from `source` to `target`.
///
/// ```no_run
/// # async fn demo(local: settee_store::Database, remote: settee_couch::RemoteDb) -> Result<(), settee_replicate::Error> {
/// use settee_replicate::{Replication, ReplicateOptions};
/// let summary = Replication::new(local, remote, ReplicateOptions::default()).run().await?;
/// println!("{} revisions written", summary.stats.docs_written);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Replication<S, T> {
    source: S,
    target: T,
    opts: ReplicateOptions,
}

/// A replication running in the background: its events, and a way to stop it.
#[derive(Debug)]
pub struct ReplicationHandle {
    events: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<Summary>>,
}

impl ReplicationHandle {
    /// The next event; `None` once the replication has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Asks the replication to stop; it writes a final checkpoint first.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that stops the replication when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for the end, discarding events not yet read.
    ///
    /// # Errors
    /// The replication's error, or [`Error::Task`] if its task panicked.
    pub async fn finish(mut self) -> Result<Summary> {
        self.events.close();
        while self.events.recv().await.is_some() {}
        self.task.await.map_err(|e| Error::Task(e.to_string()))?
    }
}

/// Events are buffered this deep. A caller that does not read them slows progress reports
/// only: `Change` events are dropped when the buffer is full (the next one carries the same
/// totals), every other event waits for room.
const EVENT_BUFFER: usize = 256;

/// Where the pipeline is, shared by the attempts of one session.
struct Progress {
    stats: Stats,
    /// Everything up to here is written to the target.
    done_seq: Seq,
    /// What the last checkpoint recorded.
    checkpointed_seq: Option<Seq>,
    failures: Vec<DocFailure>,
    last_checkpoint: Instant,
    paused: bool,
    /// A local source's exact pending count, taken now and then (counting reads the rest of
    /// its index, too slow to do per batch), and the rows read since.
    pending_base: Option<u64>,
    read_since_base: u64,
    /// The target had no documents (live or deleted) when this session began, and the
    /// first catch-up is not over: every revision read is missing there, so `_revs_diff` is
    /// skipped (see `process`). Cleared once caught up, after which other writers may have
    /// given the target anything.
    initial_load: Arc<AtomicBool>,
}

/// At most this many failed documents are kept in a checkpoint (all are in events).
const MAX_RECORDED_FAILURES: usize = 1000;

enum Item {
    Batch(ChangesBatch),
    /// Caught up at this sequence (continuous mode).
    Idle(Seq),
}

struct Processed {
    last_seq: Seq,
    pending: Option<u64>,
    delta: Stats,
    failures: Vec<DocFailure>,
}

enum Outcome {
    Processed(Processed),
    Idle(Seq),
}

impl<S: Peer, T: Peer> Replication<S, T> {
    /// A replication with these options; nothing happens until it runs.
    pub fn new(source: S, target: T, opts: ReplicateOptions) -> Replication<S, T> {
        Replication {
            source,
            target,
            opts,
        }
    }

    /// The replication id: the name of its checkpoint documents (`_local/<id>`).
    pub fn replication_id(&self) -> String {
        checkpoint::replication_id(
            &self.source.identity(),
            &self.target.identity(),
            &self.opts.filter,
        )
    }

    /// Runs to completion (one-shot) or until an unrecoverable error, without events.
    ///
    /// # Errors
    /// A fatal error: a missing database, authentication, bad options, or a transient failure
    /// that outlasted the retry policy (one-shot only).
    pub async fn run(self) -> Result<Summary> {
        self.run_with(None, CancellationToken::new()).await
    }

    /// Starts the replication on the current tokio runtime.
    pub fn spawn(self) -> ReplicationHandle {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move { self.run_with(Some(tx), token).await });
        ReplicationHandle {
            events: rx,
            cancel,
            task,
        }
    }

    /// Runs with an optional event sink, until done or `cancel` fires. Cancelling leaves
    /// the last checkpoint written (a final one is attempted first).
    ///
    /// # Errors
    /// As [`Replication::run`].
    #[tracing::instrument(skip_all, fields(source = %self.source.describe(), target = %self.target.describe()))]
    pub async fn run_with(
        self,
        events: Option<mpsc::Sender<Event>>,
        cancel: CancellationToken,
    ) -> Result<Summary> {
        let ctx = Ctx {
            events,
            direction: self.opts.direction,
        };
        let rep_id = self.replication_id();
        let start_time = checkpoint::now_rfc3339();
        let session_id = new_session_id();
        ctx.emit(Event::Active {
            direction: ctx.direction,
        })
        .await;

        // Verify peers and read checkpoints, retrying transient failures like any step.
        let mut attempt = 0u32;
        let (mut source_log, mut target_log, target_empty) = loop {
            let setup = tokio::select! {
                r = self.setup(&rep_id) => r,
                () = cancel.cancelled() => return Err(Error::Cancelled),
            };
            match setup {
                Ok(logs) => break logs,
                Err(e) => {
                    if !self.wait_to_retry(&ctx, &e, &mut attempt, &cancel).await {
                        ctx.error(&e, false, None).await;
                        return Err(e);
                    }
                }
            }
        };
        let start_seq = match &self.opts.since {
            Some(s) => s.clone(),
            None => checkpoint::find_start(source_log.log.as_ref(), target_log.log.as_ref()),
        };
        tracing::info!(%rep_id, since = %start_seq, "replication starting");

        let mut progress = Progress {
            stats: Stats::default(),
            done_seq: start_seq.clone(),
            checkpointed_seq: if self.opts.since.is_none() && !start_seq.is_zero() {
                Some(start_seq.clone())
            } else {
                None
            },
            failures: Vec::new(),
            last_checkpoint: Instant::now(),
            paused: false,
            pending_base: None,
            read_since_base: 0,
            initial_load: Arc::new(AtomicBool::new(target_empty)),
        };
        let session = SessionMeta {
            rep_id: &rep_id,
            session_id: &session_id,
            start_time: &start_time,
            start_seq: &start_seq,
        };

        let mut attempt = 0u32;
        let result = loop {
            let r = self
                .pump(
                    &ctx,
                    &session,
                    &mut progress,
                    &mut source_log,
                    &mut target_log,
                    &cancel,
                )
                .await;
            match r {
                Ok(()) => break Ok(()),
                Err(Error::Cancelled) => break Err(Error::Cancelled),
                Err(e) => {
                    if !self.wait_to_retry(&ctx, &e, &mut attempt, &cancel).await {
                        break Err(e);
                    }
                    // The failure ended the caught-up pause the last `Paused` reported: when
                    // the retry catches up again, report `Paused` again, or a caller would
                    // never learn that a direction with nothing to replicate is back.
                    progress.paused = false;
                }
            }
        };

        // Final checkpoint of what is done, whatever happened (best effort on failure).
        let cancelled = matches!(result, Err(Error::Cancelled)) || cancel.is_cancelled();
        let final_cp = self
            .checkpoint(
                &ctx,
                &session,
                &mut progress,
                &mut source_log,
                &mut target_log,
                true,
            )
            .await;
        let summary = Summary {
            ok: result.is_ok() || cancelled,
            session_id: session_id.clone(),
            replication_id: rep_id.clone(),
            start_last_seq: start_seq.clone(),
            end_last_seq: progress.done_seq.clone(),
            start_time,
            end_time: checkpoint::now_rfc3339(),
            stats: progress.stats.clone(),
            doc_failures: progress.failures.clone(),
            cancelled,
        };
        match result {
            Err(e) if !cancelled => {
                ctx.error(&e, false, None).await;
                Err(e)
            }
            _ => {
                final_cp?;
                tracing::info!(
                    docs_written = summary.stats.docs_written,
                    "replication complete"
                );
                ctx.emit(Event::Complete {
                    direction: ctx.direction,
                    summary: summary.clone(),
                })
                .await;
                Ok(summary)
            }
        }
    }

    /// Whether to retry after `e` (waiting the backoff delay first). Emits the error.
    async fn wait_to_retry(
        &self,
        ctx: &Ctx,
        e: &Error,
        attempt: &mut u32,
        cancel: &CancellationToken,
    ) -> bool {
        let retry = e.is_transient()
            && (self.opts.continuous || *attempt + 1 < self.opts.retry.one_shot_attempts);
        if !retry {
            return false;
        }
        let delay = self.opts.retry.delay(*attempt);
        *attempt += 1;
        tracing::warn!(error = %e, retry_in = ?delay, "replication step failed; retrying");
        ctx.error(e, true, Some(delay)).await;
        ctx.emit(Event::Paused {
            direction: ctx.direction,
            pending: None,
        })
        .await;
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = cancel.cancelled() => false,
        }
    }

    /// Verifies both peers (creating the target if asked) and reads both checkpoints; also
    /// says whether the target is empty (no live or deleted documents).
    async fn setup(&self, rep_id: &str) -> Result<(LogSlot, LogSlot, bool)> {
        self.source.info().await?;
        let target = match self.target.info().await {
            Ok(info) => info,
            Err(e) => {
                if e.name() != "not_found" {
                    return Err(e);
                }
                if !self.opts.create_target {
                    return Err(Error::NoDatabase {
                        peer: self.target.describe(),
                    });
                }
                self.target.create().await?;
                self.target.info().await?
            }
        };
        let empty = target.doc_count == 0 && target.doc_del_count == 0;
        if let Filter::Named { .. } = self.opts.filter {
            if self.source.is_local() {
                return Err(Error::BadRequest {
                    reason: "a named filter function runs only on a remote source; use a selector or doc_ids for a local one".into(),
                });
            }
        }
        let (s, t) = futures::join!(
            LogSlot::read(&self.source, rep_id),
            LogSlot::read(&self.target, rep_id)
        );
        Ok((s?, t?, empty))
    }

    /// One attempt of the pipeline, from `progress.done_seq`, until caught up (one-shot),
    /// cancelled, or failed.
    async fn pump(
        &self,
        ctx: &Ctx,
        session: &SessionMeta<'_>,
        progress: &mut Progress,
        source_log: &mut LogSlot,
        target_log: &mut LogSlot,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let limit = self.opts.batch_size.max(1);
        let continuous = self.opts.continuous;
        // The stages own clones of the peers (cheap handles), so the pipeline borrows nothing
        // from `self` across its awaits.
        let (source, filter, longpoll) = (
            self.source.clone(),
            self.opts.filter.clone(),
            self.opts.longpoll,
        );
        // Reader state: where to read from, whether the last page was short (caught up: the
        // next read may wait), whether the feed ended, and whether to report being idle
        // before reading on.
        struct ReadState {
            since: Seq,
            caught_up: bool,
            ended: bool,
            idle: bool,
        }
        let start = ReadState {
            since: progress.done_seq.clone(),
            caught_up: false,
            ended: false,
            idle: false,
        };
        let reader = stream::unfold(start, move |st| {
            let source = source.clone();
            let req = ChangesRequest {
                since: st.since.clone(),
                limit,
                filter: filter.clone(),
                wait: (continuous && st.caught_up).then_some(longpoll),
            };
            async move {
                if st.ended {
                    return None;
                }
                if st.idle {
                    let item = Item::Idle(st.since.clone());
                    return Some((Ok(item), ReadState { idle: false, ..st }));
                }
                match source.changes(&req).await {
                    Err(e) => Some((Err(e), ReadState { ended: true, ..st })),
                    Ok(batch) if batch.changes.is_empty() => {
                        if continuous {
                            let seq = batch.last_seq.clone();
                            let next = ReadState {
                                since: seq.clone(),
                                caught_up: true,
                                ended: false,
                                idle: false,
                            };
                            Some((Ok(Item::Idle(seq)), next))
                        } else {
                            None
                        }
                    }
                    Ok(batch) => {
                        // A short page means caught up: continuous mode reports idle once it
                        // is written, then waits for more. A one-shot run still reads on until
                        // an empty page: a server that is not snapshot-consistent (pouchdb-server)
                        // can leave out rows that moved to a later sequence while it read, and
                        // the next page finds them. That costs one round trip at the end.
                        let short = batch.changes.len() < limit;
                        let next = ReadState {
                            since: batch.last_seq.clone(),
                            caught_up: short,
                            ended: false,
                            idle: short && continuous,
                        };
                        Some((Ok(Item::Batch(batch)), next))
                    }
                }
            }
        });
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
                    progress.read_since_base += p.delta.changes_read;
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
                    });
                    if progress.last_checkpoint.elapsed() >= self.opts.checkpoint_interval {
                        self.checkpoint(ctx, session, progress, source_log, target_log, false)
                            .await?;
                    }
                }
                Some(Ok(Outcome::Idle(seq))) => {
                    // Everything before this point in the feed has been taken, so all of it
                    // is written.
                    progress.done_seq = seq;
                    progress.initial_load.store(false, Ordering::Relaxed);
                    self.checkpoint(ctx, session, progress, source_log, target_log, false)
                        .await?;
                    if !progress.paused {
                        progress.paused = true;
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
    async fn refresh_pending(&self, progress: &mut Progress) {
        progress.pending_base = self.source.pending_since(&progress.done_seq).await;
        progress.read_since_base = 0;
    }

    /// Diffs, fetches and writes one batch. With `skip_diff` (the target was empty when the
    /// session began and this is its first catch-up) every revision counts as missing
    /// without asking the target: `_revs_diff` would say so, and a revision the target got
    /// meanwhile from elsewhere is written again harmlessly (`new_edits=false` merges a
    /// known revision as a no-op). It saves the target a lookup per document on an initial
    /// upload, which on a single-process server is a large part of a push.
    async fn process(&self, batch: ChangesBatch, skip_diff: bool) -> Result<Processed> {
        let mut delta = Stats {
            changes_read: batch.changes.len() as u64,
            ..Stats::default()
        };
        // A clustered feed can list a document twice (after a rewind): merge its revs.
        let mut revs: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
        for change in batch.changes {
            let entry = revs.entry(change.id).or_default();
            for rev in change.revs {
                if !entry.contains(&rev) {
                    entry.push(rev);
                }
            }
        }
        delta.missing_checked = revs.values().map(|r| r.len() as u64).sum();
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
            self.target.revs_diff(revs).await?
        };
        let mut reqs = Vec::new();
        for (id, d) in diff {
            for rev in d.missing {
                reqs.push(FetchRequest {
                    id: id.clone(),
                    rev,
                    atts_since: d.possible_ancestors.clone(),
                });
            }
        }
        delta.missing_found = reqs.len() as u64;
        let mut failures = Vec::new();
        for chunk in reqs.chunks(self.opts.fetch_chunk.max(1)) {
            let docs = self.fetch(chunk.to_vec()).await?;
            delta.docs_read += docs.len() as u64;
            let n = docs.len() as u64;
            let rejected = self.target.write(docs).await?;
            delta.docs_written += n - rejected.len() as u64;
            delta.doc_write_failures += rejected.len() as u64;
            failures.extend(rejected);
        }
        Ok(Processed {
            last_seq: batch.last_seq,
            pending: batch.pending,
            delta,
            failures,
        })
    }

    /// Fetches revisions; those the source fails to give (a compaction race) are asked once
    /// more on their own before the batch fails.
    async fn fetch(&self, reqs: Vec<FetchRequest>) -> Result<Vec<Box<RawValue>>> {
        let mut docs = Vec::with_capacity(reqs.len());
        let mut failed = Vec::new();
        for f in self.source.fetch(reqs.clone()).await? {
            match f {
                Fetched::Doc(d) => docs.push(d),
                Fetched::Failed(fail) => failed.push(fail),
            }
        }
        if failed.is_empty() {
            return Ok(docs);
        }
        let again: Vec<FetchRequest> = reqs
            .into_iter()
            .filter(|r| {
                failed.iter().any(|f| {
                    f.id == r.id && f.rev.as_deref().is_none_or(|v| v == r.rev.to_string())
                })
            })
            .collect();
        let mut failures = Vec::new();
        for f in self.source.fetch(again).await? {
            match f {
                Fetched::Doc(d) => docs.push(d),
                Fetched::Failed(fail) => failures.push(fail),
            }
        }
        if !failures.is_empty() {
            return Err(Error::Fetch { failures });
        }
        Ok(docs)
    }

    /// Makes the target durable, then records `progress.done_seq` on the target and the
    /// source. Skipped when nothing moved since the last checkpoint (unless `force`, which
    /// still skips if the sequence is unchanged and there are no new failures to record).
    async fn checkpoint(
        &self,
        ctx: &Ctx,
        session: &SessionMeta<'_>,
        progress: &mut Progress,
        source_log: &mut LogSlot,
        target_log: &mut LogSlot,
        force: bool,
    ) -> Result<()> {
        progress.last_checkpoint = Instant::now();
        let unchanged = progress.checkpointed_seq.as_ref() == Some(&progress.done_seq);
        if unchanged && (!force || progress.failures.is_empty()) {
            return Ok(());
        }
        if progress.done_seq.is_zero() && progress.failures.is_empty() {
            return Ok(());
        }
        // INVARIANT: the checkpoint never points past data that is not durable on the target.
        self.target.commit().await?;
        let entry = Session {
            session_id: session.session_id.to_owned(),
            start_time: session.start_time.to_owned(),
            end_time: checkpoint::now_rfc3339(),
            start_last_seq: session.start_seq.clone(),
            end_last_seq: progress.done_seq.clone(),
            recorded_seq: progress.done_seq.clone(),
            missing_checked: progress.stats.missing_checked,
            missing_found: progress.stats.missing_found,
            docs_read: progress.stats.docs_read,
            docs_written: progress.stats.docs_written,
            doc_write_failures: progress.stats.doc_write_failures,
        };
        let previous = target_log
            .log
            .as_ref()
            .or(source_log.log.as_ref())
            .map(|l| l.history.clone())
            .unwrap_or_default();
        let mut history = vec![entry];
        history.extend(
            previous
                .into_iter()
                .filter(|s| s.session_id != session.session_id),
        );
        history.truncate(HISTORY_LIMIT);
        let log = ReplicationLog {
            session_id: session.session_id.to_owned(),
            source_last_seq: progress.done_seq.clone(),
            replication_id_version: 1,
            replicator: "settee".into(),
            history,
            doc_failures: progress.failures.clone(),
        };
        target_log
            .write(&self.target, session.rep_id, &log, false)
            .await?;
        source_log
            .write(&self.source, session.rep_id, &log, true)
            .await?;
        if self.source.is_local() {
            // A local source may flush on an interval: make its copy of the log durable too,
            // or a crash would leave only the target's and the next run would start over.
            self.source.commit().await?;
        }
        progress.checkpointed_seq = Some(progress.done_seq.clone());
        if self.source.is_local() {
            self.refresh_pending(progress).await;
        }
        tracing::info!(seq = %progress.done_seq, "checkpoint written");
        ctx.emit(Event::Checkpoint {
            direction: ctx.direction,
            seq: progress.done_seq.clone(),
        })
        .await;
        Ok(())
    }
}

struct SessionMeta<'a> {
    rep_id: &'a str,
    session_id: &'a str,
    start_time: &'a str,
    start_seq: &'a Seq,
}

fn add(total: &mut Stats, d: &Stats) {
    total.changes_read += d.changes_read;
    total.missing_checked += d.missing_checked;
    total.missing_found += d.missing_found;
    total.docs_read += d.docs_read;
    total.docs_written += d.docs_written;
    total.doc_write_failures += d.doc_write_failures;
}

fn new_session_id() -> String {
    use rand::Rng;
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}

/// The event sink of one run.
struct Ctx {
    events: Option<mpsc::Sender<Event>>,
    direction: Direction,
}

impl Ctx {
    async fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            // A closed receiver means nobody listens: that is fine.
            let _ = tx.send(event).await;
        }
    }

    fn emit_change(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }

    async fn error(&self, e: &Error, retrying: bool, delay: Option<Duration>) {
        self.emit(Event::Error {
            direction: self.direction,
            message: error_chain(e),
            name: e.name().to_owned(),
            retrying,
            retry_in_ms: delay.map(|d| d.as_millis() as u64),
        })
        .await;
    }
}

/// An error and its sources on one line (`a: b: c`), as events and the CLI show errors.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
