//! [`Database::sync_state_changes`]: a live stream of the documents whose sync state with a
//! remote may have changed, read from the queue its [`Watch`] keeps.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;

use super::watchers::{lock, Watch, WatchQueue};
use super::SyncState;
use crate::{Database, Result};

/// The stream [`Database::sync_state_changes`] returns.
pub(super) struct StateChanges {
    pub(super) db: Database,
    pub(super) watch: Arc<Watch>,
}

impl Drop for StateChanges {
    fn drop(&mut self) {
        self.db.inner.watchers.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Stream for StateChanges {
    type Item = Result<(String, Option<SyncState>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let id = {
            let mut q = lock(&self.watch.queue);
            match q.ids.pop_front() {
                Some(id) => {
                    q.queued.remove(&id);
                    id
                }
                None => {
                    q.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        // Read after the id was taken off the queue: a write after this read queues it again.
        // By the name the remote has now: the stream may have begun under an address whose
        // identity was learned since (`aliases.rs`).
        let remote = self.db.resolve_remote(&self.watch.remote);
        let state = self.db.sync_state(&remote, &id);
        Poll::Ready(Some(state.map(|s| (id, s))))
    }
}

impl Database {
    /// A live stream of sync-state changes with remote `name`: each item is a document whose
    /// state may have changed (written here, confirmed or refused by the remote, purged) and
    /// its state when the item is read (`None` once the document is gone). Coalesced: a
    /// document that changed several times before the stream was polled comes once, with its
    /// latest state. Starts with the changes after the call; read
    /// [`Database::unsynced`] for the state before. A change of a sync's filter is not an
    /// item. Dropping the stream unsubscribes.
    ///
    /// ```
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let mut changes = db.sync_state_changes("http://couch/db");
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let (id, state) = futures::executor::block_on(changes.next()).unwrap()?;
    /// assert_eq!((id.as_str(), state.unwrap().name()), ("a", "unpushed"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync_state_changes(
        &self,
        remote: &str,
    ) -> impl Stream<Item = Result<(String, Option<SyncState>)>> + Send + 'static {
        let watch = Arc::new(Watch {
            remote: remote.to_owned(),
            queue: Mutex::new(WatchQueue::default()),
        });
        let watchers = &self.inner.watchers;
        watchers.active.fetch_add(1, Ordering::SeqCst);
        lock(&watchers.list).push(Arc::downgrade(&watch));
        StateChanges {
            db: self.clone(),
            watch,
        }
    }
}
