//! Settee: an offline-first document database for Rust applications that syncs with Apache
//! CouchDB over CouchDB's own replication protocol.
//!
//! This facade re-exports the workspace crates; applications depend on it alone.

pub use settee_revtree as revtree;
