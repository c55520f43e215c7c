//! Settee's local document store: CouchDB's document API with CouchDB's semantics, on sled,
//! crash-safe.
//!
//! An application writes to a [`Database`] while offline; the replicator moves revisions
//! between it and a CouchDB server through the same calls CouchDB's endpoints offer:
//! [`Database::bulk_docs`] (with `new_edits=false` for replicated revisions),
//! [`Database::revs_diff`], [`Database::bulk_get`], [`Database::changes`] and
//! [`Database::live_changes`], and `_local` checkpoint documents.
//!
//! - Revision trees, winners and conflicts come from `settee_revtree`; this crate stores
//!   them, with bodies, attachments (once per digest) and a by-sequence index.
//! - Every document write is one atomic sled batch: a crash leaves it whole or absent.
//! - Writes are durable when the call returns ([`Durability::Immediate`], the default), or
//!   flushed on an interval ([`Durability::Relaxed`]) with [`Database::flush`] on demand.
//!
//! ```
//! use serde_json::json;
//! use settee_store::{ChangesOptions, Database, GetOptions};
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path().join("notes"))?;
//! let rev = db.put(json!({"_id": "n1", "title": "hello"}))?.rev.unwrap();
//! // A replica made a conflicting edit of the same document.
//! db.bulk_docs(vec![json!({"_id": "n1", "_rev": "1-zzz", "title": "theirs"})], false)?;
//! let doc = db.get("n1", &GetOptions { conflicts: true, ..Default::default() })?;
//! assert_eq!(doc["title"], "theirs"); // "1-zzz" sorts above our hash: it wins
//! assert_eq!(doc["_conflicts"][0], rev.to_string());
//! assert_eq!(db.changes(&ChangesOptions::default())?.results.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Storage layout: see `keys/` and `docs/storage-format.md`.

mod advert;
mod all_docs;
mod attachment_io;
mod attachments;
mod bodies;
mod changes;
mod database;
pub mod deep_json;
mod error;
mod find;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod index_blocks;
mod json_text;
mod keys;
mod local;
mod maintenance;
mod migrate;
mod options;
mod read;
mod resolve;
mod results;
mod rewrite;
mod settings;
mod sync_state;
mod validate;
mod view_index;
mod write;

pub use advert::{Advert, ADVERT_FILE};
pub use attachments::{
    attachment_digest, Attachment, AttachmentReader, StagedAttachment, CHUNK_SIZE,
};
pub use database::Database;
pub use error::{Error, Result};
pub use find::{CreateIndexResponse, ExecutionStats, FindResponse, IndexList};
pub use index::IndexProgress;
pub use keys::{Encoding, FORMAT_VERSION};
pub use local::LocalDocResult;
pub use maintenance::VerifyReport;
pub use options::{
    AllDocsOptions, BulkGetOptions, BulkGetRequest, ChangesOptions, ChangesStyle, Durability,
    GetOptions, OpenOptions, OpenRevs,
};
pub use resolve::Resolution;
pub use results::{
    AllDocs, AllDocsRow, BulkGetDoc, BulkGetError, BulkGetResult, Change, Changes, DbInfo,
    DocResult, OpenRevResult, PurgeResult, Sizes,
};
pub use settee_query::{FindRequest, Selector, Sort, UseIndex};
pub use settee_revtree::{Rev, Revisions, RevsDiff};
/// What kind of failure an [`Error`] is ([`Error::kind`]), shared with the client.
pub use settee_wire::ErrorKind;
pub use sync_state::{AliasLearned, Rejection, Remote, SyncCounts, SyncState};
pub use view_index::{
    view_signature, ViewDocRows, ViewIndex, ViewIndexState, ViewKey, ViewRange, ViewRow,
};
