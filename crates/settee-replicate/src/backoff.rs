//! Retry delays: exponential, capped, with jitter, so that many clients coming back at once
//! do not hit the server in step (PouchDB and CouchDB both back off this way).

use std::time::Duration;

use rand::Rng;

/// How a replication retries after a transient failure.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// How many consecutive failed attempts a one-shot replication makes before giving up
    /// (a continuous one never gives up).
    pub one_shot_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            one_shot_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0 for the first retry): `initial * 2^attempt`
    /// capped at `max`, then scaled by a random factor in [0.5, 1.0].
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            one_shot_attempts: 3,
        };
        for attempt in 0..40 {
            let d = p.delay(attempt);
            let base = (100u64 << attempt.min(20)).min(2000);
            assert!(d >= Duration::from_millis(base / 2), "{attempt}: {d:?}");
            assert!(d <= Duration::from_millis(base), "{attempt}: {d:?}");
        }
    }
}
