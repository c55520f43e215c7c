//! What the unfiltered `feed=longpoll` requests of one database share, so that a write
//! costs the server O(1) store reads however many devices are waiting for it: one
//! [`Tail`] per open database follows its commits (one store read per write) and publishes
//! the newest sequence on a `watch` channel, which the waiting feeds await instead of each
//! following the store; and a [`PageCache`] that answers every feed asking for the same
//! page (same `since`, options and published sequence) from one read, serialized once.
//! Which longpoll requests share ([`shares_pages`]) and their answers ([`longpoll`]) are
//! here; the other feeds, and the parameters, are `changes.rs`'s.
//!
//! Why: a thousand PouchDB devices on one database all wait at the same `since`. Before
//! this, one write woke a thousand store followers that each read the change, then a
//! thousand reads of the answer, then the thousand reconnecting requests read again (three
//! thousand store reads and JSON answers per write; each follower's wake-up registration
//! also scanned every other follower's).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use settee_store::{ChangesOptions, ChangesStyle};
use tokio::sync::{mpsc, watch, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::body::{self, stream_body};
use crate::changes::{
    collect, feed_headers, heartbeat_timer, sleep_until, Params, DEFAULT_TIMEOUT, FEED_BUFFER,
};
use crate::changes_filter::Filter;
use crate::error::HttpError;
use crate::registry::OpenDb;
use crate::state::State;

/// Pages kept for one published sequence: one per distinct (`since`, options) asked for
/// since the last write. Past this many (clients scattered over many positions) the cache
/// starts again rather than grow; the pages are then read again, which is only slower.
const MAX_PAGES: usize = 1024;

/// The tails of the open databases, by name (a tail of a database since deleted, or of a
/// database whose follower has stopped, is replaced on the next request).
#[derive(Default)]
pub(crate) struct Tails {
    // A tokio mutex: making a tail awaits one store read, and two requests racing to make
    // the first tail of a database must end with one.
    tails: tokio::sync::Mutex<HashMap<String, Weak<Tail>>>,
}

/// One database's follower: the newest sequence seen committed, and the shared pages.
pub(crate) struct Tail {
    db: Weak<OpenDb>,
    seq: watch::Receiver<u64>,
    /// Answers shared by the feeds of this database.
    pub(crate) pages: PageCache,
    /// Stops the follower when the last feed lets go of the tail.
    stop: CancellationToken,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tail {
    /// The newest sequence the follower has seen committed.
    pub(crate) fn seq(&self) -> u64 {
        *self.seq.borrow()
    }

    /// A receiver of the published sequence: `wait_for(|s| *s > since)` waits for a write
    /// after `since`; it fails when the follower stopped (the database is being deleted,
    /// the server stops).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq.clone()
    }

    fn is_following(&self, open: &Arc<OpenDb>) -> bool {
        Weak::ptr_eq(&self.db, &Arc::downgrade(open)) && self.seq.has_changed().is_ok()
    }
}

impl Tails {
    /// The tail of `open`, started on first use.
    ///
    /// # Errors
    /// A failed store read (the database's current sequence).
    pub(crate) async fn tail(
        &self,
        open: &Arc<OpenDb>,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Tail>, HttpError> {
        let mut tails = self.tails.lock().await;
        if let Some(tail) = tails.get(&open.name).and_then(Weak::upgrade) {
            if tail.is_following(open) {
                return Ok(tail);
            }
        }
        let since = open.run(|db| Ok(db.info()?.update_seq)).await?;
        let (tx, rx) = watch::channel(since);
        let stop = CancellationToken::new();
        let tail = Arc::new(Tail {
            db: Arc::downgrade(open),
            seq: rx,
            pages: PageCache::default(),
            stop: stop.clone(),
        });
        tails.retain(|_, t| t.strong_count() > 0);
        tails.insert(open.name.clone(), Arc::downgrade(&tail));
        tokio::spawn(follow(open.clone(), tx, since, stop, shutdown.clone()));
        Ok(tail)
    }
}

/// Follows `open`'s commits after `since`, publishing each newer sequence, until stopped,
/// the database closes or the server shuts down (dropping `tx` then tells the feeds).
async fn follow(
    open: Arc<OpenDb>,
    tx: watch::Sender<u64>,
    since: u64,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut live = open.db.live_changes(ChangesOptions {
        since,
        ..Default::default()
    });
    let closed = open.closed();
    loop {
        // All branches are cancel-safe: the live feed buffers what it has read, and tokens
        // can be waited on again.
        let next = tokio::select! {
            next = live.next() => next,
            _ = stop.cancelled() => break,
            _ = closed.cancelled() => break,
            _ = shutdown.cancelled() => break,
        };
        let mut newest = match next {
            Some(Ok(c)) => c.seq,
            Some(Err(e)) => {
                tracing::error!(error = %e, db = %open.name, "changes follower failed");
                break;
            }
            None => break,
        };
        // Rows already read (a batch of writes) are published once, not one wake-up each.
        while let Some(Some(Ok(c))) = live.next().now_or_never() {
            newest = newest.max(c.seq);
        }
        tx.send_if_modified(|seq| {
            let newer = newest > *seq;
            *seq = (*seq).max(newest);
            newer
        });
    }
}

/// Which answer a page is: the feed's position and options, and the sequence published
/// when it was asked for (so a page is never shared past a write it may not show).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PageKey {
    /// The `since` the page starts after.
    pub(crate) since: u64,
    /// The tail's sequence when asked: the page shows every change up to it.
    pub(crate) at: u64,
    /// `style=all_docs`.
    pub(crate) all_docs: bool,
    /// `limit`.
    pub(crate) limit: Option<usize>,
}

/// A longpoll answer as sent: its JSON (with the closing newline) and what the feed
/// needs to know of it.
#[derive(Clone, Debug)]
pub(crate) struct SharedPage {
    /// No rows: the feed waits.
    pub(crate) empty: bool,
    /// The answer's `last_seq`.
    pub(crate) last_seq: u64,
    /// The answer's body.
    pub(crate) json: Bytes,
}

/// Pages by key: the first request for a key reads it, the others asking meanwhile wait
/// for that read, and those asking later get the same bytes, until a newer sequence is
/// published.
#[derive(Default)]
pub(crate) struct PageCache {
    pages: Mutex<HashMap<PageKey, Arc<OnceCell<SharedPage>>>>,
    reads: AtomicU64,
}

impl PageCache {
    /// The page for `key`, read with `read` unless another request has it or is reading
    /// it. A failed read is not kept: the next request for the key reads again.
    ///
    /// # Errors
    /// `read`'s.
    pub(crate) async fn page<F, Fut>(&self, key: PageKey, read: F) -> Result<SharedPage, HttpError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SharedPage, HttpError>>,
    {
        let cell = {
            let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
            // Pages asked for before a newer write are no longer shown to anyone.
            pages.retain(|k, _| k.at >= key.at);
            if pages.len() >= MAX_PAGES && !pages.contains_key(&key) {
                pages.clear();
            }
            pages.entry(key).or_default().clone()
        };
        let page = cell
            .get_or_try_init(|| {
                self.reads.fetch_add(1, Ordering::Relaxed);
                read()
            })
            .await?;
        Ok(page.clone())
    }

    /// How many reads the cache has made (for tests).
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// Whether a longpoll request's answers are the same for every client at the same `since`
/// (no filter, no documents, ascending), so that they can share reads.
pub(crate) fn shares_pages(p: &Params) -> bool {
    matches!(p.filter, Filter::All)
        && !p.include_docs
        && !p.opts.include_docs
        && p.opts.doc_ids.is_none()
        && !p.opts.descending
}

/// The page after `since` as every feed sharing this tail sees it now.
async fn shared_page(
    tail: &Tail,
    open: &Arc<OpenDb>,
    p: &Params,
    since: u64,
) -> Result<SharedPage, HttpError> {
    let key = PageKey {
        since,
        at: tail.seq(),
        all_docs: matches!(p.opts.style, ChangesStyle::AllDocs),
        limit: p.limit,
    };
    let opts = ChangesOptions {
        since,
        ..p.opts.clone()
    };
    let (filter, limit) = (p.filter.clone(), p.limit);
    tail.pages
        .page(key, || async move {
            let page = open
                .run(move |db| collect(db, opts, &filter, limit))
                .await?;
            Ok(SharedPage {
                empty: page.rows.is_empty(),
                last_seq: page.last_seq,
                json: Bytes::from(page.to_json(p).to_string() + "\n"),
            })
        })
        .await
}

/// `feed=longpoll` for the feeds that share (see [`shares_pages`]): as `changes.rs`'s, but
/// the wait is on the database's tail and the answers come from its page cache.
pub(crate) async fn longpoll(
    state: &Arc<State>,
    open: Arc<OpenDb>,
    p: Params,
) -> Result<Response, HttpError> {
    let tail = state.tails.tail(&open, &state.shutdown).await?;
    let page = shared_page(&tail, &open, &p, p.opts.since).await?;
    if !page.empty {
        return Ok(body::json_bytes(StatusCode::OK, page.json.to_vec()));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(FEED_BUFFER);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let since = page.last_seq.max(p.opts.since);
        let timeout = p.timeout.or(if p.heartbeat.is_none() {
            Some(DEFAULT_TIMEOUT)
        } else {
            None
        });
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut seq = tail.subscribe();
        let mut beat = heartbeat_timer(p.heartbeat);
        let closed = open.closed();
        let got = loop {
            // All branches are cancel-safe: `wait_for` only looks at the published value,
            // timers and tokens can be polled again.
            tokio::select! {
                // The guard `wait_for` returns is not `Send`: drop it at once.
                written = async { seq.wait_for(|s| *s > since).await.is_ok() } => break written,
                _ = sleep_until(deadline) => break false,
                _ = beat.tick() => {
                    if tx.send(Ok(Bytes::from_static(b"\n"))).await.is_err() { return; }
                }
                _ = closed.cancelled() => break false,
                _ = shutdown.cancelled() => break false,
            }
        };
        drop(seq);
        let answer = if got {
            match shared_page(&tail, &open, &p, since).await {
                Ok(page) => page.json,
                Err(e) => {
                    Bytes::from(json!({"error": e.error, "reason": e.reason}).to_string() + "\n")
                }
            }
        } else {
            Bytes::from(json!({"results": [], "last_seq": since, "pending": 0}).to_string() + "\n")
        };
        let _ = tx.send(Ok(answer)).await;
    });
    let mut res = Response::new(stream_body(rx));
    feed_headers(&mut res, "application/json");
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(since: u64, at: u64) -> PageKey {
        PageKey {
            since,
            at,
            all_docs: true,
            limit: Some(100),
        }
    }

    fn page(last_seq: u64) -> SharedPage {
        SharedPage {
            empty: false,
            last_seq,
            json: Bytes::from(format!("{{\"last_seq\":{last_seq}}}\n")),
        }
    }

    #[tokio::test]
    async fn a_thousand_feeds_at_one_place_share_one_read() {
        let cache = Arc::new(PageCache::default());
        let reads = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut feeds = Vec::new();
        for _ in 0..1000 {
            let (cache, reads, gate) = (cache.clone(), reads.clone(), gate.clone());
            feeds.push(tokio::spawn(async move {
                cache
                    .page(key(5, 6), || async move {
                        reads.fetch_add(1, Ordering::SeqCst);
                        // The read is slow: everyone else arrives while it runs.
                        gate.notified().await;
                        Ok(page(6))
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        gate.notify_one();
        for f in feeds {
            assert_eq!(f.await.unwrap().unwrap().last_seq, 6);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.reads(), 1);
        // Asked for again later, before another write: the same bytes, no read.
        let again = cache
            .page(key(5, 6), || async { Ok(page(99)) })
            .await
            .unwrap();
        assert_eq!(again.last_seq, 6);
        assert_eq!(cache.reads(), 1);
    }

    #[tokio::test]
    async fn a_newer_write_or_another_place_reads_again() {
        let cache = PageCache::default();
        cache
            .page(key(5, 6), || async { Ok(page(6)) })
            .await
            .unwrap();
        let after_write = cache
            .page(key(5, 7), || async { Ok(page(7)) })
            .await
            .unwrap();
        assert_eq!(after_write.last_seq, 7);
        let elsewhere = cache
            .page(key(6, 7), || async { Ok(page(7)) })
            .await
            .unwrap();
        assert_eq!(elsewhere.last_seq, 7);
        assert_eq!(cache.reads(), 3);
        // The page of the older write is gone, so memory follows the writes.
        assert_eq!(cache.pages.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let cache = PageCache::default();
        let failed = cache
            .page(key(1, 2), || async { Err(HttpError::internal("disk")) })
            .await;
        assert!(failed.is_err());
        let ok = cache
            .page(key(1, 2), || async { Ok(page(2)) })
            .await
            .unwrap();
        assert_eq!(ok.last_seq, 2);
        assert_eq!(cache.reads(), 2);
    }
}
