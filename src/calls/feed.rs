//! Changes as a [`Stream`], local or remote alike: what an application binds its views to.
//! A live feed follows new changes until it is dropped; a remote live feed reconnects after
//! a dropped connection, resuming after the last change it gave.

use std::time::Duration;

use futures::{Stream, StreamExt};
use settee_couch::Change;
use settee_revtree::Seq;

use super::Target;
use crate::{Error, Result};

/// What [`crate::Documents::changes_stream`] reads.
///
/// ```
/// # async fn demo() -> Result<(), settee::Error> {
/// use futures::TryStreamExt;
/// use settee::Documents;
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("notes");
/// # let path = path.to_str().unwrap();
/// let notes = settee::Local::open(path)?;
/// notes.put(serde_json::json!({"_id": "a"})).await?;
/// notes.put(serde_json::json!({"_id": "b"})).await?;
/// // Not live: the stream ends once caught up.
/// let feed = settee::ChangesFeed { include_docs: true, ..Default::default() };
/// let changes: Vec<settee::Change> = notes.changes_stream(feed).try_collect().await?;
/// let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
/// assert_eq!(ids, ["a", "b"]);
/// assert!(changes[0].doc.is_some());
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChangesFeed {
    /// Start after this sequence (`None`: from the beginning).
    pub since: Option<Seq>,
    /// Include each changed document.
    pub include_docs: bool,
    /// Keep following new changes (a stream that ends only when dropped), instead of
    /// ending once caught up.
    pub live: bool,
}

/// How long a remote live feed waits before reconnecting, at first and at most.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

pub(super) fn from_store(c: settee_store::Change) -> Change {
    Change {
        seq: Seq::from(c.seq),
        id: c.id,
        changes: c.changes,
        deleted: c.deleted,
        doc: c.doc,
        // A store's revisions are all valid.
        invalid_revs: Vec::new(),
    }
}

/// Whether reading the feed again can help: a dropped connection, a server error. Not bad
/// credentials or a missing database.
fn transient(e: &settee_couch::Error) -> bool {
    matches!(
        e,
        settee_couch::Error::Transport { .. }
            | settee_couch::Error::FeedInterrupted { .. }
            | settee_couch::Error::InvalidResponse { .. }
    ) || e.status().is_some_and(|s| s >= 500 || s == 429)
}

impl Target {
    pub(crate) fn changes_stream(
        self,
        opts: ChangesFeed,
    ) -> impl Stream<Item = Result<Change>> + Send + 'static {
        async_stream::stream! {
            match self {
                Target::Store(d) => {
                    let since = match &opts.since {
                        None => 0,
                        Some(s) => match s.as_local() {
                            Some(n) => n,
                            None => {
                                yield Err(Error::BadRequest(format!("{s} is not a sequence of a local store")));
                                return;
                            }
                        },
                    };
                    let store_opts = settee_store::ChangesOptions {
                        since,
                        include_docs: opts.include_docs,
                        ..Default::default()
                    };
                    if opts.live {
                        let mut feed = Box::pin(d.live_changes(store_opts));
                        while let Some(item) = feed.next().await {
                            yield item.map(from_store).map_err(Error::from);
                        }
                    } else {
                        match super::blocking(&d, move |d| d.changes(&store_opts)).await {
                            Ok(page) => for c in page.results {
                                yield Ok(from_store(c));
                            },
                            Err(e) => yield Err(e),
                        }
                    }
                }
                Target::Http(r) => {
                    let mut since = opts.since.clone();
                    if !opts.live {
                        let copts = settee_couch::ChangesOptions {
                            since,
                            include_docs: opts.include_docs,
                            style: settee_couch::ChangesStyle::MainOnly,
                            ..Default::default()
                        };
                        match r.changes(&copts).await {
                            Ok(resp) => for c in resp.results {
                                yield Ok(c);
                            },
                            Err(e) => yield Err(e.into()),
                        }
                        return;
                    }
                    let mut wait = RECONNECT_FIRST;
                    loop {
                        let copts = settee_couch::ChangesOptions {
                            since: since.clone(),
                            include_docs: opts.include_docs,
                            style: settee_couch::ChangesStyle::MainOnly,
                            ..Default::default()
                        };
                        let mut feed = Box::pin(r.changes_stream(copts));
                        let mut failed = None;
                        while let Some(event) = feed.next().await {
                            match event {
                                Ok(settee_couch::ChangesEvent::Change(c)) => {
                                    wait = RECONNECT_FIRST;
                                    if !c.seq.as_json().is_null() {
                                        since = Some(c.seq.clone());
                                    }
                                    yield Ok(c);
                                }
                                Ok(settee_couch::ChangesEvent::LastSeq(seq)) => since = Some(seq),
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        match failed {
                            Some(e) if transient(&e) => {
                                yield Err(e.into());
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(RECONNECT_MAX);
                            }
                            Some(e) => {
                                yield Err(e.into());
                                return;
                            }
                            // The server ended the feed (its timeout): ask again.
                            None => {}
                        }
                    }
                }
            }
        }
    }
}
