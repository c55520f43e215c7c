//! Mango indexes in the store: the catalog of JSON indexes the design documents with
//! `"language": "query"` define, their entries, and keeping both in step with the documents.
//!
//! - **Catalog.** Each index has a number and an `N<number>` record (its definition and build
//!   state). A write call that writes a query design document updates the catalog in the
//!   same batch: a new definition is registered (not built yet), a removed or changed one is
//!   dropped with all its entries. So an index replicated in as a design document is
//!   registered like one made with `create_index`.
//! - **Entries.** An entry, the encoded key then the doc id, for each live, non-design
//!   document the index covers (`settee_query::IndexDef::key_of`), stored in sorted blocks
//!   (`index_blocks.rs`) and maintained by [`IndexHook`] in the batch of the write that
//!   changes the document: an index is never out of step after a crash.
//! - **Building.** A registered index is built by [`Database::build_index`](crate::Database::build_index) in chunks of
//!   documents in id order, each chunk one batch that also records how far the build got, so
//!   a crash resumes it. Writes keep the entries of documents the build has passed; the build
//!   reads the current state of the rest. `find` builds an index it needs first; `create_index`
//!   builds its index with progress.
//!
//! Reading an index (`find`) is `find.rs`'s.
//!
//! Files: `catalog.rs` (the catalog, its records, and the open store's current catalog,
//! which the core holds), `hook.rs` (the write path's part), `build.rs` (building an
//! index), `verify.rs` (checking them).

mod build;
pub(crate) mod catalog;
mod hook;
mod verify;

pub use build::IndexProgress;
pub(crate) use catalog::BuildState;
pub(crate) use hook::IndexHook;
