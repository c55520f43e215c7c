//! Settee Notes: an offline-first notes app on Settee, the pattern of a desktop app with a
//! Rust core and a web page for its interface.
//!
//! The backend keeps the notes in a local Settee store, so the app starts and works fully
//! with no server; it syncs both ways, live, with a CouchDB database when one is set (on
//! the command line or in the page's settings), resuming by itself after the network or
//! the server comes back. The page (`web/`, plain HTML, CSS and JavaScript served by the
//! backend) lists notes by notebook and tag, edits them, shows every note's sync badge and
//! the global sync state, and resolves conflicts side by side; it follows changes over
//! server-sent events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use settee_notes::{App, AppOptions, Remote};
//! let app = App::start(AppOptions {
//!     store: "notes.settee".into(),
//!     remote: Some(Remote::parse("http://127.0.0.1:5984/notes", Some("admin".into()), None)?),
//! })
//! .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, settee_notes::router(app)).await?;
//! # Ok(()) }
//! ```
//!
//! Modules: `note.rs` (the note document), `notes.rs` (reads and writes), `queries.rs`
//! (lists), `images.rs` (a note's images),
//! `merge.rs` (a conflict's suggested merge), `recover.rs` (undo a delete, go back to the server's version), `state.rs` (per-note badges), `sync.rs` (the live sync and global state),
//! `live.rs` (updates for the pages), `settings.rs` (the remote), `api.rs` (HTTP),
//! `web.rs` (the page).

mod api;
mod app;
mod error;
mod images;
mod live;
mod merge;
mod note;
mod notes;
mod queries;
mod recover;
mod search;
mod settings;
mod state;
mod sync;
mod web;

pub use api::router;
pub use app::{App, AppOptions};
pub use error::{Error, Result};
pub use images::{ImageRef, MAX_IMAGE_BYTES};
pub use live::{Hub, Update};
pub use note::{Image, Note, NoteInput, DEFAULT_NOTEBOOK, ID_PREFIX};
pub use notes::{NoteVersions, ResolveInput};
pub use queries::{
    Count, FacetCache, ListQuery, NoteList, NoteSummary, DEFAULT_LIMIT, INDEX_DDOC, MAX_LIMIT,
};
pub use settings::Remote;
pub use state::{Badge, Counts, LastSync, Tracker};
pub use sync::{Phase, SyncCtl, SyncView};
