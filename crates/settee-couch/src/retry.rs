//! `RetryPolicy`: how often and how long the transport retries an idempotent request after a
//! connection error, 429 or 5xx. Which requests are idempotent is decided by each endpoint.

use std::time::Duration;

use rand::Rng;

/// Retries for idempotent requests: exponential backoff with jitter, honouring the server's
/// `Retry-After` (in seconds) on 429 and 503, each wait capped at `max_delay`.
///
/// ```
/// use std::time::Duration;
/// let policy = settee_couch::RetryPolicy { max_retries: 5, ..Default::default() };
/// assert_eq!(policy.initial_delay, Duration::from_millis(100));
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
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure is returned at once (the replicator's own retry loop can
    /// then be the only one, so attempts do not multiply).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based): `Retry-After` when the server gave
    /// one, else `initial_delay * 2^retry` with "equal jitter" (a random point in its upper
    /// half, so that many clients do not retry in lockstep); at most `max_delay`.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let exp = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let d0 = p.delay(0, None);
        assert!(
            d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(101),
            "{d0:?}"
        );
        let d3 = p.delay(3, None);
        assert!(
            d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(801),
            "{d3:?}"
        );
        assert!(p.delay(9, None) <= Duration::from_millis(1001));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(3600))), p.max_delay);
    }
}
