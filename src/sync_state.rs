//! What a local store knows of a remote, per document and without a network:
//! [`Local`]'s sync-state calls, and [`Local::status`] (`settee status`), which adds the
//! one count that needs the server. The state itself is kept by the store and the replicator; this module only
//! picks where to ask (the store open here, or the process holding it).

use futures::{Stream, StreamExt};
use serde::Serialize;
use settee_replicate::{AnyPeer, Peer, SyncState, SyncStatus};
use settee_store::Database;

use crate::local::LocalKind;
use crate::owned::HeldStore;
use crate::{Error, Local, Remote, Result};

/// The sync state of a local store with a remote database: what the store keeps per
/// document, read without a network. A store another process holds is asked through that
/// process, which answers with the same code.
impl Local {
    /// Where the sync state is: the store, or the process holding it.
    fn sync_side(&self) -> SyncSide<'_> {
        match &self.kind {
            LocalKind::Open(d) => SyncSide::Store(d),
            LocalKind::Held(h) => SyncSide::Held(h),
        }
    }

    /// Document `id`'s sync state with `remote`: `Synced`, `Unpushed { revs }`,
    /// `Rejected { rev, error, reason }`, `Conflicted { winner, losers }` or `NotReplicated`
    /// (the filter the pair is synced with excludes it); `None` if the store has no such
    /// document. Offline, and O(1).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), settee::Error> {
    /// let notes = settee::Local::open("notes.settee")?;
    /// let server = settee::Remote::new("http://127.0.0.1:5984/notes")?;
    /// if let Some(state) = notes.sync_state(&server, "note:1").await? {
    ///     println!("note:1 is {}", state.name());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The store's errors; for a store held by another process, [`Error::Held`] when that
    /// process does not answer.
    pub async fn sync_state(&self, remote: &Remote, id: &str) -> Result<Option<SyncState>> {
        match self.sync_side() {
            SyncSide::Store(db) => {
                Ok(settee_replicate::sync_state(db, &remote.to_peer(), id).await?)
            }
            SyncSide::Held(h) => h.sync_state(&remote.to_peer().identity(), id).await,
        }
    }

    /// The documents of this store not known to be on `remote` (that the pair's filter
    /// includes), in id order, each with its state. Offline; the cost is in the number of
    /// unsynced documents, not the store's size.
    ///
    /// # Errors
    /// The stream's items carry the store's errors (for a store held by another process, [`Error::Held`] when it does not
    /// answer).
    pub fn unsynced(
        &self,
        remote: &Remote,
    ) -> Result<impl Stream<Item = Result<(String, SyncState)>> + Send + 'static> {
        Ok(match self.sync_side() {
            SyncSide::Store(db) => settee_replicate::unsynced(db, &remote.to_peer())
                .map(|r| r.map_err(Error::from))
                .left_stream(),
            SyncSide::Held(h) => h.unsynced(remote.to_peer().identity()).right_stream(),
        })
    }

    /// A live stream of sync-state changes with `remote`, to bind badges to: a document
    /// becomes `Unpushed` when written, `Synced` when a running sync's push confirms it,
    /// `Rejected` with the server's reason. Each item is a document and its current state
    /// (`None` once it is gone); changes that happen before the stream is read are
    /// coalesced. Offline.
    ///
    /// # Errors
    /// `bad_request` for a store another process holds (the stream is that process's to
    /// watch).
    pub fn sync_state_changes(
        &self,
        remote: &Remote,
    ) -> Result<impl Stream<Item = Result<(String, Option<SyncState>)>> + Send + 'static> {
        let db = match self.sync_side() {
            SyncSide::Store(db) => db,
            SyncSide::Held(h) => {
                return Err(Error::BadRequest(format!(
                    "the store {} is held by process {}; its live sync-state changes are \
                     watched in that process",
                    h.path(),
                    h.pid()
                )))
            }
        };
        Ok(settee_replicate::sync_state_changes(db, &remote.to_peer())
            .map(|r| r.map_err(Error::from)))
    }

    /// The counts of [`Local::status`] that need no network: unpushed, rejected and filtered-out
    /// documents, and the last push and pull.
    ///
    /// # Errors
    /// The store's errors; for a store held by another process, [`Error::Held`] when that
    /// process does not answer.
    pub async fn sync_status(&self, remote: &Remote) -> Result<SyncStatus> {
        match self.sync_side() {
            SyncSide::Store(db) => Ok(settee_replicate::status(db, &remote.to_peer()).await?),
            SyncSide::Held(h) => h.sync_status(&remote.to_peer().identity()).await,
        }
    }
}

/// Where a local store's sync state is read.
enum SyncSide<'a> {
    /// The store, open here.
    Store(&'a Database),
    /// The process that holds it.
    Held(&'a HeldStore),
}

/// What `settee status` prints: [`Local::status`]'s answer.
///
/// ```no_run
/// # async fn demo() -> Result<(), settee::Error> {
/// let notes = settee::Local::open("notes.settee")?;
/// let server = settee::Remote::new("http://127.0.0.1:5984/notes")?;
/// let st: settee::Status = notes.status(&server).await?;
/// println!("{} unpushed ({} rejected)", st.local.unpushed, st.local.rejected);
/// match st.unpulled {
///     Some(n) => println!("{n} to pull"),
///     None => println!("{}", st.unpulled_error.unwrap_or_default()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The offline part: unpushed, rejected and filtered-out documents, the last syncs.
    #[serde(flatten)]
    pub local: SyncStatus,
    /// Documents the remote has revisions of that the store lacks, after the last pull;
    /// `None` when the remote did not answer.
    pub unpulled: Option<u64>,
    /// Why `unpulled` is missing: the count needs the server, and asking it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpulled_error: Option<String>,
}

impl Local {
    /// What is not synced between a local store and a remote database: the exact offline
    /// counts, and the remote's unpulled count when the server answers (otherwise
    /// `unpulled_error` says why it is unknown). For a store another process holds, that
    /// process answers the offline part; this process asks the remote.
    ///
    /// # Errors
    /// The local store's errors; for a store held by another process, [`Error::Held`] when that
    /// process does not answer.
    pub async fn status(&self, remote: &Remote) -> Result<Status> {
        // One attempt: offline, say so at once rather than after the client's retries.
        let remote =
            Remote::from_couch(remote.couch().with_retry(settee_couch::RetryPolicy::none()));
        // Online when it can be: the server's uuid names the database, so a spelling of its
        // URL this store never synced with reads the state of the one it did. Offline, the
        // store answers for the spellings it learned.
        if let SyncSide::Store(db) = self.sync_side() {
            if let Err(e) = settee_replicate::learn_identity(db, &remote.to_peer()).await {
                tracing::debug!(error = %e, "the server did not say its uuid; answering offline");
            }
        }
        let st = self.sync_status(&remote).await?;
        let counted = match self.sync_side() {
            SyncSide::Store(db) => settee_replicate::unpulled(db, &remote.to_peer()).await,
            SyncSide::Held(h) => {
                // Where to start is the holder's to say; the changes are the remote's, and
                // which of them the store lacks the holder's again (`_revs_diff`).
                let from = h.pull_since(&remote.to_peer().identity()).await?;
                let store = AnyPeer::Remote(h.asked().clone());
                settee_replicate::unpulled_since(&store, &remote.to_peer(), &from).await
            }
        };
        let (unpulled, unpulled_error) = match counted {
            Ok(n) => (Some(n), None),
            Err(e) => (
                None,
                Some(format!(
                    "unknown: counting what the remote has needs the server ({})",
                    settee_replicate::error_chain(&e)
                )),
            ),
        };
        Ok(Status {
            local: st,
            unpulled,
            unpulled_error,
        })
    }
}
