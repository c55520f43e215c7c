//! [`Watchers`]: the live sync-state subscribers' queues, held by the core and filled by
//! writes; the stream that reads them is `state_changes.rs`'s. Knows nothing of `Inner`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::task::Waker;

use super::aliases::Aliases;

/// Live sync-state subscribers, woken by writes. Each keeps the set of documents whose state
/// may have changed since it last looked (coalesced: a document changed twice is listed
/// once), so none can lag behind and lose one; it reads the current state when polled.
#[derive(Default)]
pub(crate) struct Watchers {
    pub(super) active: AtomicUsize,
    pub(super) list: Mutex<Vec<Weak<Watch>>>,
}

pub(super) struct Watch {
    pub(super) remote: String,
    pub(super) queue: Mutex<WatchQueue>,
}

#[derive(Default)]
pub(super) struct WatchQueue {
    pub(super) ids: VecDeque<String>,
    pub(super) queued: HashSet<String>,
    pub(super) waker: Option<Waker>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-done by a panic: a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watchers {
    /// Whether anyone listens (writes collect nothing for subscribers otherwise).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    /// Queues `ids` for every subscriber of `remote` (of every remote when `None`).
    pub(crate) fn publish<'a>(
        &self,
        remote: Option<&str>,
        ids: impl Iterator<Item = &'a str> + Clone,
    ) {
        self.publish_to(remote, &Aliases::new(), ids);
    }

    /// [`Watchers::publish`], where a subscriber of an address that `aliases` maps to
    /// `remote` is one of `remote`'s (it subscribed before the identity was learned).
    pub(crate) fn publish_to<'a>(
        &self,
        remote: Option<&str>,
        aliases: &Aliases,
        ids: impl Iterator<Item = &'a str> + Clone,
    ) {
        let mut list = lock(&self.list);
        list.retain(|w| w.strong_count() > 0);
        for w in list.iter().filter_map(Weak::upgrade) {
            let named = |r: &str| r == w.remote || aliases.get(&w.remote).is_some_and(|i| i == r);
            if remote.is_some_and(|r| !named(r)) {
                continue;
            }
            let mut q = lock(&w.queue);
            for id in ids.clone() {
                if q.queued.insert(id.to_owned()) {
                    q.ids.push_back(id.to_owned());
                }
            }
            if !q.ids.is_empty() {
                if let Some(waker) = q.waker.take() {
                    waker.wake();
                }
            }
        }
    }
}
