//! What the clients saw: for each write (`w-TAG-N`) and each warm-up write (`warm-TAG-N`), when it
//! was sent and acknowledged, how many clients have seen it and when the last one did; and
//! every client error, counted by kind. Shared by all tasks through atomics and one mutex
//! for errors (rare).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Error messages kept per kind (the rest are only counted).
const SAMPLES_PER_KIND: usize = 3;

/// One write's timeline, in nanoseconds since [`Tracker::start`] (0: not yet).
#[derive(Default)]
pub struct Slot {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub seen_by: AtomicU64,
    pub last_seen: AtomicU64,
}

/// Everything the run measures on the client side.
pub struct Tracker {
    pub start: Instant,
    /// This run's mark in its document ids.
    pub tag: String,
    pub clients: u64,
    pub writes: Vec<Slot>,
    pub warm: Vec<Slot>,
    /// Rows of `w-` documents delivered, counted over all clients.
    pub rows: AtomicU64,
    /// Rows delivered again to a client that had seen them (CouchDB may replay).
    pub repeats: AtomicU64,
    errors: Mutex<BTreeMap<String, (u64, Vec<String>)>>,
}

/// A document a feed row names: a measured write or a warm-up write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id {
    Write(usize),
    Warm(usize),
}

impl Id {
    /// `w-TAG-00000012` or `warm-TAG-3` of this run's `tag`; other documents (of earlier
    /// runs on the same database too) are not ours.
    pub fn parse(id: &str, tag: &str) -> Option<Id> {
        if let Some(n) = id.strip_prefix("w-").and_then(|r| r.strip_prefix(tag)) {
            return n.strip_prefix('-')?.parse().ok().map(Id::Write);
        }
        let n = id.strip_prefix("warm-")?.strip_prefix(tag)?;
        n.strip_prefix('-')?.parse().ok().map(Id::Warm)
    }

    /// The document id of this write in the run `tag`.
    pub fn doc_id(self, tag: &str) -> String {
        match self {
            Id::Write(n) => format!("w-{tag}-{n:08}"),
            Id::Warm(n) => format!("warm-{tag}-{n}"),
        }
    }
}

impl Tracker {
    pub fn new(clients: u64, max_writes: usize, max_warm: usize) -> Tracker {
        let start = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Tracker {
            start,
            tag: format!("{:x}", nanos % (1 << 40)),
            clients,
            writes: (0..max_writes).map(|_| Slot::default()).collect(),
            warm: (0..max_warm).map(|_| Slot::default()).collect(),
            rows: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Nanoseconds since the start, at least 1 (0 means "not yet").
    pub fn now(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).max(1)
    }

    pub fn slot(&self, id: Id) -> Option<&Slot> {
        match id {
            Id::Write(n) => self.writes.get(n),
            Id::Warm(n) => self.warm.get(n),
        }
    }

    /// One client saw `id` (for the first time: the client filters repeats).
    pub fn seen(&self, id: Id, at: u64) {
        let Some(slot) = self.slot(id) else { return };
        slot.last_seen.fetch_max(at, Ordering::Relaxed);
        slot.seen_by.fetch_add(1, Ordering::AcqRel);
        if matches!(id, Id::Write(_)) {
            self.rows.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an error of `kind`, keeping the first few messages.
    pub fn error(&self, kind: &str, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let entry = errors.entry(kind.to_string()).or_default();
        entry.0 += 1;
        if entry.1.len() < SAMPLES_PER_KIND {
            entry.1.push(message);
        }
    }

    /// The errors so far: kind -> (count, first messages).
    pub fn errors(&self) -> BTreeMap<String, (u64, Vec<String>)> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether every client has seen warm-up write `n`.
    pub fn warm_seen_by_all(&self, n: usize) -> bool {
        self.warm
            .get(n)
            .is_some_and(|s| s.seen_by.load(Ordering::Acquire) >= self.clients)
    }

    /// Whether every client has seen each of the first `n` writes that the server
    /// acknowledged (a failed write is an error of its own).
    pub fn all_seen(&self, n: usize) -> bool {
        self.writes[..n.min(self.writes.len())].iter().all(|s| {
            s.acked.load(Ordering::Acquire) == 0
                || s.seen_by.load(Ordering::Acquire) >= self.clients
        })
    }
}

/// A client's memory of what it has seen, so that a replayed row counts once.
#[derive(Default)]
pub struct Seen {
    writes: Vec<u64>,
    warm: Vec<u64>,
}

impl Seen {
    /// Marks `id`; true the first time.
    pub fn insert(&mut self, id: Id) -> bool {
        let (bits, n) = match id {
            Id::Write(n) => (&mut self.writes, n),
            Id::Warm(n) => (&mut self.warm, n),
        };
        let (word, bit) = (n / 64, n % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let fresh = bits[word] & (1 << bit) == 0;
        bits[word] |= 1 << bit;
        fresh
    }
}

/// The `q`-quantile (0..=1) of sorted values, by the nearest-rank method.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_repeats() {
        assert_eq!(Id::parse("w-ab1-00000012", "ab1"), Some(Id::Write(12)));
        assert_eq!(Id::parse("warm-ab1-3", "ab1"), Some(Id::Warm(3)));
        assert_eq!(
            Id::parse(&Id::Write(7).doc_id("x"), "x"),
            Some(Id::Write(7))
        );
        assert_eq!(Id::parse("w-ab0-00000012", "ab1"), None);
        assert_eq!(Id::parse("note-1", "ab1"), None);
        let mut seen = Seen::default();
        assert!(seen.insert(Id::Write(130)));
        assert!(!seen.insert(Id::Write(130)));
        assert!(seen.insert(Id::Warm(130)));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
