//! Option structs for opening a store and for each read, with CouchDB's query-parameter
//! names and defaults. All have public fields and `Default`, for `..Default::default()`.
//! The options of requests the client sends too (`GET` of a document, `_bulk_get`,
//! `_all_docs`, the `style` of `_changes`) are `settee_wire`'s.

use std::path::PathBuf;
use std::time::Duration;

use settee_revtree::Rev;

pub use settee_wire::{AllDocsOptions, BulkGetOptions, BulkGetRequest, ChangesStyle, GetOptions};

/// When a write becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write call flushes (fsyncs) sled's log before it returns, so a write that
    /// returned `Ok` survives a crash or power loss. Costs one fsync per call (per
    /// `bulk_docs` batch, not per document): a few milliseconds on SSDs, more on disks.
    #[default]
    Immediate,
    /// Writes are flushed by sled's background thread every `flush_every`; a crash can lose
    /// the writes of the last interval (each write still all-or-nothing). For bulk loads; call
    /// [`crate::Database::flush`] to make everything durable at a point of your choosing.
    Relaxed {
        /// How often sled flushes in the background.
        flush_every: Duration,
    },
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The store directory.
    pub path: PathBuf,
    /// Revisions kept per branch (CouchDB's `_revs_limit`, default 1000).
    pub revs_limit: u64,
    /// When a write becomes durable (default [`Durability::Immediate`]).
    pub durability: Durability,
    /// Create the store if the directory does not hold one (default true).
    pub create: bool,
    /// sled's page cache size in bytes (default 128 MiB: 100,000 1 KB notes stay under 200 MB
    /// of memory and most reads are served from the cache; sled's own default is 1 GiB).
    pub cache_capacity: u64,
    /// How long opening retries a store whose lock is busy before answering
    /// [`Error::StoreInUse`](crate::Error::StoreInUse) (default [`OpenOptions::LOCK_WAIT`]).
    /// The retry lets a store closed just before finish closing; tests that reopen a store
    /// right after killing its process wait longer on a loaded machine.
    pub lock_wait: Duration,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            path: PathBuf::new(),
            revs_limit: 1000,
            durability: Durability::Immediate,
            create: true,
            cache_capacity: 128 * 1024 * 1024,
            lock_wait: OpenOptions::LOCK_WAIT,
        }
    }
}

impl OpenOptions {
    /// The default [`OpenOptions::lock_wait`]: short, so that a second opener hears "store in
    /// use" quickly, and long enough for sled to let go of a store dropped just before.
    pub const LOCK_WAIT: Duration = Duration::from_millis(1500);

    /// Default options for the store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> OpenOptions {
        OpenOptions {
            path: path.into(),
            ..Default::default()
        }
    }
}

/// Which revisions `open_revs` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRevs {
    /// Every leaf, deleted ones included (`open_revs=all`).
    All,
    /// These revisions (`open_revs=[...]`); with `latest`, their newest leaves.
    Revs(Vec<Rev>),
}

/// Options of `_changes` read from this store.
///
/// Not the client's `settee_couch::ChangesOptions`, on purpose: that one is an HTTP request
/// (`feed`, `heartbeat`, `timeout`, `seq_interval`, server-side filters, an opaque `since`),
/// this one a query the store answers at once from its by-sequence index (integer `since`,
/// `_doc_ids` only, `skip_pending`). What both send and receive (the `style`, the rows and
/// the answer) is `settee_wire`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangesOptions {
    /// Only changes after this sequence (0 = from the start).
    pub since: u64,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Newest first. Ignored by [`crate::Database::live_changes`].
    pub descending: bool,
    /// Add each row's winning document as `doc`.
    pub include_docs: bool,
    /// With `include_docs`, add `_conflicts` to each doc.
    pub conflicts: bool,
    /// With `include_docs`, inline attachment bodies.
    pub attachments: bool,
    /// Winner only, or every leaf.
    pub style: ChangesStyle,
    /// Only these documents (`filter=_doc_ids`).
    pub doc_ids: Option<Vec<String>>,
    /// Do not count `pending` (it is then 0): counting reads the rest of the index, which a
    /// caller paging through the whole feed (the replicator) would pay on every page.
    pub skip_pending: bool,
}
