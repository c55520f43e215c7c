//! JavaScript in CouchDB design documents, for Settee: filter functions (`filters`),
//! `validate_doc_update`, view map functions and reduce functions, run in QuickJS (through
//! `rquickjs`) with a memory limit and a time limit per call. The built-in reduces (`_count`,
//! `_sum`, `_stats`, `_approx_count_distinct`) run natively in Rust ([`Builtin`]).
//!
//! A [`Sandbox`] is one QuickJS runtime with CouchDB's global helpers (`emit`, `log`, `sum`,
//! `isArray`, `toJSON`, `JSON`). Functions are compiled once ([`Sandbox::compile`], cached by
//! source text) and then called with JSON values. Everything crosses the boundary as JSON
//! text, so a function sees exactly the document CouchDB would pass it and cannot reach Rust.
//!
//! CommonJS `require` loads modules stored in the design document
//! ([`Sandbox::compile_with_modules`]).
//!
//! A server runs untrusted design documents in worker processes instead ([`worker`]): a
//! bounded [`Pool`] of processes, each keeping one sandbox per design document, killed when
//! a call runs past its time limit or its caller goes away. A [`Sandbox`] on its own stops
//! ordinary JavaScript at the time limit but not a regular expression that backtracks, and
//! a value nested deeply enough can overflow the calling thread's stack in QuickJS's
//! `JSON.stringify`; only a process boundary contains those.
//!
//! **Architecture Invariant:** no I/O. A function cannot read files, the network or the
//! clock beyond `Date`; `require` reads only the JSON it is given; `provides`, `send` and
//! `getRow` do not exist.
//!
//! **API Boundary:** a [`Sandbox`] is neither `Send` nor `Sync` (QuickJS runtimes are not);
//! callers keep one per thread (the server keeps one per blocking-pool thread).
//!
//! ```
//! use serde_json::json;
//! use settee_js::{Limits, Sandbox};
//! # fn main() -> Result<(), settee_js::Error> {
//! let sandbox = Sandbox::new(Limits::default())?;
//! let map = sandbox.compile("_design/app views.by_type.map",
//!     "function (doc) { if (doc.type) emit(doc.type, 1); }")?;
//! let rows = sandbox.map(&map, &json!({"_id": "a", "type": "note"}))?;
//! assert_eq!(rows, vec![(json!("note"), json!(1))]);
//! # Ok(())
//! # }
//! ```

mod error;
mod reduce;
mod sandbox;
pub mod worker;

pub use error::{Error, Rejection, Result};
pub use reduce::Builtin;
pub use sandbox::{Compiled, Limits, Sandbox};
pub use worker::{Cancel, Function, Lease, Pool, PoolLimits, Scope, WorkerProgram};
