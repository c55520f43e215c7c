//! The changes feed: `changes` (one read of the by-seq index), `live_changes` (catch-up,
//! then a live tail) and `pending_since`, and [`SeqEntries`], the walk over the by-seq
//! chunks they share. Each document appears once, at its latest sequence: an entry whose
//! document has been written again since (a stale entry, see `keys/`) is skipped. The
//! entries carry each document's leaves, so only `include_docs` reads the records.
//!
//! The live tail does not use `sled::Tree::watch_prefix`: sled's subscribers have a bounded
//! buffer that blocks writers when a subscriber is not polled, which would let an idle
//! stream stall every write. Instead writers publish the new `update_seq` to the core's `Notifier`
//! and wake waiting streams; a stream then reads the by-seq index after the last sequence
//! it yielded. Nothing can be missed: the index is the source of truth, and a stream checks
//! the published sequence after registering its waker, so a write between its read and its
//! registration is seen.

use std::collections::{HashSet, VecDeque};
use std::task::{Context, Poll};

use futures::Stream;

use crate::database::Inner;
use crate::keys::{self, DocHeader, DocRecord, SeqEntry};
use crate::{Change, Changes, ChangesOptions, ChangesStyle, Database, Error, GetOptions, Result};

/// Rows a live stream reads from the index at a time.
const LIVE_READ_BATCH: usize = 256;

impl Database {
    /// `GET /{db}/_changes` (normal feed): documents changed after `opts.since`, each once at
    /// its latest sequence, oldest first (newest first with `descending`).
    ///
    /// `last_seq` is the sequence to pass as `since` next time: the last row's sequence when
    /// `limit` cut the feed, otherwise the highest sequence scanned (filtered-out rows
    /// count, as in CouchDB). `pending` is the number of changes after `last_seq` not
    /// returned.
    ///
    /// ```
    /// use serde_json::json;
    /// use settee_store::ChangesOptions;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(json!({"_id": "a"}))?;
    /// db.put(json!({"_id": "b"}))?;
    /// let ch = db.changes(&ChangesOptions { since: 1, ..Default::default() })?;
    /// assert_eq!(ch.results[0].id, "b");
    /// assert_eq!(ch.last_seq, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Storage`] / [`Error::Corrupt`] on storage failures.
    pub fn changes(&self, opts: &ChangesOptions) -> Result<Changes> {
        let mut out = self.changes_once(opts, opts.since)?;
        // A document written while we read moves from its by-seq entry to a later one: we
        // skip the old entry (its doc is past it), but sled's iterator is not a snapshot and
        // may not show the new one. The write is atomic, so the new entry exists by now: read
        // on from where we stopped until no row was skipped that way.
        while !opts.descending
            && out.moved
            && out.changes.results.len() < opts.limit.unwrap_or(usize::MAX)
        {
            let rest = ChangesOptions {
                limit: opts.limit.map(|l| l - out.changes.results.len()),
                ..opts.clone()
            };
            let more = self.changes_once(&rest, out.changes.last_seq)?;
            out.changes.results.extend(more.changes.results);
            out.changes.last_seq = more.changes.last_seq.max(out.changes.last_seq);
            out.changes.pending = more.changes.pending;
            out.moved = more.moved;
        }
        Ok(out.changes)
    }

    fn changes_once(&self, opts: &ChangesOptions, since: u64) -> Result<ChangesPass> {
        let inner = &self.inner;
        let ids: Option<HashSet<&str>> = opts
            .doc_ids
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        // Everything up to `settled` was applied before this read began, so sled's
        // iterator shows it; a record that moved past `settled` was written while we read.
        let settled = inner.notifier.seq();
        let limit = opts.limit.unwrap_or(usize::MAX);
        let mut results = Vec::new();
        let mut last_seq = if opts.descending { 0 } else { since };
        let mut pending = 0u64;
        let mut moved = false;
        for item in SeqEntries::new(&inner.tree, since, opts.descending) {
            let (entry, stale) = item.map_err(|e| e.into_store(inner))?;
            if let Some(by) = stale {
                // Superseded: the document is listed at its later seq. A write after this
                // read began may not be visible to this pass; read on afterwards.
                moved |= by > settled;
                if !opts.descending && results.len() < limit {
                    last_seq = entry.seq;
                }
                continue;
            }
            if results.len() >= limit {
                if opts.skip_pending {
                    break;
                }
                pending += 1;
                continue;
            }
            let seq = entry.seq;
            if !opts.descending {
                last_seq = seq;
            }
            if ids
                .as_ref()
                .is_some_and(|set| !set.contains(entry.id.as_str()))
            {
                continue;
            }
            match self.change_row(entry, opts)? {
                Row::Current(change) => {
                    if opts.descending {
                        last_seq = seq;
                    }
                    results.push(change);
                }
                Row::Later(now) => moved |= now > settled,
            }
        }
        Ok(ChangesPass {
            changes: Changes {
                results,
                last_seq,
                pending,
            },
            moved,
        })
    }

    /// The row for a live by-seq entry. The entry has the leaves; the record is read only
    /// for `include_docs` (and if it has moved on since the index was read, the row is
    /// [`Row::Later`]: its later entry is read instead).
    fn change_row(&self, entry: SeqEntry, opts: &ChangesOptions) -> Result<Row> {
        let SeqEntry {
            seq,
            id,
            deleted,
            mut leaves,
        } = entry;
        if opts.style != ChangesStyle::AllDocs {
            leaves.truncate(1);
        }
        let mut doc = None;
        if opts.include_docs {
            let inner = &self.inner;
            let Some(bytes) = inner
                .tree
                .get(keys::doc_key(&id))
                .map_err(|e| inner.storage(e))?
            else {
                // Purged while we read (purge removes its entries).
                return Ok(Row::Later(u64::MAX));
            };
            let header = DocHeader::decode(&id, &bytes)?;
            if header.seq != seq {
                return Ok(Row::Later(header.seq));
            }
            let rec = DocRecord::decode(&id, &bytes)?;
            let get = GetOptions {
                conflicts: opts.conflicts,
                attachments: opts.attachments,
                ..Default::default()
            };
            doc = self.render_rev(&id, &rec, &header.winner, &get)?;
        }
        Ok(Row::Current(Change {
            seq,
            id,
            changes: leaves,
            deleted,
            doc,
        }))
    }

    /// The number of documents changed after `since`: what a replicator shows as not yet
    /// synced when its checkpoint is at `since`.
    ///
    /// # Errors
    /// [`Error::Storage`] on storage failures.
    pub fn pending_since(&self, since: u64) -> Result<u64> {
        let inner = &self.inner;
        let mut n = 0;
        for item in SeqEntries::new(&inner.tree, since, false) {
            let (_, stale) = item.map_err(|e| e.into_store(inner))?;
            if stale.is_none() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// A continuous changes feed: the changes after `opts.since` (as [`Database::changes`]
    /// returns them), then each later write as it commits, forever or until `opts.limit`
    /// rows. `descending` is ignored. The stream needs no particular runtime: writers wake
    /// it. It reads the store when polled (small reads, usually from sled's cache).
    ///
    /// Dropping the stream stops it; nothing is left behind.
    ///
    /// ```
    /// use futures::StreamExt;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put(serde_json::json!({"_id": "a"}))?;
    /// let mut feed = db.live_changes(Default::default());
    /// let first = futures::executor::block_on(feed.next()).unwrap()?;
    /// assert_eq!(first.id, "a");
    /// db.put(serde_json::json!({"_id": "b"}))?;
    /// let second = futures::executor::block_on(feed.next()).unwrap()?;
    /// assert_eq!((second.id.as_str(), second.seq), ("b", 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn live_changes(
        &self,
        opts: ChangesOptions,
    ) -> impl Stream<Item = Result<Change>> + Send + 'static {
        let mut feed = LiveFeed {
            db: self.clone(),
            last_seq: opts.since,
            remaining: opts.limit.unwrap_or(usize::MAX),
            opts: ChangesOptions {
                descending: false,
                ..opts
            },
            buffer: VecDeque::new(),
            done: false,
        };
        futures::stream::poll_fn(move |cx| feed.poll_next(cx))
    }
}

struct LiveFeed {
    db: Database,
    opts: ChangesOptions,
    last_seq: u64,
    remaining: usize,
    buffer: VecDeque<Change>,
    done: bool,
}

impl LiveFeed {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Change>>> {
        loop {
            if self.done || self.remaining == 0 {
                return Poll::Ready(None);
            }
            if let Some(c) = self.buffer.pop_front() {
                self.remaining -= 1;
                return Poll::Ready(Some(Ok(c)));
            }
            let notifier = &self.db.inner.notifier;
            if notifier.seq() <= self.last_seq {
                // Register first, then check again: a commit between the check above and
                // the registration has already published its seq, and is seen here.
                notifier.register(cx.waker());
                if notifier.seq() <= self.last_seq {
                    return Poll::Pending;
                }
            }
            // Everything up to `published` is in the index before it is published.
            let published = notifier.seq();
            let read = ChangesOptions {
                since: self.last_seq,
                limit: Some(LIVE_READ_BATCH.min(self.remaining)),
                ..self.opts.clone()
            };
            match self.db.changes(&read) {
                Ok(ch) => {
                    if ch.last_seq <= self.last_seq && ch.results.is_empty() {
                        // Published but nothing to read past last_seq (a purge removed it):
                        // move up to what was published before the read, so we do not spin.
                        self.last_seq = self.last_seq.max(published);
                        continue;
                    }
                    self.last_seq = ch.last_seq;
                    self.buffer.extend(ch.results);
                }
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// A by-seq entry's row, or the seq its document has moved on to (`u64::MAX`: purged).
enum Row {
    Current(Change),
    Later(u64),
}

type KvIter = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send>;

/// The entries of the by-seq index after `since`, ascending (or descending), chunk by
/// chunk, each with the seq that superseded it if it is stale (merged from the `X` markers).
pub(crate) struct SeqEntries {
    chunks: KvIter,
    markers: std::iter::Peekable<KvIter>,
    since: u64,
    descending: bool,
    buffer: std::vec::IntoIter<SeqEntry>,
    done: bool,
}

/// A failure while walking the index: sled's, or a damaged chunk.
pub(crate) enum WalkError {
    Sled(sled::Error),
    Store(Error),
}

impl WalkError {
    pub(crate) fn into_store(self, inner: &Inner) -> Error {
        match self {
            WalkError::Sled(e) => inner.storage(e),
            WalkError::Store(e) => e,
        }
    }
}

impl SeqEntries {
    pub(crate) fn new(tree: &sled::Tree, since: u64, descending: bool) -> SeqEntries {
        let all = keys::chunk_key(0)..=keys::chunk_key(u64::MAX);
        let after = keys::stale_key(since.saturating_add(1))..=keys::stale_key(u64::MAX);
        let (chunks, markers): (KvIter, KvIter) = if descending {
            (
                Box::new(tree.range(all).rev()),
                Box::new(tree.range(after).rev()),
            )
        } else {
            // The chunk holding `since + 1` may start before it: begin at the last chunk
            // whose first seq is at most `since + 1`.
            let probe = keys::chunk_key(since.saturating_add(1));
            let start = match tree.range(keys::chunk_key(0)..=probe).next_back() {
                Some(Ok((k, _))) => k.to_vec(),
                _ => probe.to_vec(),
            };
            (
                Box::new(tree.range(start..=keys::chunk_key(u64::MAX).to_vec())),
                Box::new(tree.range(after)),
            )
        };
        SeqEntries {
            chunks,
            markers: markers.peekable(),
            since,
            descending,
            buffer: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The seq that superseded the entry at `seq`, if a marker says it is stale. Markers
    /// come in the same order as entries, so each is looked at once.
    fn stale(&mut self, seq: u64) -> std::result::Result<Option<u64>, WalkError> {
        loop {
            let (marker, by) = match self.markers.peek() {
                None => return Ok(None),
                Some(Err(_)) => match self.markers.next() {
                    Some(Err(e)) => return Err(WalkError::Sled(e)),
                    _ => continue,
                },
                Some(Ok((k, v))) => {
                    let marker =
                        keys::decode_u64(&k[1..], "stale marker").map_err(WalkError::Store)?;
                    let by = keys::decode_u64(v, "stale marker").map_err(WalkError::Store)?;
                    (marker, by)
                }
            };
            let behind = if self.descending {
                marker > seq
            } else {
                marker < seq
            };
            if behind {
                self.markers.next();
                continue;
            }
            return Ok((marker == seq).then_some(by));
        }
    }
}

impl Iterator for SeqEntries {
    type Item = std::result::Result<(SeqEntry, Option<u64>), WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(entry) = self.buffer.next() {
                if entry.seq > self.since {
                    return Some(self.stale(entry.seq).map(|s| (entry, s)));
                }
                // Descending, everything after this is older still.
                self.done = self.descending;
                continue;
            }
            let (k, v) = match self.chunks.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(WalkError::Sled(e))),
            };
            let mut entries = match keys::decode_chunk(&k, &v) {
                Ok(e) => e,
                Err(e) => return Some(Err(WalkError::Store(e))),
            };
            if self.descending {
                entries.reverse();
            }
            self.buffer = entries.into_iter();
        }
        None
    }
}

/// One pass over the by-seq index, and whether it skipped an entry whose document moved on
/// to a later sequence while it read.
struct ChangesPass {
    changes: Changes,
    moved: bool,
}
