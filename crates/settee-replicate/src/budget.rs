//! `ByteBudget`: how many bytes of fetched documents the batches in flight may hold at once,
//! so that a replication's memory is bounded by bytes and not only by document counts (500
//! documents with large attachments can be gigabytes). How a fetch uses it is
//! `replication.rs`'s business; this module only counts.
//!
//! Each fetch reserves an equal share of the budget before it asks (the share is also the
//! most it reads of the answer), keeps what the documents it got take, and gives the rest
//! back; what it keeps is returned once the documents are written. A fetch whose answer does
//! not fit in a share is asked again in halves, and the number of revisions asked per fetch
//! shrinks for the rest of the run (and grows back while answers are small). A single
//! revision larger than a share goes alone: it reserves the whole budget, so nothing else is
//! in flight while it is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in units of this many bytes (a semaphore takes at most `u32`
/// permits per acquisition).
const UNIT: u64 = 1024;

/// The byte budget shared by the batches of one replication.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    units: Arc<Semaphore>,
    /// Total units (`> 0`).
    total: u32,
    /// Units of one share (`1..=total`).
    share: u32,
    /// Revisions asked per fetch now (`1..=max_chunk`).
    chunk: AtomicUsize,
    max_chunk: usize,
}

/// Part of the budget, held while fetched documents are in memory; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `total_bytes` shared by `in_flight` fetches at once, asking for at most
    /// `max_chunk` revisions per fetch.
    pub(crate) fn new(total_bytes: u64, in_flight: usize, max_chunk: usize) -> ByteBudget {
        let total = u32::try_from(total_bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, max_units());
        let in_flight = u32::try_from(in_flight.max(1)).unwrap_or(u32::MAX);
        let share = (total / in_flight).max(1);
        ByteBudget {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
            share,
            chunk: AtomicUsize::new(max_chunk.max(1)),
            max_chunk: max_chunk.max(1),
        }
    }

    /// The most one fetch may read, in bytes.
    pub(crate) fn share_bytes(&self) -> u64 {
        u64::from(self.share) * UNIT
    }

    /// Waits for one share of the budget.
    pub(crate) async fn reserve_share(&self) -> Reservation {
        self.reserve(self.share).await
    }

    /// Waits for the whole budget: nothing else is fetched while it is held.
    pub(crate) async fn reserve_all(&self) -> Reservation {
        self.reserve(self.total).await
    }

    /// Waits for `bytes` of the budget (at least one unit, the whole budget at most): what
    /// an attachment being streamed may hold.
    pub(crate) async fn reserve_bytes(&self, bytes: u64) -> Reservation {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        self.reserve(units).await
    }

    async fn reserve(&self, units: u32) -> Reservation {
        // INVARIANT: this type owns the semaphore and never closes it, and `units` is at
        // most `total`, so the acquisition waits and then succeeds.
        let permit = self
            .units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the byte budget's semaphore is never closed");
        Reservation { permit }
    }

    /// How many revisions to ask for in the next fetch.
    pub(crate) fn chunk(&self) -> usize {
        self.chunk.load(Ordering::Relaxed)
    }

    /// An answer for `asked` revisions did not fit in a share: ask for half as many.
    pub(crate) fn shrink(&self, asked: usize) {
        let half = (asked / 2).max(1);
        self.chunk.fetch_min(half, Ordering::Relaxed);
    }

    /// An answer for `asked` revisions took `bytes`: when that is under a quarter of a share,
    /// ask for up to twice as many next time (never more than the configured chunk).
    pub(crate) fn grow(&self, asked: usize, bytes: u64) {
        if bytes.saturating_mul(4) < self.share_bytes() && asked >= self.chunk() {
            let doubled = asked.saturating_mul(2).min(self.max_chunk);
            self.chunk.fetch_max(doubled, Ordering::Relaxed);
        }
    }
}

impl Reservation {
    /// Keeps what `bytes` of documents take (at least one unit, at most what is held) and
    /// returns the rest of the reservation to the budget at once.
    pub(crate) fn keep(&mut self, bytes: u64) {
        let held = self.permit.num_permits();
        let keep = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .clamp(1, held.max(1));
        if held > keep {
            drop(self.permit.split(held - keep));
        }
    }

    /// Bytes held.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.permit.num_permits() as u64 * UNIT
    }
}

/// The most units a semaphore can count, as a `u32`.
fn max_units() -> u32 {
    u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_share_is_returned_but_what_is_kept() {
        let budget = ByteBudget::new(64 * 1024, 4, 500);
        assert_eq!(budget.share_bytes(), 16 * 1024);
        let mut r = budget.reserve_share().await;
        assert_eq!(budget.units.available_permits(), 48);
        r.keep(3000);
        assert_eq!(r.bytes(), 3 * 1024);
        assert_eq!(budget.units.available_permits(), 61);
        drop(r);
        assert_eq!(budget.units.available_permits(), 64);
    }

    #[tokio::test]
    async fn the_whole_budget_waits_for_every_share() {
        let budget = Arc::new(ByteBudget::new(8 * 1024, 2, 10));
        let first = budget.reserve_share().await;
        let b = budget.clone();
        let all = tokio::spawn(async move { b.reserve_all().await.bytes() });
        // The whole budget cannot be had while a share is out.
        tokio::task::yield_now().await;
        assert!(!all.is_finished());
        drop(first);
        assert_eq!(all.await.unwrap(), 8 * 1024);
    }

    #[test]
    fn chunk_halves_on_overflow_and_grows_back_on_small_answers() {
        let budget = ByteBudget::new(64 * 1024, 4, 500);
        budget.shrink(500);
        assert_eq!(budget.chunk(), 250);
        budget.shrink(250);
        assert_eq!(budget.chunk(), 125);
        budget.grow(125, 100);
        assert_eq!(budget.chunk(), 250);
        budget.grow(250, 15 * 1024); // not small: stays
        assert_eq!(budget.chunk(), 250);
        for _ in 0..10 {
            budget.grow(budget.chunk(), 0);
        }
        assert_eq!(budget.chunk(), 500, "never above the configured chunk");
        for _ in 0..20 {
            budget.shrink(budget.chunk());
        }
        assert_eq!(budget.chunk(), 1);
    }

    #[test]
    fn absurd_sizes_are_clamped() {
        let budget = ByteBudget::new(u64::MAX, 0, 0);
        assert!(budget.share_bytes() > 0);
        assert_eq!(budget.chunk(), 1);
        let tiny = ByteBudget::new(0, usize::MAX, usize::MAX);
        assert_eq!(tiny.share_bytes(), UNIT);
    }
}
