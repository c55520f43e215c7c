//! The CouchDB wire vocabulary: one Rust type per JSON shape of the endpoints Settee's
//! store, client and server share.
//!
//! - `_changes`: [`Change`], [`Changes`], [`ChangesStyle`].
//! - `_bulk_get` (and `open_revs`): [`BulkGetRequest`], [`BulkGetOptions`],
//!   [`BulkGetResult`], [`BulkGetDoc`], [`BulkGetError`].
//! - `_bulk_docs`: [`DocResult`] (with [`CouchError`], what a failure answers with).
//! - `GET /{db}/{docid}`: [`GetOptions`].
//! - `_all_docs`: [`AllDocsOptions`], [`AllDocs`], [`AllDocsRow`].
//! - `GET /{db}`: [`DbInfo`], [`Sizes`].
//! - MIME multipart (`multipart/related` documents, `multipart/mixed` answers):
//!   [`MultipartParser`], an incremental reader without I/O, and [`PartHeaders`].
//! - errors: [`ErrorKind`], what kind of failure an error is, the same for every side.
//!
//! Each type serialises to the JSON CouchDB sends for it (the store's answers, which the
//! server sends as they are) and parses what servers send, Apache CouchDB's and
//! pouchdb-server's forms alike (the client's reading of them). A shape whose sequences
//! differ by side takes them as a type parameter `S`: the store's sequences are integers
//! (`u64`), a remote server's are opaque ([`Seq`], the default).
//!
//! **Boundary:** no I/O, no HTTP, no storage: this crate knows shapes and their JSON, not
//! who sends them. It depends on `settee-revtree` (for [`Rev`] and [`Seq`]), serde and memchr
//! only.
//!
//! ```
//! use settee_wire::{BulkGetDoc, DocResult};
//! let written: DocResult = serde_json::from_str(r#"{"ok":true,"id":"a","rev":"1-x"}"#)?;
//! assert!(written.is_ok());
//! // pouchdb-server's answer for a document it does not have at all.
//! let entry = BulkGetDoc::from_json(serde_json::json!({}));
//! assert_eq!(entry, BulkGetDoc::Missing(None));
//! # Ok::<(), serde_json::Error>(())
//! ```

mod all_docs;
mod bulk_docs;
mod bulk_get;
mod changes;
mod db_info;
mod error_kind;
mod get;
mod multipart;

pub use all_docs::{AllDocs, AllDocsOptions, AllDocsRow};
pub use bulk_docs::{CouchError, DocResult};
pub use bulk_get::{BulkGetDoc, BulkGetError, BulkGetOptions, BulkGetRequest, BulkGetResult};
pub use changes::{Change, Changes, ChangesStyle};
pub use db_info::{DbInfo, Sizes};
pub use error_kind::ErrorKind;
pub use get::GetOptions;
pub use multipart::{
    boundary, media_type, param, MultipartError, MultipartEvent, MultipartParser, PartHeaders,
    DEFAULT_MAX_HEADER_BYTES,
};
pub use settee_revtree::{Rev, Seq};
