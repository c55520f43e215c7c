//! Option structs for opening a store and for each read, with CouchDB's query-parameter
//! names and defaults. All have public fields and `Default`, for `..Default::default()`.

use std::path::PathBuf;
use std::time::Duration;

use settee_revtree::Rev;

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

/// Options of `GET /{db}/{docid}` (CouchDB's query parameters of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read this revision instead of the winner.
    pub rev: Option<Rev>,
    /// With `rev`: if it is not a leaf, read the newest leaf descending from it.
    pub latest: bool,
    /// Add `_revisions` (the ancestry, newest first).
    pub revs: bool,
    /// Add `_revs_info` (`[{rev, status}]`).
    pub revs_info: bool,
    /// Add `_conflicts` (live leaves other than the winner) when there are any.
    pub conflicts: bool,
    /// Add `_deleted_conflicts` (deleted leaves other than the winner) when there are any.
    pub deleted_conflicts: bool,
    /// Same as `conflicts`, `deleted_conflicts` and `revs_info` together (CouchDB's `meta`).
    pub meta: bool,
    /// Add `_local_seq`: the document's sequence in this store.
    pub local_seq: bool,
    /// Inline attachment bodies as base64 `data` instead of stubs.
    pub attachments: bool,
    /// Inline only attachments changed after the newest of these revisions that the
    /// document's tree knows (the rest stay stubs).
    pub atts_since: Vec<Rev>,
}

/// Which revisions `open_revs` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRevs {
    /// Every leaf, deleted ones included (`open_revs=all`).
    All,
    /// These revisions (`open_revs=[...]`); with `latest`, their newest leaves.
    Revs(Vec<Rev>),
}

/// Options of `_all_docs`. Keys are document ids compared by their UTF-8 bytes (CouchDB's
/// raw collation, which `_all_docs` uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllDocsOptions {
    /// Start at this id (inclusive).
    pub startkey: Option<String>,
    /// Stop at this id (inclusive unless `inclusive_end` is false).
    pub endkey: Option<String>,
    /// Exactly these ids, in this order; deleted and missing ids get rows too.
    pub keys: Option<Vec<String>>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Skip this many rows first.
    pub skip: usize,
    /// Walk the ids from the last to the first.
    pub descending: bool,
    /// Add each row's winning document as `doc`.
    pub include_docs: bool,
    /// With `include_docs`, add `_conflicts` to each doc.
    pub conflicts: bool,
    /// Whether `endkey` itself is included (default true).
    pub inclusive_end: bool,
    /// With `include_docs`, inline attachment bodies.
    pub attachments: bool,
}

impl Default for AllDocsOptions {
    fn default() -> AllDocsOptions {
        AllDocsOptions {
            startkey: None,
            endkey: None,
            keys: None,
            limit: None,
            skip: 0,
            descending: false,
            include_docs: false,
            conflicts: false,
            inclusive_end: true,
            attachments: false,
        }
    }
}

/// Which revisions a change row lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangesStyle {
    /// The winning revision only (`style=main_only`, the default).
    #[default]
    MainOnly,
    /// Every leaf, deleted ones included (`style=all_docs`; replicators use this).
    AllDocs,
}

/// Options of `_changes`.
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

/// One item of a `_bulk_get` request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkGetRequest {
    /// The document id.
    pub id: String,
    /// The revision; without one, every leaf is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
    /// Revisions the caller already has: attachments unchanged since them come back as
    /// stubs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub atts_since: Vec<Rev>,
}

/// Query options of `_bulk_get`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkGetOptions {
    /// Add `_revisions` to each doc.
    pub revs: bool,
    /// Return the newest leaves descending from each requested rev.
    pub latest: bool,
    /// Inline attachment bodies (subject to each request's `atts_since`).
    pub attachments: bool,
}
