//! The events of one run: where they go (an optional channel), how a `Change` event
//! gives way when nobody reads, and how an error reads on one line.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::{Direction, Event};
use crate::Error;

/// The event sink of one run.
pub(super) struct Ctx {
    pub(super) events: Option<mpsc::Sender<Event>>,
    pub(super) direction: Direction,
}

impl Ctx {
    /// Sends an event, waiting for room in the channel.
    pub(super) async fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            // A closed receiver means nobody listens: that is fine.
            let _ = tx.send(event).await;
        }
    }

    /// Sends a `Change` event if there is room: the next one carries the same totals.
    pub(super) fn emit_change(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }

    /// Sends an `Error` event for `e`, retried after `delay` or final.
    pub(super) async fn error(&self, e: &Error, retrying: bool, delay: Option<Duration>) {
        self.emit(Event::Error {
            direction: self.direction,
            message: error_chain(e),
            name: e.name().to_owned(),
            retrying,
            retry_in_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
        .await;
    }
}

/// An error and its sources on one line (`a: b: c`), as events and the CLI show errors.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
