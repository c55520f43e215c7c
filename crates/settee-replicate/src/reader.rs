//! `ChangesReader`: the replication's reader of the source's changes feed, page by page, and
//! the one place that decides which sequence the replication may say it has read up to.
//! What happens to the rows (diff, fetch, write, checkpoint) is `replication.rs`'s business.
//!
//! A page's rows are trusted as far as its last row (or, when CouchDB's `seq_interval` left
//! that row's `seq` null, the page's `last_seq`, which CouchDB computes at the rows it sent;
//! `seq_interval` is asked for on unfiltered feeds only, see `peer_couch.rs`).
//! An empty page's `last_seq` is not taken on trust: a server whose `_changes` is not a
//! snapshot (pouchdb-server) can compute it after a write it did not return, and a
//! checkpoint at it would skip that write for good. So after an empty page:
//! - unfiltered, the reader stays where it was: an empty page from `since` means nothing
//!   after `since`, so there is nothing to skip over, and the next read (a longpoll in
//!   continuous mode) starts from the same place;
//! - filtered (`doc_ids`, selector, filter function), the rows the filter left out are worth
//!   skipping (a server-side filter would otherwise scan them again on every longpoll and
//!   every run), so the same page is asked for once more: rows that were being written
//!   during the first read are there now, and if it is still empty, the first `last_seq` is
//!   taken.
//!
//! The same server can leave a document out of a page when it is written during the read
//! (its old sequence is skipped as stale, its new one is not in the read yet). Its new
//! sequence is there for the next read, but after an empty page a one-shot run reads no
//! more. Where the source is being written by the other half of a sync, the empty page
//! that ends a one-shot run is one read after those writes ended
//! ([`ChangesReader::last_read_after`]).

use std::time::Duration;

use futures::Stream;
use settee_revtree::Seq;
use tokio_util::sync::CancellationToken;

use crate::peer::{ChangesBatch, ChangesRequest, Filter, Peer};
use crate::{ReplicateOptions, Result};

/// What the reader hands the pipeline, in feed order.
pub(crate) enum Item {
    /// Rows to replicate.
    Batch(ChangesBatch),
    /// Caught up at this sequence (continuous mode): everything before it is read.
    Idle(Seq),
    /// Nothing to replicate up to this sequence (the end of a filtered one-shot run).
    Skip(Seq),
}

/// What a reader asks the feed for: the replication's options, the same for every attempt.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    filter: Filter,
    /// Rows per page (at least 1).
    limit: usize,
    continuous: bool,
    longpoll: Duration,
}

impl Feed {
    /// The feed `opts` asks for (its filter, `batch_size` rows per page, continuous or not,
    /// the longpoll wait).
    pub(crate) fn of(opts: &ReplicateOptions) -> Feed {
        Feed {
            filter: opts.filter.clone(),
            limit: opts.batch_size.max(1),
            continuous: opts.continuous,
            longpoll: opts.longpoll,
        }
    }
}

/// Reads `_changes` for one attempt of a replication.
pub(crate) struct ChangesReader<S> {
    source: S,
    feed: Feed,
    /// Where the next read starts.
    since: Seq,
    /// The last page was short: the next read may wait for changes.
    caught_up: bool,
    /// The feed ended (one-shot caught up, or an error was reported).
    ended: bool,
    /// Report `Idle` before reading on.
    idle: bool,
    /// A one-shot run ends only on an empty page read after this fired.
    last_read_after: Option<CancellationToken>,
}

/// What an empty page turned out to mean.
enum Empty {
    /// Rows after all (the page asked again had some).
    Rows(ChangesBatch),
    /// Nothing to replicate up to this sequence.
    Until(Seq),
}

impl<S: Peer> ChangesReader<S> {
    /// A reader of `source`'s changes after `since`.
    pub(crate) fn new(source: S, feed: Feed, since: Seq) -> ChangesReader<S> {
        ChangesReader {
            source,
            feed,
            since,
            caught_up: false,
            ended: false,
            idle: false,
            last_read_after: None,
        }
    }

    /// A one-shot run ends only on an empty page whose read began after `writes_done` fired
    /// (`None`: on any empty page): an empty page read earlier is read again once it fires.
    pub(crate) fn last_read_after(mut self, writes_done: Option<CancellationToken>) -> Self {
        self.last_read_after = writes_done;
        self
    }

    /// The items, read lazily (a page is asked for when the pipeline has room for it).
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Item>> + Send {
        futures::stream::unfold(self, |mut reader| async move {
            let item = reader.next_item().await?;
            Some((item, reader))
        })
    }

    async fn next_item(&mut self) -> Option<Result<Item>> {
        if self.ended {
            return None;
        }
        if self.idle {
            self.idle = false;
            return Some(Ok(Item::Idle(self.since.clone())));
        }
        let wait = (self.feed.continuous && self.caught_up).then_some(self.feed.longpoll);
        loop {
            // Whether the writes the last read must follow were over before this read began.
            let settled = self
                .last_read_after
                .as_ref()
                .is_none_or(CancellationToken::is_cancelled);
            let page = match self.read(wait).await {
                Ok(page) => page,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            };
            let page = if page.changes.is_empty() {
                match self.after_empty(page.last_seq).await {
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e));
                    }
                    Ok(Empty::Rows(page)) => page,
                    Ok(Empty::Until(_)) if !self.feed.continuous && !settled => {
                        // The same page again once the writes are over (see the module docs).
                        if let Some(done) = self.last_read_after.clone() {
                            done.cancelled().await;
                        }
                        continue;
                    }
                    Ok(Empty::Until(seq)) => {
                        let moved = seq != self.since;
                        self.since = seq.clone();
                        self.caught_up = true;
                        if self.feed.continuous {
                            return Some(Ok(Item::Idle(seq)));
                        }
                        self.ended = true;
                        return moved.then_some(Ok(Item::Skip(seq)));
                    }
                }
            } else {
                page
            };
            // A short page means caught up: continuous mode reports idle once it is written,
            // then waits for more. A one-shot run still reads on until an empty page: a server
            // that is not snapshot-consistent (pouchdb-server) can leave out rows that moved to
            // a later sequence while it read, and the next page finds them. That costs one
            // round trip at the end.
            let short = page.changes.len() < self.feed.limit;
            self.since = page.last_seq.clone();
            self.caught_up = short;
            self.idle = short && self.feed.continuous;
            return Some(Ok(Item::Batch(page)));
        }
    }

    /// What an empty page from `self.since` that ends at `last_seq` means (see the module's
    /// documentation).
    async fn after_empty(&self, last_seq: Seq) -> Result<Empty> {
        if matches!(self.feed.filter, Filter::All) {
            return Ok(Empty::Until(self.since.clone()));
        }
        let again = self.read(None).await?;
        if again.changes.is_empty() {
            Ok(Empty::Until(last_seq))
        } else {
            Ok(Empty::Rows(again))
        }
    }

    async fn read(&self, wait: Option<Duration>) -> Result<ChangesBatch> {
        let req = ChangesRequest {
            since: self.since.clone(),
            limit: self.feed.limit,
            filter: self.feed.filter.clone(),
            wait,
        };
        self.source.changes(&req).await
    }
}
