//! Settee: an offline-first document database for Rust applications that syncs with Apache
//! CouchDB over CouchDB's own replication protocol.
//!
//! An application writes to a [`Local`] store (sled) while offline, and [`Local::sync`]s it
//! with a [`Remote`] CouchDB database when the network is there, keeping every conflicting
//! branch. The store knows, per document and without a network, what the remote does not
//! have yet ([`Local::sync_state`], [`Local::unsynced`], [`Local::sync_state_changes`],
//! [`Local::status`]). Both kinds answer the same [`Documents`] calls: CouchDB-shaped JSON,
//! typed documents ([`Doc<T>`], which keep their attachments across an edit), Mango queries
//! and indexes, attachments as byte streams, a live changes stream, and conflicts read and
//! merged as `T`. Errors have one vocabulary ([`ErrorKind`]) whichever side answered. The
//! `settee` command is built on this crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), settee::Error> {
//! use futures::StreamExt;
//! use settee::{Doc, Documents, ErrorKind};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone)]
//! struct Note { title: String }
//!
//! let notes = settee::Local::open("notes.settee")?;
//! let mut note = notes.put_doc(&Doc::new("note:1", Note { title: "written offline".into() })).await?;
//! note.body.title = "edited offline".into();
//! notes.put_doc(&note).await?;
//!
//! let server = settee::Remote::builder("http://127.0.0.1:5984/notes")
//!     .credentials("alice", "secret")
//!     .build()?;
//! let mut sync = notes.sync(&server, settee::ReplicateOptions { continuous: true, ..Default::default() });
//! while let Some(event) = sync.next().await {
//!     match event {
//!         settee::Event::Change { ids, .. } => println!("synced {ids:?}"),
//!         settee::Event::Paused { .. } => break, // caught up
//!         _ => {}
//!     }
//! }
//! let status = notes.status(&server).await?;
//! println!("{} unpushed", status.local.unpushed);
//! match server.get_doc::<Note>("note:2").await {
//!     Err(e) if e.kind() == ErrorKind::NotFound => println!("not there"),
//!     Err(e) if e.kind() == ErrorKind::Offline => println!("offline: {e}"),
//!     other => println!("{}", other?.body.title),
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/notes_core.rs` is a whole notes service core on this API. The workspace's
//! crates are re-exported whole for what the facade does not cover: [`revtree`], [`query`],
//! [`store`], [`couch`], [`replicate`] (any-to-any replications, as `settee replicate`
//! runs), and, with the `server` feature, `server` (`settee serve`).
//!
//! # Features
//!
//! - `cli` (default): the `settee` command. Turns on `server`.
//! - `server`: `settee::server`, the HTTP server with its JavaScript engine (axum, hyper's
//!   server side, QuickJS's C sources). Without it (`default-features = false`) an
//!   application gets the store, the client, the replicator and Mango, and still reaches a
//!   store another process serves.

mod calls;
mod db;
mod doc;
mod documents;
mod error;
mod local;
mod owned;
mod remote;
mod sync_state;
mod syncing;

pub use calls::attachments::AttachmentStream;
pub use calls::documents::{ChangesPage, ChangesRequest, ReadOptions};
pub use calls::feed::ChangesFeed;
pub use calls::typed::DocChange;
pub use db::{is_url, redact, Db};
pub use doc::{AttachmentStub, Doc, Found};
pub use documents::Documents;
pub use error::{Error, ErrorKind, Result};
pub use local::{Local, LocalBuilder};
pub use remote::{Remote, RemoteBuilder};
pub use settee_couch as couch;
pub use settee_couch::{AttachmentEncoding, AttachmentUpload, Change, RetryPolicy};
pub use settee_query as query;
pub use settee_query::{FindRequest, Selector, Sort, UseIndex};
pub use settee_replicate as replicate;
pub use settee_replicate::{
    CancellationToken, Direction, Event, ReplicateOptions, RetryNow, SyncState, SyncStatus,
    SyncSummary,
};
pub use settee_revtree as revtree;
pub use settee_revtree::{Rev, Seq};
/// `settee serve`: CouchDB's HTTP API over stores (the `settee-server` crate). Needs the
/// `server` feature (on with the default `cli`).
#[cfg(feature = "server")]
pub use settee_server as server;
pub use settee_store as store;
pub use settee_store::{
    AllDocs, AllDocsOptions, AllDocsRow, CreateIndexResponse, DocResult, FindResponse, IndexList,
    IndexProgress, OpenRevs, Resolution,
};
pub use sync_state::Status;
pub use syncing::Syncing;
