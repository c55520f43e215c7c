//! Settee's async CouchDB HTTP client: one method per endpoint of CouchDB's HTTP API that
//! replication and applications use.
//!
//! - [`CouchClient`] is a server (`http://host:5984`): authentication (basic from the URL,
//!   or options, never the environment; cookie sessions; bearer tokens), extra headers, timeouts,
//!   and one pooled HTTP/1.1 keep-alive connection pool with gzip. It is a cheap `Clone`.
//! - [`RemoteDb`] is a database on it: db info, create/delete, `_changes` (one response or a
//!   continuous [`futures::Stream`]), `_revs_diff`, `_bulk_get` (with a per-document
//!   `open_revs` fallback for servers without it; read as `multipart/mixed` with
//!   attachments streamed, [`RemoteDb::bulk_get_multipart`]), `_bulk_docs` (split in halves on 413),
//!   documents, `_all_docs`, `_local` docs, attachments, `_ensure_full_commit`, and Mango's
//!   `_find`, `_explain` and `_index` (JSON in, JSON out).
//!
//! Sequences are [`Seq`]: opaque values that are stored and sent back, never compared.
//! The JSON shapes of the endpoints (`_changes` rows, `_bulk_get`, `_bulk_docs` results,
//! `_all_docs` rows, database information) are `settee_wire`'s, which the store and the
//! server speak too; this crate re-exports them.
//! Credentials never appear in `Debug`, `Display`, errors or tracing output: every URL the
//! crate shows is a [`RedactedUrl`].
//!
//! **Boundary:** the client retries only idempotent requests, and only on connection errors,
//! 429 and 5xx (see [`RetryPolicy`]); what to do about a failed replication batch is the
//! replicator's decision.
//!
//! ```no_run
//! use settee_couch::{ChangesOptions, CouchClient};
//! # async fn run() -> settee_couch::Result<()> {
//! let client = CouchClient::builder("http://127.0.0.1:5984")
//!     .basic_auth("admin", "secret")
//!     .build()?;
//! let db = client.db("notes");
//! if !db.exists().await? {
//!     db.create().await?;
//! }
//! let changes = db.changes(&ChangesOptions::default()).await?;
//! println!("{} changes up to {}", changes.results.len(), changes.last_seq);
//! # Ok(())
//! # }
//! ```

mod answer;
mod attachments;
mod bulk_docs;
mod bulk_get;
mod bulk_get_multipart;
mod call;
mod changes;
mod client;
mod db;
mod docs;
mod error;
mod ids;
mod mango;
mod multipart_mixed;
mod redacted;
mod retry;
mod revs_diff;
mod transport;

pub use attachments::{AttachmentBody, AttachmentEncoding, AttachmentStream, AttachmentUpload};
pub use bulk_docs::JsonDoc;
pub use bulk_get_multipart::{MultipartDoc, MultipartDocs};
pub use changes::{ChangesEvent, ChangesFilter, ChangesOptions, ChangesResponse, Feed};
pub use client::{ClientBuilder, CouchClient, ServerInfo, DEFAULT_MAX_RESPONSE};
pub use db::{split_db_url, DbInfo, RemoteDb};
pub use docs::{AllDocsResponse, PutResponse};
pub use error::{Error, Failure, Result};
pub use redacted::RedactedUrl;
pub use retry::RetryPolicy;
pub use revs_diff::RevsDiffEntry;
pub use settee_revtree::{Rev, Revisions, Seq};
/// The wire shapes this client reads and sends, shared with the store and the server.
pub use settee_wire::{
    AllDocs, AllDocsOptions, AllDocsRow, BulkGetDoc, BulkGetError, BulkGetOptions, BulkGetRequest,
    BulkGetResult, ChangesStyle, CouchError, DocResult, ErrorKind, GetOptions, Sizes,
};

/// One row of a changes feed: `settee_wire`'s [`Change`](settee_wire::Change) with the
/// server's opaque sequences.
pub type Change = settee_wire::Change<Seq>;
