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
//! changed under it ([`crate::Error::CheckpointLost`]: a peer deleted and recreated) starts a new
//! session from the checkpoints both peers still share.
//!
//! This module holds the options, the [`Replication`] and how to start one; the work is in
//! `run` (the run loop: sessions, retries, the final checkpoint and summary), `pipeline`
//! (batches read, diffed, fetched and written), `sync_state` (what each batch tells both
//! peers about the other, and the failures earlier runs kept), `checkpointing` (how a
//! checkpoint is written), `handle` (a replication running in the background) and
//! `sink` (the events of one run).

use std::sync::Arc;
use std::time::Duration;

use settee_revtree::Seq;
use tokio_util::sync::CancellationToken;

use crate::budget::ByteBudget;
use crate::checkpoint;
use crate::events::{Direction, Summary};
use crate::peer::{Filter, Peer};
use crate::retry::RetryNow;
use crate::{Result, RetryPolicy};

mod checkpointing;
mod handle;
mod pipeline;
mod run;
mod sink;
mod sync_state;

pub use handle::ReplicationHandle;
pub use sink::error_chain;

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
    /// A one-shot run's last read waits for this (see [`Replication::last_read_after`]).
    last_read_after: Option<CancellationToken>,
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
            last_read_after: None,
        }
    }

    /// A one-shot run ends on an empty page of the source's changes read after `writes_done`
    /// fired: the pull of a sync is given its push's end. A source whose `_changes` is no
    /// snapshot (pouchdb-server reads sequences from a snapshot and documents as they are
    /// now) leaves out a document that is written while it reads, old revisions and all;
    /// its new sequence comes later, but when that read was the run's last, the run ended
    /// without it, and a revision the remote held before the sync began stayed unpulled.
    /// A last page read while the push still wrote is read once more after it ends.
    pub(crate) fn last_read_after(mut self, writes_done: CancellationToken) -> Self {
        self.last_read_after = Some(writes_done);
        self
    }

    /// The replication id: the name of its checkpoint documents (`_local/<id>`), as a run
    /// computes it: the peers learn their identities first ([`Peer::learn_identity`]: a
    /// remote database asks its server's uuid). For a filter function it includes the
    /// function's code, read from the source.
    ///
    /// # Errors
    /// The peers' errors learning their identities; as [`crate::replication_id_of`].
    pub async fn replication_id(&self) -> Result<String> {
        let (s, t) = futures::join!(self.source.learn_identity(), self.target.learn_identity());
        s.and(t)?;
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
}
