//! The run loop: a session starts (peers verified, checkpoints read and claimed), the
//! pipeline runs until caught up, cancelled or failed, a transient failure is retried with
//! backoff (a lost checkpoint starts a new session), and whatever happened ends with a
//! final checkpoint, the summary and the `Complete` event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use settee_revtree::Seq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sink::{error_chain, Ctx};
use super::Replication;
use crate::checkpoint::{self, LogSlot, Logs};
use crate::deadline::Deadline;
use crate::events::{Event, Stats, Summary};
use crate::peer::{ChangesRequest, DocFailure, Filter, Peer, PeerInfo, Role};
use crate::retry;
use crate::{Error, Result};

/// Where the pipeline is, shared by the attempts of one session.
pub(super) struct Progress {
    pub(super) stats: Stats,
    /// Everything up to here is written to the target.
    pub(super) done_seq: Seq,
    /// What the last checkpoint recorded.
    pub(super) checkpointed_seq: Option<Seq>,
    pub(super) failures: Vec<DocFailure>,
    pub(super) last_checkpoint: Instant,
    pub(super) paused: bool,
    /// Steps taken (batches written, idle points reached) this session: a failure after a
    /// step is not consecutive with the failure before it.
    pub(super) steps: u64,
    /// A local source's exact pending count, taken now and then (counting reads the rest of
    /// its index, too slow to do per batch), and the rows read since.
    pub(super) pending_base: Option<u64>,
    pub(super) read_since_base: u64,
    /// The target had no documents (live or deleted) when this session began, and the
    /// first catch-up is not over: every revision read is missing there, so `_revs_diff` is
    /// skipped (see `process`). Cleared once caught up, after which other writers may have
    /// given the target anything.
    pub(super) initial_load: Arc<AtomicBool>,
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

impl<S: Peer, T: Peer> Replication<S, T> {
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
            mut logs,
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
                .pump(&ctx, &session, &mut progress, &mut logs, &cancel)
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
                                logs = start.logs;
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
                .checkpoint(&ctx, &session, &mut progress, &mut logs, true)
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
    pub(super) async fn record_caught_up(&self) {
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
                if e.kind() != settee_store::ErrorKind::NotFound {
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
        let target_empty = holds_nothing(&self.target, &target).await?;
        if let Filter::Named { .. } = self.opts.filter {
            if self.source.is_local() {
                return Err(Error::BadRequest {
                    reason: "a named filter function runs only on a remote source; use a selector or doc_ids for a local one".into(),
                });
            }
        }
        // Each peer learns its identity (a remote database asks its server's uuid) before
        // anything named by it is read: the replication id, the checkpoints, the sync state.
        let (s, t) = futures::join!(self.source.learn_identity(), self.target.learn_identity());
        s.and(t)?;
        let filter = &self.opts.filter;
        let (rep_id, old_rep_id) =
            checkpoint::replication_ids_of(&self.source, &self.target, filter).await?;
        let (sid, tid) = (self.source.identity(), self.target.identity());
        // A peer known by its address before (an older build, or a spelling of the URL not
        // used since the identity was learned): the other end moves what it kept under that
        // name to the identity, checkpoint included.
        if let Some(old) = &old_rep_id {
            let (saddr, taddr) = (self.source.address(), self.target.address());
            if tid != taddr {
                self.source.peer_renamed(&tid, &taddr, old, &rep_id).await?;
            }
            if sid != saddr {
                self.target.peer_renamed(&sid, &saddr, old, &rep_id).await?;
            }
        }
        // Sync state: each peer learns who is at the other end before its checkpoint is read
        // (a local store may drop a checkpoint older than its sync state; see track_peer).
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
            LogSlot::read_or_inherit(&self.source, &rep_id, old_rep_id.as_deref(), true),
            LogSlot::read_or_inherit(&self.target, &rep_id, old_rep_id.as_deref(), false)
        );
        let (mut source_log, mut target_log) = (s?, t?);
        let session_id = new_session_id();
        target_log.claim(&self.target, &session_id).await?;
        source_log.claim(&self.source, &session_id).await?;
        let start_seq = checkpoint::start_seq(self.opts.since.as_ref(), &source_log, &target_log);
        let logs = Logs {
            source: source_log,
            target: target_log,
        };
        Ok(Start {
            session: SessionMeta {
                rep_id,
                session_id,
                start_time: start_time.to_owned(),
                start_seq,
            },
            logs,
            target_empty,
        })
    }
}

/// One session: its replication id (recomputed when a session restarts, in case the filter
/// changed), its id, and where it started.
pub(super) struct SessionMeta {
    pub(super) rep_id: String,
    pub(super) session_id: String,
    pub(super) start_time: String,
    pub(super) start_seq: Seq,
}

/// What [`Replication::start`] found.
struct Start {
    session: SessionMeta,
    logs: Logs,
    /// The target had no documents, live or deleted.
    target_empty: bool,
}

/// Whether `peer` (described by `info`) holds no document, live or deleted. Its counts
/// alone do not tell: pouchdb-server sends no `doc_del_count` (read as 0), so a database of
/// deletions alone looks empty there. Taken for empty, such a target had its sync state
/// reset (`Peer::peer_holds_nothing`) while the push resumed from its checkpoint, past the
/// deletions, which then stayed unpushed for good. When the counts say empty, the peer's
/// changes feed decides: one row asked for, and only then.
async fn holds_nothing<P: Peer>(peer: &P, info: &PeerInfo) -> Result<bool> {
    if info.doc_count != 0 || info.doc_del_count != 0 {
        return Ok(false);
    }
    let first = peer
        .changes(&ChangesRequest {
            since: Seq::zero(),
            limit: 1,
            filter: Filter::All,
            wait: None,
        })
        .await?;
    Ok(first.changes.is_empty())
}

fn new_session_id() -> String {
    use rand::Rng;
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}
