//! A run's deadline ([`crate::ReplicateOptions::deadline`]): a cancellation that fires by
//! itself after a while, and remembers that it did, so the run can say it stopped at its
//! deadline rather than because someone cancelled it. What a stop leaves behind (the final
//! checkpoint) is `replication.rs`'s, as for any cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The deadline of one run. Dropping it stops its timer.
pub(crate) struct Deadline {
    token: CancellationToken,
    reached: Arc<AtomicBool>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Deadline {
    /// Starts the clock: the token this returns ([`Deadline::token`]) is cancelled when
    /// `cancel` is, and `after` from now. Without `after`, only when `cancel` is.
    pub(crate) fn start(after: Option<Duration>, cancel: &CancellationToken) -> Deadline {
        let token = cancel.child_token();
        let reached = Arc::new(AtomicBool::new(false));
        let timer = after.map(|after| {
            let (token, reached) = (token.clone(), reached.clone());
            // A task, not a future polled by the run: the run awaits many things (requests,
            // the final checkpoint) and selects on its token only where stopping is safe.
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => {
                        reached.store(true, Ordering::SeqCst);
                        token.cancel();
                    }
                    () = token.cancelled() => {}
                }
            })
        });
        Deadline {
            token,
            reached,
            timer,
        }
    }

    /// The run's cancellation token.
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the deadline has passed (and cancelled the token).
    pub(crate) fn reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_and_says_so_and_a_cancel_does_not_claim_it() {
        let outer = CancellationToken::new();
        let d = Deadline::start(Some(Duration::from_secs(30)), &outer);
        let token = d.token();
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!token.is_cancelled() && !d.reached());
        token.cancelled().await;
        assert!(d.reached());
        assert!(!outer.is_cancelled(), "the deadline stops this run only");

        let d = Deadline::start(Some(Duration::from_secs(30)), &outer);
        outer.cancel();
        d.token().cancelled().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!d.reached());

        let none = Deadline::start(None, &CancellationToken::new());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!none.token().is_cancelled() && !none.reached());
    }
}
