//! [`Notifier`]: a commit publishes the new `update_seq` and wakes the live change streams
//! waiting for it (the feed itself is `changes.rs`'s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::Waker;

/// Wakes live change streams when a write commits.
pub(crate) struct Notifier {
    seq: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl Notifier {
    pub(crate) fn new(seq: u64) -> Notifier {
        Notifier {
            seq: AtomicU64::new(seq),
            wakers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn publish(&self, seq: u64) {
        self.seq.store(seq, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}
