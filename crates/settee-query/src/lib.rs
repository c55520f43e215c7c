//! Mango queries without I/O: the pieces of CouchDB's `_find` that do not touch storage.
//!
//! - [`Selector`]: parse, validate, normalise and evaluate Mango selectors (every operator
//!   CouchDB 3.5 documents). Filtered replication and `find` share this one evaluator.
//! - [`collate()`] and [`encode_key`]: CouchDB's view collation of JSON values (strings by an
//!   approximation of ICU's root collation, documented in `icu.rs`), and a byte encoding of
//!   it, so that a sorted key-value store keeps an index in collation order.
//! - [`IndexDef`]: a JSON index (`"type": "json"`) as `_index` creates it and as design
//!   documents with `"language": "query"` hold it, and the keys it gives a document.
//! - [`FindRequest`] and [`plan()`]: a `_find` request checked as CouchDB checks it, and the
//!   planner that picks the index (CouchDB's rules, including when a sort needs an index),
//!   the key range to read and what `_explain` says about it.
//!
//! ```
//! use serde_json::json;
//! use settee_query::{plan, FindRequest, IndexDef};
//! let index = IndexDef::from_create_request(&json!({
//!     "index": {"fields": ["notebook", "updated_at"]}, "ddoc": "notes", "name": "by-notebook"
//! }))?;
//! let req = FindRequest::parse(&json!({
//!     "selector": {"notebook": "work"},
//!     "sort": [{"notebook": "desc"}, {"updated_at": "desc"}],
//!     "limit": 20
//! }))?;
//! let indexes = [index];
//! let plan = plan(&req, &indexes)?;
//! assert_eq!(plan.index().map(|i| i.name.as_str()), Some("by-notebook"));
//! assert!(plan.is_descending());
//! // Without an index on `updated_at`, that sort is CouchDB's 400 error.
//! assert_eq!(settee_query::plan(&req, &[]).unwrap_err().name(), "no_usable_index");
//! # Ok::<(), settee_query::Error>(())
//! ```

mod collate;
mod error;
mod field;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod icu;
mod index;
mod plan;
mod request;
mod selector;

pub use collate::{collate, encode_key, skip_key, MAX_KEY_BYTE};
pub use error::{Error, Result};
pub use field::FieldPath;
pub use index::{DesignChange, IndexDef, IndexField};
pub use plan::{all_docs_index_json, explain_unplannable, plan, KeyRange, Plan};
pub use request::{FindRequest, Sort, UseIndex};
pub use selector::Selector;
