//! Settee: an offline-first document database for Rust applications that syncs with Apache
//! CouchDB over CouchDB's own replication protocol.
//!
//! An application writes to a local [`Database`] (sled) while offline; a [`Replication`] or
//! [`replicate::sync`] moves revisions between it and a CouchDB database ([`RemoteDb`]) when
//! the network is there, keeping every conflicting branch. The store knows, per document and
//! without a network, what a remote does not have yet: [`Db::sync_state`], [`Db::unsynced`],
//! [`Db::sync_state_changes`] and [`status`]. [`Db`] opens either kind from a path or a URL,
//! and offers the same calls on both: CouchDB-shaped JSON, typed documents ([`Doc<T>`]),
//! Mango queries with indexes ([`Db::find`], [`Db::create_index`]), a live changes
//! [`Db::changes_stream`], background replications whose events are a stream
//! ([`Db::sync_with`]), attachments as byte streams and conflict resolution in one call
//! ([`Db::resolve_conflict`]). The `settee` command is built on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), settee::Error> {
//! use serde_json::json;
//! let notes = settee::Db::open("notes.settee")?;
//! notes.put(json!({"_id": "note:1", "title": "written offline"})).await?;
//! let server = settee::Db::open("http://alice@127.0.0.1:5984/notes")?; // SETTEE_PASSWORD
//! let summary = settee::replicate::sync(notes.to_peer(), server.to_peer(),
//!     Default::default(), None, Default::default()).await?;
//! println!("pushed {}", summary.push.stats.docs_written);
//! # Ok(()) }
//! ```
//!
//! The workspace's crates are re-exported whole: [`revtree`], [`query`], [`store`],
//! [`couch`], [`replicate`], and, with the `server` feature, `server` (`settee serve`:
//! CouchDB's HTTP API over stores).
//!
//! # Features
//!
//! - `cli` (default): the `settee` command. Turns on `server`.
//! - `server`: `settee::server`, the HTTP server with its JavaScript engine (axum, hyper's
//!   server side, QuickJS's C sources). Without it (`default-features = false`) an
//!   application gets the store, the client, the replicator and Mango, and still reaches a
//!   store another process serves ([`Db::Held`]).

mod attachments;
mod db;
mod doc;
mod error;
mod feed;
mod mango;
mod owned;
mod syncing;

pub use attachments::AttachmentStream;
pub use db::{redact, status, Db, GetArgs, Status};
pub use doc::{Doc, Found};
pub use error::{Error, ErrorKind, Result};
pub use feed::ChangesFeed;
pub use owned::HeldStore;
pub use settee_couch as couch;
pub use settee_couch::{AttachmentUpload, Change, RemoteDb};
pub use settee_query as query;
pub use settee_query::{FindRequest, Selector, Sort, UseIndex};
pub use settee_replicate as replicate;
pub use settee_replicate::{
    CancellationToken, Event, ReplicateOptions, Replication, ReplicationHandle, RetryNow,
    SyncState, SyncStatus, SyncSummary,
};
pub use settee_revtree as revtree;
pub use settee_revtree::{Rev, Seq};
/// `settee serve`: CouchDB's HTTP API over stores (the `settee-server` crate). Needs the
/// `server` feature (on with the default `cli`).
#[cfg(feature = "server")]
pub use settee_server as server;
pub use settee_store as store;
pub use settee_store::{
    CreateIndexResponse, Database, DocResult, FindResponse, IndexList, IndexProgress, Resolution,
};
pub use syncing::Syncing;
