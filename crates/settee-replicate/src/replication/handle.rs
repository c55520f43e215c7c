//! A replication running in the background ([`ReplicationHandle`]): its events as a
//! stream, and stopping it (dropping the handle does too, after a final checkpoint).

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Replication;
use crate::events::{Event, Summary};
use crate::peer::Peer;
use crate::retry::RetryNow;
use crate::{Error, Result};

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

impl<S: Peer, T: Peer> Replication<S, T> {
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
}
