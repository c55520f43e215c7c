//! `settee serve`: CouchDB's HTTP API over Settee stores, so that PouchDB, CouchDB's own
//! replicator and curl can replicate with a store and query it.
//!
//! A [`Server`] serves one or more stores as databases (and creates new ones in a data
//! directory on `PUT /{db}`), on axum/hyper and the caller's tokio runtime. It answers the
//! endpoints replication and applications use, with CouchDB's status codes and
//! `{"error", "reason"}` bodies: `/`, `/_up`, `/_all_dbs`, `/_uuids`, `/_session`;
//! databases (`PUT`/`GET`/`DELETE`, `_security`, `_revs_limit`, `_compact`, `_purge`,
//! `_ensure_full_commit`); documents with CouchDB's query options, JSON or
//! `multipart/related`; attachments with `Range`; `_all_docs`, `_bulk_docs`, `_bulk_get`,
//! `_revs_diff`, `_changes` (normal, longpoll, continuous, eventsource; built-in filters,
//! JavaScript filter functions and `filter=_view`), `_local` docs, Mango: `_find`,
//! `_explain`, `_index`, and JavaScript views (`_design/{d}/_view/{v}`, from an index on
//! disk kept up to date incrementally).
//! Settee's own `/{db}/_settee/...` answer the sync-state questions about a store for the
//! process that finds it held by this one (admins only; `sync_state.rs`).
//! Every document write goes through the database's `validate_doc_update` functions.
//! JavaScript runs in worker processes (`settee_js::Pool`, given by
//! [`ServerOptions::js_worker`]), one QuickJS runtime per design document, killed when a
//! call runs past its time limit or its client goes away.
//!
//! - Auth: the admin and the users of the `_users` database (PBKDF2 passwords, roles) by
//!   basic auth or `_session` cookie, with CouchDB's failed-login lockout; per-database
//!   members and admins in `_security`; optional per-user databases (`PerUser`). Without
//!   an admin (loopback only) every request is an admin.
//! - Requests are bounded: body size (413), attachment size (413; attachments are
//!   streamed to and from the store, never whole in memory), header bytes and count
//!   (hyper closes the connection).
//! - Every store call runs on tokio's blocking pool (`OpenDb::run`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), settee_server::Error> {
//! use settee_server::{Admin, Server, ServerOptions};
//! let server = Server::start(ServerOptions {
//!     stores: vec!["notes".into()],
//!     admin: Some(Admin { name: "admin".into(), password: "secret".into() }),
//!     ..Default::default()
//! })
//! .await?;
//! println!("http://{}/notes", server.local_addr());
//! # Ok(())
//! # }
//! ```

mod att_stream;
mod attachment;
mod auth;
mod body;
mod bulk;
mod changes;
mod changes_filter;
mod changes_tail;
mod cors;
mod db;
mod design_doc;
mod dir_name;
mod document;
mod error;
mod find;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod inline_answer;
mod js;
mod location;
mod multipart_answer;
mod multipart_put;
mod multipart_staged;
mod options;
mod peruser;
mod query;
mod range;
mod registry;
mod request;
mod root;
mod route;
mod server;
mod stage;
mod state;
mod sync_state;
mod uuid;
mod validate;
mod view;
mod view_rows;
mod view_update;

pub use error::{Error, Result};
pub use options::{
    Admin, Cors, Lockout, LockoutMode, PerUser, RequestLimits, SameSite, ServerOptions,
};
/// The former name of [`RequestLimits`], kept so that code written against it still
/// builds. `settee_js::Limits` is another concept (what one JavaScript runtime may use).
pub type Limits = RequestLimits;
pub use server::Server;
pub use settee_js::{PoolLimits, WorkerProgram};

/// Runs a JavaScript worker process on stdin and stdout (what [`WorkerProgram`] starts:
/// `settee js-worker`, or the `settee-js-worker` binary of this crate).
///
/// # Errors
/// An I/O error talking to the parent.
pub fn run_js_worker() -> std::io::Result<()> {
    settee_js::worker::run()
}
