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
//!
//! Fetched documents are bounded in bytes as well as in number: the batches in flight share
//! a [`ByteBudget`] of `max_bytes_in_flight`. A session whose checkpoint document vanished or
//! changed under it ([`Error::CheckpointLost`]: a peer deleted and recreated) starts a new
//! session from the checkpoints both peers still share.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use settee_revtree::{Rev, RevsDiff, Seq};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::checkpoint::{self, LogSlot, ReplicationLog, Session, HISTORY_LIMIT};
use crate::deadline::Deadline;
use crate::events::{Direction, Event, Stats, Summary};
use crate::fetch::FetchQueue;
use crate::peer::{ChangesBatch, DocFailure, FetchRequest, Filter, Peer, Role};
use crate::reader::{ChangesReader, Item};
use crate::retry::{self, RetryNow};
use crate::{Error, Result, RetryPolicy};

/// How a replication runs. Build with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct ReplicateOptions {
    /// Changes rows per batch (CouchDB's `worker_batch_size` is 500, PouchDB's 100).
    pub batch_size: usize,
    /// Batches diffed, fetched and written at once; bounds memory at about
    /// `batch_size * batches_in_flight` documents, and at `max_bytes_in_flight` bytes.
    pub batches_in_flight: usize,
    /// The most bytes of fetched documents held at once across the batches in flight (each
    /// batch's fetch reads at most an equal share, and asks for fewer revisions when an
    /// answer does not fit). A single revision larger than a share is fetched alone, holding
    /// the whole budget. Writing a fetch sends its documents again as one request body, so
    /// the peak is about twice this.
    pub max_bytes_in_flight: u64,
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
    /// Cuts the wait before a retry short ([`RetryNow::trigger`]). Replications started
    /// with clones of these options share it; [`ReplicationHandle::retry_now`] calls it.
    pub retry_now: RetryNow,
    /// Stop after this long (from the start of the run), cleanly: what is written is
    /// checkpointed, the summary says [`Summary::deadline_reached`] and what is left, and
    /// the next run resumes from the checkpoint. For background tasks that get a few
    /// seconds (mobile operating systems give about 30). `None`: no deadline.
    pub deadline: Option<Duration>,
    /// Label for events (a sync runs a push and a pull).
    pub direction: Direction,
    /// Revisions fetched and written per request within a batch (bounds memory when
    /// documents carry attachments). The default, 500, fetches a default batch with one
    /// `_bulk_get` and writes it with one `_bulk_docs` (a local store writes it in batches
    /// of 100, see `peer_store.rs`): fewer, larger requests cost the client about a third
    /// less CPU than chunks of 100 did.
    pub fetch_chunk: usize,
    /// Confirm each write to a remote target with a `_revs_diff` of what was written
    /// (default true). With `new_edits=false` CouchDB answers only refusals, so without it a
    /// refusal lost on the way reads as a success and the document looks synced while the
    /// server lacks it. It costs the server about a fifth more work on a push
    /// (`docs/benchmarks.md`); `false` trusts the answer, as CouchDB's and PouchDB's
    /// replicators do.
    pub confirm_writes: bool,
}

impl Default for ReplicateOptions {
    fn default() -> ReplicateOptions {
        ReplicateOptions {
            batch_size: 500,
            batches_in_flight: 4,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
            continuous: false,
            create_target: false,
            filter: Filter::All,
            since: None,
            checkpoint_interval: Duration::from_secs(5),
            longpoll: Duration::from_secs(25),
            retry: RetryPolicy::REPLICATION,
            retry_now: RetryNow::default(),
            deadline: None,
            direction: Direction::Push,
            fetch_chunk: 500,
            confirm_writes: true,
        }
    }
}

/// The default of [`ReplicateOptions::max_bytes_in_flight`]: 64 MiB.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = 64 << 20;

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
    /// Bytes of fetched documents not yet written, shared by the batches in flight.
    budget: Arc<ByteBudget>,
}

/// A replication running in the background: its events (also as a [`futures::Stream`]),
/// and a way to stop it. Dropping the handle stops the replication, which writes a final
/// checkpoint of what is done first (on the runtime it was spawned on).
#[derive(Debug)]
pub struct ReplicationHandle {
    events: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    retry_now: RetryNow,
    /// `None` once [`ReplicationHandle::finish`] has taken it.
    task: Option<tokio::task::JoinHandle<Result<Summary>>>,
}

impl Drop for ReplicationHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cancel.cancel();
        }
    }
}

impl futures::Stream for ReplicationHandle {
    type Item = Event;

    /// The next event; the stream ends once the replication has ended and every event was
    /// read.
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
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

    /// Cuts short the wait before a retry, if the replication is waiting: it retries its
    /// failed step at once (a server's `Retry-After` still holds). For an application that
    /// learns from the operating system that the network is back. Returns whether it was
    /// waiting. See [`RetryNow`].
    pub fn retry_now(&self) -> bool {
        self.retry_now.trigger()
    }

    /// Waits for the end, discarding events not yet read.
    ///
    /// # Errors
    /// The replication's error, or [`Error::Task`] if its task panicked.
    pub async fn finish(mut self) -> Result<Summary> {
        self.events.close();
        while self.events.recv().await.is_some() {}
        match self.task.take() {
            Some(task) => task.await.map_err(|e| Error::Task(e.to_string()))?,
            None => Err(Error::Task("the replication was already finished".into())),
        }
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
    /// Steps taken (batches written, idle points reached) this session: a failure after a
    /// step is not consecutive with the failure before it.
    steps: u64,
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

impl Progress {
    /// Starts (or restarts) from a session's start: nothing of it is done yet. Counters and
    /// failures stay: they are the run's.
    fn begin(&mut self, session: &SessionMeta, since_given: bool, target_empty: bool) {
        self.done_seq = session.start_seq.clone();
        // The start is where the checkpoints already are, unless it came from `since`.
        self.checkpointed_seq =
            (!since_given && !session.start_seq.is_zero()).then(|| session.start_seq.clone());
        self.pending_base = None;
        self.read_since_base = 0;
        self.initial_load.store(target_empty, Ordering::Relaxed);
    }
}

/// At most this many failed documents are kept in a checkpoint (all are in events).
const MAX_RECORDED_FAILURES: usize = 1000;

struct Processed {
    last_seq: Seq,
    pending: Option<u64>,
    delta: Stats,
    failures: Vec<DocFailure>,
}

enum Outcome {
    Processed(Processed),
    Idle(Seq),
    Skip(Seq),
}

impl<S: Peer, T: Peer> Replication<S, T> {
    /// A replication with these options; nothing happens until it runs.
    pub fn new(source: S, target: T, opts: ReplicateOptions) -> Replication<S, T> {
        let budget = Arc::new(ByteBudget::new(
            opts.max_bytes_in_flight,
            opts.batches_in_flight,
            opts.fetch_chunk,
        ));
        Replication {
            source,
            target,
            opts,
            budget,
        }
    }

    /// The replication id: the name of its checkpoint documents (`_local/<id>`). For a
    /// filter function it includes the function's code, read from the source.
    ///
    /// # Errors
    /// As [`crate::replication_id_of`].
    pub async fn replication_id(&self) -> Result<String> {
        checkpoint::replication_id_of(&self.source, &self.target, &self.opts.filter).await
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
        let retry_now = self.opts.retry_now.clone();
        let task = tokio::spawn(async move { self.run_with(Some(tx), token).await });
        ReplicationHandle {
            events: rx,
            cancel,
            retry_now,
            task: Some(task),
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
        // The deadline stops the run as a cancellation does (a final checkpoint of what is
        // written); `deadline.reached()` tells the two apart.
        let deadline = Deadline::start(self.opts.deadline, &cancel);
        let cancel = deadline.token();
        let start_time = checkpoint::now_rfc3339();
        ctx.emit(Event::Active {
            direction: ctx.direction,
        })
        .await;

        let mut failures = 0u32;
        let Some(start) = self
            .start_with_retry(&ctx, &mut failures, &cancel, &start_time)
            .await?
        else {
            return Err(match (deadline.reached(), self.opts.deadline) {
                (true, Some(after)) => {
                    let e = Error::Deadline { after };
                    ctx.error(&e, false, None).await;
                    e
                }
                _ => Error::Cancelled,
            });
        };
        let Start {
            mut session,
            mut source_log,
            mut target_log,
            target_empty,
        } = start;
        tracing::info!(rep_id = %session.rep_id, since = %session.start_seq, "replication starting");

        let mut progress = Progress {
            stats: Stats::default(),
            done_seq: session.start_seq.clone(),
            checkpointed_seq: None,
            failures: Vec::new(),
            last_checkpoint: Instant::now(),
            paused: false,
            steps: 0,
            pending_base: None,
            read_since_base: 0,
            initial_load: Arc::new(AtomicBool::new(target_empty)),
        };
        progress.begin(&session, self.opts.since.is_some(), target_empty);
        self.retry_failures(&ctx, &mut progress, &session.start_seq)
            .await;

        let mut failures = 0u32;
        let result = loop {
            let steps_before = progress.steps;
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
                    // Failures are counted while they are consecutive: a step that succeeded
                    // since the last one starts the count again, so a long run survives
                    // scattered errors and gives up only on a failure that persists.
                    if progress.steps != steps_before {
                        failures = 0;
                    }
                    let lost = matches!(e, Error::CheckpointLost { .. });
                    if let Err(stop) = self.retry_or_stop(&ctx, e, &mut failures, &cancel).await {
                        break Err(stop);
                    }
                    if lost {
                        // A peer is not the database the session began with: what the session
                        // did may be gone. A new session starts from what both logs share.
                        match self
                            .start_with_retry(&ctx, &mut failures, &cancel, &start_time)
                            .await
                        {
                            Ok(Some(start)) => {
                                session = start.session;
                                source_log = start.source_log;
                                target_log = start.target_log;
                                progress.begin(
                                    &session,
                                    self.opts.since.is_some(),
                                    start.target_empty,
                                );
                                tracing::info!(rep_id = %session.rep_id, since = %session.start_seq, "replication restarting");
                            }
                            Ok(None) => break Err(Error::Cancelled),
                            Err(e) => break Err(e),
                        }
                    }
                    // The failure ended the caught-up pause the last `Paused` reported: when
                    // the retry catches up again, report `Paused` again, or a caller would
                    // never learn that a direction with nothing to replicate is back.
                    progress.paused = false;
                }
            }
        };

        // Final checkpoint of what is done, whatever happened. After a clean run it is a step
        // like any other, retried on transient failures (a cut connection must not fail a
        // run whose data is all written); after a failure or a cancellation, one attempt.
        let mut cancelled = matches!(result, Err(Error::Cancelled)) || cancel.is_cancelled();
        let mut failures = 0u32;
        let final_cp = loop {
            let r = self
                .checkpoint(
                    &ctx,
                    &session,
                    &mut progress,
                    &mut source_log,
                    &mut target_log,
                    true,
                )
                .await;
            match r {
                Err(e) if result.is_ok() && !cancelled => {
                    match self.retry_or_stop(&ctx, e, &mut failures, &cancel).await {
                        Ok(()) => {}
                        Err(Error::Cancelled) => {
                            cancelled = true;
                            break Ok(());
                        }
                        Err(stop) => break Err(stop),
                    }
                }
                r => break r,
            }
        };
        let deadline_reached = deadline.reached();
        let pending = if deadline_reached {
            self.source.pending_since(&progress.done_seq).await
        } else {
            None
        };
        let summary = Summary {
            ok: result.is_ok() || cancelled,
            session_id: session.session_id.clone(),
            replication_id: session.rep_id.clone(),
            start_last_seq: session.start_seq.clone(),
            end_last_seq: progress.done_seq.clone(),
            start_time,
            end_time: checkpoint::now_rfc3339(),
            stats: progress.stats.clone(),
            doc_failures: progress.failures.clone(),
            cancelled: cancelled && !deadline_reached,
            deadline_reached,
            pending,
        };
        match result {
            Err(e) if !cancelled => {
                ctx.error(&e, false, None).await;
                Err(e)
            }
            _ => {
                if let Err(e) = final_cp {
                    ctx.error(&e, false, None).await;
                    return Err(e);
                }
                if !cancelled {
                    self.record_caught_up().await;
                }
                if deadline_reached {
                    tracing::info!(docs_written = summary.stats.docs_written, pending = ?summary.pending,
                        "replication stopped at its deadline");
                } else {
                    tracing::info!(
                        docs_written = summary.stats.docs_written,
                        "replication complete"
                    );
                }
                ctx.emit(Event::Complete {
                    direction: ctx.direction,
                    summary: summary.clone(),
                })
                .await;
                Ok(summary)
            }
        }
    }

    /// Tells both peers that this replication has caught up (`Peer::caught_up`). What they
    /// record is informational (when a sync last completed), so a failure is logged, not
    /// fatal: the data and the checkpoint are already written.
    async fn record_caught_up(&self) {
        let at = checkpoint::now_rfc3339();
        let (sid, tid) = (self.source.identity(), self.target.identity());
        let (s, t) = futures::join!(
            self.source.caught_up(&tid, Role::Source, &at),
            self.target.caught_up(&sid, Role::Target, &at)
        );
        for e in [s, t].into_iter().filter_map(Result::err) {
            tracing::warn!(error = %error_chain(&e), "could not record when the replication caught up");
        }
    }

    /// [`Replication::start`], retrying transient failures like any step (`failures` counts
    /// them as [`Replication::retry_or_stop`] does); `None` when cancelled.
    async fn start_with_retry(
        &self,
        ctx: &Ctx,
        failures: &mut u32,
        cancel: &CancellationToken,
        start_time: &str,
    ) -> Result<Option<Start>> {
        loop {
            let started = tokio::select! {
                r = self.start(start_time) => r,
                () = cancel.cancelled() => return Ok(None),
            };
            match started {
                Ok(start) => return Ok(Some(start)),
                Err(e) => match self.retry_or_stop(ctx, e, failures, cancel).await {
                    Ok(()) => {}
                    Err(Error::Cancelled) => return Ok(None),
                    Err(e) => {
                        ctx.error(&e, false, None).await;
                        return Err(e);
                    }
                },
            }
        }
    }

    /// After a failed step: returns `Ok(())` once the backoff delay has passed and the step
    /// should run again, or the error to end with: `e` itself when it is not transient,
    /// [`Error::GaveUp`] when a one-shot run has now failed `retry.attempts()` times in a row
    /// (`failures` counts them; the caller resets it after a step that succeeded), and
    /// [`Error::Cancelled`] when cancelled while waiting. A retry is reported as one
    /// `Error` event with `retrying: true`.
    async fn retry_or_stop(
        &self,
        ctx: &Ctx,
        e: Error,
        failures: &mut u32,
        cancel: &CancellationToken,
    ) -> Result<()> {
        if !e.is_transient() {
            return Err(e);
        }
        let ticket = self.opts.retry_now.ticket();
        *failures = failures.saturating_add(1);
        let attempts = self.opts.retry.attempts();
        if !self.opts.continuous && *failures >= attempts {
            return Err(Error::GaveUp {
                attempts: *failures,
                source: Box::new(e),
            });
        }
        // The wait, and what may end it early, is `retry.rs`'s: a probe after a
        // connection-level failure (not an attempt: `failures` counts steps only), the
        // server's Retry-After after a server error, `RetryNow`.
        let plan = retry::Plan::new(&self.opts.retry, *failures - 1, retry::Failure::of(&e));
        tracing::warn!(error = %error_chain(&e), retry_in = ?plan.delay, probing = plan.probe, "replication step failed; retrying");
        ctx.error(&e, true, Some(plan.delay)).await;
        ctx.emit(Event::Paused {
            direction: ctx.direction,
            pending: None,
        })
        .await;
        let probe = || async {
            let answers = |r: Result<()>| r.map_or_else(|e| !e.is_transient(), |()| true);
            let (s, t) = futures::join!(self.source.probe(), self.target.probe());
            answers(s) && answers(t)
        };
        match retry::wait(&plan, probe, ticket, cancel).await {
            None => Err(Error::Cancelled),
            Some(reason) => {
                tracing::info!(?reason, "retrying the failed step");
                ctx.emit(Event::Retrying {
                    direction: ctx.direction,
                    reason,
                })
                .await;
                Ok(())
            }
        }
    }

    /// Begins a session: verifies both peers (creating the target if asked), computes the
    /// replication id, reads both checkpoints, claims them (see [`LogSlot::claim`]; this is
    /// also where a read-only source shows), and finds where to start.
    async fn start(&self, start_time: &str) -> Result<Start> {
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
        let target_empty = target.doc_count == 0 && target.doc_del_count == 0;
        if let Filter::Named { .. } = self.opts.filter {
            if self.source.is_local() {
                return Err(Error::BadRequest {
                    reason: "a named filter function runs only on a remote source; use a selector or doc_ids for a local one".into(),
                });
            }
        }
        let rep_id = self.replication_id().await?;
        // Sync state: each peer learns who is at the other end before its checkpoint is read
        // (a local store may drop a checkpoint older than its sync state; see track_peer).
        let filter = &self.opts.filter;
        let (sid, tid) = (self.source.identity(), self.target.identity());
        self.source
            .track_peer(&tid, Role::Source, filter, &rep_id)
            .await?;
        self.target
            .track_peer(&sid, Role::Target, filter, &rep_id)
            .await?;
        // A target with no documents holds nothing, whatever the source's sync state recorded
        // (a database dropped and recreated, a new server under the old URL): the state is a
        // cache of what the remote holds, and the remote has the last word. Only the pushing
        // side says so: in a sync, a pull that found the remote empty could otherwise undo
        // confirmations the push had made meanwhile.
        if target_empty {
            self.source.peer_holds_nothing(&tid).await?;
        }
        let (s, t) = futures::join!(
            LogSlot::read(&self.source, &rep_id),
            LogSlot::read(&self.target, &rep_id)
        );
        let (mut source_log, mut target_log) = (s?, t?);
        let session_id = new_session_id();
        target_log
            .claim(&self.target, &rep_id, &session_id, false)
            .await?;
        source_log
            .claim(&self.source, &rep_id, &session_id, true)
            .await?;
        let start_seq = checkpoint::start_seq(self.opts.since.as_ref(), &source_log, &target_log);
        Ok(Start {
            session: SessionMeta {
                rep_id,
                session_id,
                start_time: start_time.to_owned(),
                start_seq,
            },
            source_log,
            target_log,
            target_empty,
        })
    }

    /// One attempt of the pipeline, from `progress.done_seq`, until caught up (one-shot),
    /// cancelled, or failed.
    async fn pump(
        &self,
        ctx: &Ctx,
        session: &SessionMeta,
        progress: &mut Progress,
        source_log: &mut LogSlot,
        target_log: &mut LogSlot,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let reader = ChangesReader::new(
            self.source.clone(),
            self.opts.filter.clone(),
            self.opts.batch_size,
            self.opts.continuous,
            self.opts.longpoll,
            progress.done_seq.clone(),
        )
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
                    });
                    if progress.last_checkpoint.elapsed() >= self.opts.checkpoint_interval {
                        self.checkpoint(ctx, session, progress, source_log, target_log, false)
                            .await?;
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
                    self.checkpoint(ctx, session, progress, source_log, target_log, false)
                        .await?;
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
        let mut queue = FetchQueue::new(reqs);
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
        self.record_sync_state(&source_id, listed, missing, &failures)
            .await?;
        Ok(Processed {
            last_seq: batch.last_seq,
            pending: batch.pending,
            delta,
            failures,
        })
    }

    /// `_revs_diff` on the target, checked: an answer leaves out what the target holds, so a
    /// row lost on the way (a proxy, a cut answer sent again) would make revisions look held,
    /// and the checkpoint would move past them unsent. Revisions left out that the source
    /// records as not held there are asked about once more, and only a second answer that
    /// leaves them out too is believed. What the source already knows the target holds (the
    /// echo of a pull, in a sync) costs nothing more.
    async fn diff_checked(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        let mut diff = self.target.revs_diff(revs.clone()).await?;
        let omitted: BTreeMap<String, Vec<Rev>> = revs
            .into_iter()
            .filter_map(|(id, listed)| {
                let said = diff.get(&id).map(|d| &d.missing);
                let left_out: Vec<Rev> = listed
                    .into_iter()
                    .filter(|r| said.is_none_or(|m| !m.contains(r)))
                    .collect();
                (!left_out.is_empty()).then_some((id, left_out))
            })
            .collect();
        if omitted.is_empty() {
            return Ok(diff);
        }
        let doubtful = self
            .source
            .not_held_by(&self.target.identity(), omitted)
            .await?;
        if doubtful.is_empty() {
            return Ok(diff);
        }
        tracing::debug!(
            documents = doubtful.len(),
            "_revs_diff left out revisions the target is not known to hold; asking again"
        );
        for (id, again) in self.target.revs_diff(doubtful).await? {
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
        Ok(diff)
    }

    /// Tells both peers what the other holds after a batch (`Peer::record_peer_revs`): the
    /// target holds every listed revision except those of documents it refused (it had
    /// them, or took them); the source holds every listed revision, and the target only
    /// needs telling about the ones it did not just take from it (`Peer::write` recorded
    /// those with the data).
    async fn record_sync_state(
        &self,
        source_id: &str,
        listed: BTreeMap<String, Vec<Rev>>,
        missing: BTreeMap<String, Vec<Rev>>,
        failures: &[DocFailure],
    ) -> Result<()> {
        let mut on_target = BTreeMap::new();
        let mut on_source = BTreeMap::new();
        let listed_ids: Vec<String> = listed.keys().cloned().collect();
        for (id, revs) in listed {
            let missing = missing.get(&id);
            let refused = failures.iter().any(|f| f.id == id);
            let had: Vec<Rev> = revs
                .iter()
                .filter(|r| missing.is_none_or(|m| !m.contains(r)))
                .cloned()
                .collect();
            if !had.is_empty() {
                on_source.insert(id.clone(), had.clone());
            }
            let held = if refused { had } else { revs };
            if !held.is_empty() {
                on_target.insert(id, held);
            }
        }
        // pouchdb-server (and a store refusing a pulled document) names no `rev` in a
        // refusal: the refused revision is then the one this batch sent for the document
        // (the highest, if it sent several).
        let refusals: Vec<DocFailure> = failures
            .iter()
            .map(|f| {
                let mut f = f.clone();
                if f.rev.is_none() {
                    f.rev = missing
                        .get(&f.id)
                        .and_then(|m| m.iter().max())
                        .map(ToString::to_string);
                }
                f
            })
            .collect();
        self.source
            .record_peer_revs(&self.target.identity(), on_target, refusals.clone())
            .await?;
        self.target
            .record_peer_revs(source_id, on_source, Vec::new())
            .await?;
        // What this batch could not take from the source stays part of the target's sync
        // state with it (listed, counted, tried again by the next session).
        self.target
            .record_failures_from(source_id, listed_ids, refusals)
            .await
    }

    /// Asks again, first thing in a session, for the revisions earlier runs could not write
    /// to the target (`Peer::failures_from`: a pull's failures) and those the target refused
    /// (`Peer::refused_by`: a push's rejections; the target's rules may have changed): one
    /// batch through the usual diff, fetch and write, whose results replace what was kept. A revision that fails again stays
    /// listed; an error here is reported and left for the next session, never fatal.
    async fn retry_failures(&self, ctx: &Ctx, progress: &mut Progress, since: &Seq) {
        let (sid, tid) = (self.source.identity(), self.target.identity());
        let (failed, refused) = futures::join!(
            self.target.failures_from(&sid),
            self.source.refused_by(&tid)
        );
        let kept: Vec<DocFailure> = match (failed, refused) {
            (Ok(mut failed), Ok(refused)) => {
                failed.extend(refused);
                failed
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "could not read the failures to retry");
                return;
            }
        };
        if kept.is_empty() {
            return;
        }
        let mut changes: BTreeMap<String, crate::peer::Change> = BTreeMap::new();
        for f in kept {
            let change = changes
                .entry(f.id.clone())
                .or_insert_with(|| crate::peer::Change {
                    seq: since.clone(),
                    id: f.id.clone(),
                    changes: Vec::new(),
                    invalid_revs: Vec::new(),
                    deleted: false,
                    doc: None,
                });
            match f.rev.as_deref().map(str::parse::<Rev>) {
                Some(Ok(rev)) => change.changes.push(rev),
                Some(Err(_)) => change.invalid_revs.extend(f.rev),
                // No revision named: nothing to ask for; it stays listed as it was.
                None => {}
            }
        }
        tracing::info!(
            documents = changes.len(),
            "trying again what earlier runs could not write"
        );
        let batch = ChangesBatch {
            changes: changes.into_values().collect(),
            last_seq: since.clone(),
            pending: None,
        };
        match self.process(batch, false).await {
            Ok(p) => {
                add(&mut progress.stats, &p.delta);
                if progress.failures.len() < MAX_RECORDED_FAILURES {
                    progress.failures.extend(p.failures.iter().cloned());
                }
                ctx.emit_change(Event::Change {
                    direction: ctx.direction,
                    stats: progress.stats.clone(),
                    last_seq: progress.done_seq.clone(),
                    pending: None,
                    failures: p.failures,
                });
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "trying the earlier failures again failed; the next session tries again");
            }
        }
    }

    /// Makes the target durable, then records `progress.done_seq` on the target and the
    /// source. Skipped when nothing moved since the last checkpoint (unless `force`, which
    /// still skips if the sequence is unchanged and there are no new failures to record).
    async fn checkpoint(
        &self,
        ctx: &Ctx,
        session: &SessionMeta,
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
            session_id: session.session_id.clone(),
            start_time: session.start_time.clone(),
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
            session_id: session.session_id.clone(),
            source_last_seq: progress.done_seq.clone(),
            replication_id_version: 1,
            replicator: "settee".into(),
            history,
            doc_failures: progress.failures.clone(),
        };
        target_log
            .write(&self.target, &session.rep_id, &log, false)
            .await?;
        source_log
            .write(&self.source, &session.rep_id, &log, true)
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

/// One session: its replication id (recomputed when a session restarts, in case the filter
/// changed), its id, and where it started.
struct SessionMeta {
    rep_id: String,
    session_id: String,
    start_time: String,
    start_seq: Seq,
}

/// What [`Replication::start`] found.
struct Start {
    session: SessionMeta,
    source_log: LogSlot,
    target_log: LogSlot,
    /// The target had no documents, live or deleted.
    target_empty: bool,
}

fn add(total: &mut Stats, d: &Stats) {
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
            retry_in_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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
