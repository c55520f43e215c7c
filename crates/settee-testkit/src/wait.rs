//! Waiting in tests without hanging: every wait has a deadline, and a missed deadline fails
//! the test with what was awaited. How long to wait is the test's (generous: these detect a
//! hang, they never time an operation).

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often a wait looks again: often enough that a test does not idle, seldom enough
/// that polling does not load the two cores CI shares.
const POLL: Duration = Duration::from_millis(50);

/// Polls `cond` until it holds.
///
/// # Panics
/// After `deadline`, with `what` in the message.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Polls the async `cond` until it holds, on the test's runtime. Returns how long that took
/// (to print; never to assert on).
///
/// # Panics
/// After `deadline`, with `what` in the message.
pub async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
    start.elapsed()
}

/// Polls the async `cond` until it is `Ok`; its `Err` says what it saw instead.
///
/// # Panics
/// After `deadline`, with `what` and the last `Err` in the message.
pub async fn wait_for_ok<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = Instant::now() + deadline;
    loop {
        match cond().await {
            Ok(()) => return,
            Err(last) if Instant::now() > end => {
                panic!("timed out after {deadline:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The lines of a child process's output, read on a thread of their own so that a test can
/// wait for the next one with a deadline (a child that neither writes nor exits would
/// otherwise hang the test in `read_line`).
#[derive(Debug)]
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts reading `from` (e.g. a child's `stdout.take()`), line by line, to its end.
    pub fn new(from: impl Read + Send + 'static) -> Lines {
        // Unbounded: a test reads what one child prints, and the thread ends with it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { rx }
    }

    /// The next line, or `None` once the output has ended.
    ///
    /// # Panics
    /// If no line and no end comes within `deadline` (the message names `what`).
    pub fn next_within(&self, deadline: Duration, what: &str) -> Option<String> {
        match self.rx.recv_timeout(deadline) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("timed out after {deadline:?} waiting for {what}")
            }
        }
    }

    /// Reads lines until one satisfies `pred` (returned) or the output ends (`None`).
    ///
    /// # Panics
    /// If neither happens within `deadline`, all lines together (the message names
    /// `what`).
    pub fn find(
        &self,
        deadline: Duration,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self.next_within(left, what)?;
            if pred(&line) {
                return Some(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_then_the_end() {
        let lines = Lines::new(&b"one\ntwo\n"[..]);
        let second = Duration::from_secs(5);
        assert_eq!(lines.next_within(second, "one").as_deref(), Some("one"));
        assert_eq!(lines.next_within(second, "two").as_deref(), Some("two"));
        assert_eq!(lines.next_within(second, "the end"), None);
        let lines = Lines::new(&b"one\ntwo\n"[..]);
        assert_eq!(
            lines.find(second, "two", |l| l == "two").as_deref(),
            Some("two")
        );
        assert_eq!(lines.find(second, "three", |l| l == "three"), None);
    }

    #[test]
    #[should_panic(expected = "waiting for a line that never comes")]
    fn a_silent_source_fails_at_the_deadline() {
        /// A child that neither writes nor exits (its thread outlives the test, harmlessly).
        struct Silent;
        impl Read for Silent {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
        }
        let lines = Lines::new(Silent);
        lines.next_within(Duration::from_millis(100), "a line that never comes");
    }
}
