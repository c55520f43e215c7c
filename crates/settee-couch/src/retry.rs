//! `RetryPolicy`: how long to wait between attempts and how many to make. Settee has one:
//! the transport uses it to retry an idempotent request after a connection error, 429 or
//! 5xx (which requests are idempotent is decided by each endpoint), and the replicator
//! (`settee-replicate`) uses the same type for its retries of a failed step.

use std::time::Duration;

use rand::Rng;

/// Retries: exponential backoff with jitter, each wait capped at `max_delay`.
///
/// The client honours the server's `Retry-After` (in seconds) on 429 and 503, also capped
/// at `max_delay`. Its default makes 3 quick retries; a replication's default is
/// [`RetryPolicy::REPLICATION`] (slower, and a one-shot replication gives up after
/// [`RetryPolicy::attempts`] failed attempts in a row; a continuous one never gives up).
///
/// ```
/// use std::time::Duration;
/// let policy = settee_couch::RetryPolicy { max_retries: 5, ..Default::default() };
/// assert_eq!(policy.initial_delay, Duration::from_millis(100));
/// assert_eq!(policy.attempts(), 6);
/// assert_eq!(settee_couch::RetryPolicy::none().max_retries, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retries).
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each later one.
    pub initial_delay: Duration,
    /// The longest wait, including one asked for by `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// The client's: 3 retries, from 100 ms up to 10 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A replication's default: from 500 ms up to a minute, 4 retries (5 attempts) before
    /// a one-shot replication gives up.
    pub const REPLICATION: RetryPolicy = RetryPolicy {
        max_retries: 4,
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(60),
    };

    /// No retries: every failure is returned at once (the replicator's own retry loop can
    /// then be the only one, so attempts do not multiply).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Attempts in all: the first and its retries (at least 1).
    pub fn attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// The wait before retry number `retry` (0 for the first): `initial_delay * 2^retry`
    /// capped at `max_delay`, then scaled by a random factor in [0.5, 1.0] ("equal
    /// jitter"), so that many clients coming back at once do not hit the server in step
    /// (PouchDB and CouchDB both back off this way).
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    /// The transport's wait before retry number `retry`: `Retry-After` when the server gave
    /// one, else [`RetryPolicy::delay`]; at most `max_delay`.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_delay),
            None => self.delay(retry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_then_caps_with_jitter() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        for retry in 0..40 {
            let d = p.delay(retry);
            let base = (100u64 << retry.min(20)).min(2000);
            assert!(d >= Duration::from_millis(base / 2), "{retry}: {d:?}");
            assert!(d <= Duration::from_millis(base), "{retry}: {d:?}");
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.wait(0, Some(Duration::from_secs(3600))), p.max_delay);
        assert!(p.wait(0, None) <= p.initial_delay);
    }

    #[test]
    fn attempts_count_the_first_one() {
        assert_eq!(RetryPolicy::none().attempts(), 1);
        assert_eq!(RetryPolicy::REPLICATION.attempts(), 5);
        let most = RetryPolicy {
            max_retries: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(most.attempts(), u32::MAX);
    }
}
