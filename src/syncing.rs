//! The one way an application syncs: [`Local::sync`] runs a push and a pull with a
//! [`crate::Remote`] in the background and gives a [`Syncing`] handle, a [`Stream`] of their
//! events; dropping the handle stops both, each writing a final checkpoint first.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use settee_replicate::{Event, ReplicateOptions, RetryNow, SyncSummary};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Error, Local, Remote, Result};

/// Events are buffered this deep (as a single replication's are): a reader that falls
/// behind only loses intermediate progress reports.
const EVENT_BUFFER: usize = 256;

/// A sync (push and pull) running in the background. A stream of both directions' events;
/// dropping it stops both, each writing its final checkpoint.
///
/// ```no_run
/// # async fn demo() -> Result<(), settee::Error> {
/// use futures::StreamExt;
/// let notes = settee::Local::open("notes.settee")?;
/// let server = settee::Remote::builder("http://127.0.0.1:5984/notes")
///     .credentials("alice", "secret")
///     .build()?;
/// // One-shot: the events end when both directions are done.
/// let mut sync: settee::Syncing = notes.sync(&server, Default::default());
/// while let Some(event) = sync.next().await {
///     println!("{event:?}");
/// }
/// let summary = sync.finish().await?;
/// println!("pushed {}, pulled {}", summary.push.stats.docs_written, summary.pull.stats.docs_written);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Syncing {
    events: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    /// Shared by both directions (they run with clones of one `ReplicateOptions`).
    retry_now: RetryNow,
    task: Option<tokio::task::JoinHandle<settee_replicate::Result<SyncSummary>>>,
}

impl Stream for Syncing {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Syncing {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cancel.cancel();
        }
    }
}

impl Syncing {
    /// Asks both directions to stop (each writes a final checkpoint).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cuts short the wait before a retry of either direction, if one is waiting: it retries
    /// at once (a server's `Retry-After` still holds). For an app that learns from the
    /// operating system that the network is back, or a "Sync now" button. Returns whether a
    /// direction was waiting. See [`RetryNow`].
    pub fn retry_now(&self) -> bool {
        self.retry_now.trigger()
    }

    /// Waits for the end (after [`Syncing::cancel`], or a one-shot sync's completion),
    /// discarding events not yet read.
    ///
    /// # Errors
    /// The sync's error.
    pub async fn finish(mut self) -> Result<SyncSummary> {
        self.events.close();
        while self.events.recv().await.is_some() {}
        match self.task.take() {
            Some(task) => Ok(task.await.map_err(|e| Error::Task(e.to_string()))??),
            None => Err(Error::Task("the sync was already finished".into())),
        }
    }
}

impl Local {
    /// Syncs this store with `remote` in the background (on the current tokio runtime): a
    /// push and a pull together, one-shot or live (`opts.continuous`), each resuming from
    /// its checkpoint. The handle is a stream of both directions' events ([`Event`]: which
    /// documents each batch carried, progress, errors and retries, completion); dropping
    /// it stops both after their final checkpoints; [`Syncing::finish`] waits for the end.
    ///
    /// Retries are the same whatever the options: a failure that retrying can fix (the
    /// server unreachable or busy) is retried `opts.retry` times by a one-shot sync, with
    /// `create_target` or without, and for ever by a live one, which carries on by itself
    /// when the server is back ([`Syncing::retry_now`] cuts a wait short).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), settee::Error> {
    /// use futures::StreamExt;
    /// let local = settee::Local::open("notes.settee")?;
    /// let server = settee::Remote::builder("http://127.0.0.1:5984/notes")
    ///     .credentials("alice", "secret")
    ///     .build()?;
    /// let mut sync = local.sync(&server, settee::ReplicateOptions { continuous: true, ..Default::default() });
    /// while let Some(event) = sync.next().await {
    ///     if let settee::Event::Change { ids, .. } = &event {
    ///         println!("synced {ids:?}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sync(&self, remote: &Remote, opts: ReplicateOptions) -> Syncing {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let cancel = CancellationToken::new();
        let (local, remote, token) = (self.to_peer(), remote.to_peer(), cancel.clone());
        let retry_now = opts.retry_now.clone();
        let task = tokio::spawn(async move {
            settee_replicate::sync(local, remote, opts, Some(tx), token).await
        });
        Syncing {
            events: rx,
            cancel,
            retry_now,
            task: Some(task),
        }
    }
}
