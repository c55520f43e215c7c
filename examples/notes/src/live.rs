//! Live updates for the pages: a broadcast of what changed (notes written locally or
//! pulled from the server; the sync state and badges), and the task that follows the local
//! store's changes feed to produce the first kind. `api.rs` turns a subscription into a
//! server-sent events stream; `sync.rs` publishes the second kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use settee::{ChangesFeed, Documents, Local, Seq};
use tokio::sync::{broadcast, Notify};

use crate::note::ID_PREFIX;
use crate::state::{Badge, Tracker};
use crate::sync::SyncView;

/// Updates buffered per page. A page that falls further behind (a stalled tab) is told to
/// reload everything instead (`resync`), so the buffer only bounds memory.
const UPDATES_BUFFER: usize = 256;

/// How many changes of the store one update carries at most (a pull of thousands of notes
/// becomes a few updates, not thousands).
const CHANGES_PER_UPDATE: usize = 500;

/// One update for the pages.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// These notes changed in the local store (edited here, pulled, deleted).
    Changes {
        /// Their ids.
        ids: Vec<String>,
    },
    /// The sync state, and the badges that changed since the last such update.
    Sync {
        /// The global state.
        sync: SyncView,
        /// Changed badges by note id (a note that became synced is listed as synced).
        badges: BTreeMap<String, Badge>,
        /// `badges` is every note that is not synced, not a change: a page's first update.
        full: bool,
    },
}

impl Update {
    /// The server-sent event's name.
    pub fn event_name(&self) -> &'static str {
        match self {
            Update::Changes { .. } => "changes",
            Update::Sync { .. } => "sync",
        }
    }
}

/// Where updates are published; pages subscribe.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Update>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            tx: broadcast::channel(UPDATES_BUFFER).0,
        }
    }
}

impl Hub {
    /// Publishes an update (dropped when no page listens).
    pub fn send(&self, update: Update) {
        let _ = self.tx.send(update);
    }

    /// A page's subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.tx.subscribe()
    }
}

/// Follows the store's changes after `since`: tells the tracker (conflicts), the pages
/// (which notes changed) and `changed` (the sync publisher recomputes badges). Runs until
/// the store's feed ends.
pub(crate) async fn watch_store(
    db: Local,
    since: u64,
    tracker: Arc<Tracker>,
    hub: Hub,
    changed: Arc<Notify>,
) {
    let feed = db
        .changes_stream(ChangesFeed {
            since: Some(Seq::from(since)),
            live: true,
            ..Default::default()
        })
        .ready_chunks(CHANGES_PER_UPDATE);
    let mut feed = std::pin::pin!(feed);
    while let Some(chunk) = feed.next().await {
        let mut ids = Vec::with_capacity(chunk.len());
        for change in chunk {
            match change {
                Ok(c) if c.id.starts_with(ID_PREFIX) => ids.push(c.id),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the store's changes"),
            }
        }
        if ids.is_empty() {
            continue;
        }
        for id in &ids {
            if let Err(e) = tracker.note_changed(id).await {
                tracing::warn!(error = %e, "checking changed notes for conflicts");
                break;
            }
        }
        hub.send(Update::Changes { ids });
        changed.notify_one();
    }
}
