//! The replicator: CouchDB's replication protocol between any two peers.
//!
//! A [`Peer`] is either end: the local store ([`settee_store::Database`]) or a CouchDB
//! database over HTTP ([`settee_couch::RemoteDb`]); [`AnyPeer`] is either, chosen at run
//! time. A [`Replication`] moves revisions from a source to a target, one-shot or live,
//! checkpointing in `_local/<replication id>` on both peers so that the next run resumes
//! where this one stopped. [`sync()`] runs a push and a pull together. A local store keeps
//! each document's sync state with each remote (the replication tells it what the remote
//! holds); [`sync_state()`], [`unsynced()`], [`status()`] and [`sync_state_changes()`]
//! read it without a network. A [`Selector`] filter (`settee_query`'s evaluator, the one
//! `find` uses) is evaluated here when the source cannot evaluate it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use settee_replicate::{AnyPeer, ReplicateOptions, Replication};
//! let local = AnyPeer::open("notes.settee")?;
//! let remote = AnyPeer::open("http://127.0.0.1:5984/notes")?;
//! let summary = Replication::new(local, remote, ReplicateOptions::default()).run().await?;
//! println!("pushed {} revisions", summary.stats.docs_written);
//! # Ok(()) }
//! ```

mod blocking;
mod budget;
mod checkpoint;
mod deadline;
mod endpoint;
mod error;
mod events;
mod fetch;
mod offline;
mod peer;
mod peer_couch;
mod peer_store;
mod reader;
mod replication;
mod retry;
mod store_fetch;
mod streamed;
mod sync;
mod write;

pub use checkpoint::{
    find_start, replication_id, replication_id_of, ReplicationLog, Session, HISTORY_LIMIT,
};
pub use endpoint::AnyPeer;
pub use error::{Error, Result};
pub use events::{Direction, Event, RetryReason, Stats, Summary};
pub use offline::{
    learn_identity, pull_since_named, status, status_named, sync_state, sync_state_changes,
    sync_state_named, unpulled, unpulled_since, unsynced, unsynced_named, unsynced_page, PullSince,
    SyncStatus, UnsyncedPage,
};
pub use peer::{
    Change, ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer,
    PeerInfo, Role,
};
pub use replication::{
    error_chain, ReplicateOptions, Replication, ReplicationHandle, DEFAULT_MAX_BYTES_IN_FLIGHT,
};
pub use retry::RetryNow;
/// The one retry policy, the client's: a replication's default is
/// [`RetryPolicy::REPLICATION`].
pub use settee_couch::RetryPolicy;
/// Mango selectors live in `settee_query`, shared with `find`; a selector error is its error.
pub use settee_query::{Error as SelectorError, Selector};
pub use settee_store::SyncState;
pub use streamed::chunk_stream;
pub use sync::{sync, SyncSummary};
pub use tokio_util::sync::CancellationToken;
