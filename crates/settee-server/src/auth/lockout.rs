//! Failed-login lockout, as CouchDB's `[chttpd_auth_lockout]`: failures are counted per
//! (peer IP, user name, user salt); once a pair has failed `threshold` times, logins for
//! that name from that address are refused with 403 — even with the right password —
//! until `max_lifetime` after the first failure. Another address, or another name, is not
//! affected. The table holds at most `max_objects` pairs: when full, the entry that would
//! expire first goes, so a client spraying names cannot grow it without limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::HttpError;
use crate::options::{Lockout, LockoutMode};

/// CouchDB's message for a locked account (`couch_httpd_auth`'s `LOCKOUT_MSG`).
pub(crate) const LOCKED: &str =
    "Account is temporarily locked due to multiple authentication failures";

struct Entry {
    failures: u32,
    first: Instant,
}

/// The failure counts.
pub(crate) struct Failures {
    settings: Lockout,
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

/// The table key: a hash, so that neither long names nor salts are kept in memory.
fn key(peer: IpAddr, name: &str, salt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        peer.to_string().as_bytes(),
        name.as_bytes(),
        salt.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Failures {
    pub(crate) fn new(settings: Lockout) -> Failures {
        Failures {
            settings,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// 403 if `name` (with `salt`, empty for a configured admin or an unknown name) is
    /// locked for `peer`. A request without a peer address (none in tests that call the
    /// router directly) is never locked, as in CouchDB.
    pub(crate) fn check(
        &self,
        peer: Option<IpAddr>,
        name: &str,
        salt: &str,
    ) -> Result<(), HttpError> {
        let Some(peer) = peer else { return Ok(()) };
        if self.settings.mode == LockoutMode::Off {
            return Ok(());
        }
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = table.get(&key(peer, name, salt)) else {
            return Ok(());
        };
        if entry.first.elapsed() >= self.settings.max_lifetime
            || entry.failures < self.settings.threshold
        {
            return Ok(());
        }
        match self.settings.mode {
            LockoutMode::Enforce => Err(HttpError::forbidden(LOCKED)),
            _ => {
                tracing::warn!(%peer, name, "authentication failure threshold reached");
                Ok(())
            }
        }
    }

    /// Counts a failed login.
    pub(crate) fn failed(&self, peer: Option<IpAddr>, name: &str, salt: &str) {
        let Some(peer) = peer else { return };
        if self.settings.mode == LockoutMode::Off {
            return;
        }
        let lifetime = self.settings.max_lifetime;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(peer, name, salt);
        if !table.contains_key(&k) && table.len() >= self.settings.max_objects.max(1) {
            table.retain(|_, e| e.first.elapsed() < lifetime);
            if table.len() >= self.settings.max_objects.max(1) {
                // Still full of live entries: the oldest goes (O(n) on a bounded table,
                // only while it is full).
                if let Some(oldest) = table.iter().min_by_key(|(_, e)| e.first).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(k).or_insert(Entry {
            failures: 0,
            first: Instant::now(),
        });
        if entry.first.elapsed() >= lifetime {
            *entry = Entry {
                failures: 0,
                first: Instant::now(),
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_threshold_for_that_peer_and_name_only() {
        let f = Failures::new(Lockout::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..4 {
            f.failed(Some(a), "ann", "s");
        }
        assert!(f.check(Some(a), "ann", "s").is_ok());
        f.failed(Some(a), "ann", "s");
        let e = f.check(Some(a), "ann", "s").unwrap_err();
        assert_eq!(e.reason, LOCKED);
        assert!(f.check(Some(b), "ann", "s").is_ok());
        assert!(f.check(Some(a), "bob", "s").is_ok());
        assert!(f.check(None, "ann", "s").is_ok());
    }

    #[test]
    fn memory_is_bounded_under_a_name_spray() {
        let f = Failures::new(Lockout {
            max_objects: 100,
            ..Default::default()
        });
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..1000 {
            f.failed(Some(peer), &format!("user{i}"), "");
        }
        assert!(f.len() <= 100, "{}", f.len());
    }

    #[test]
    fn failures_expire() {
        let f = Failures::new(Lockout {
            max_lifetime: std::time::Duration::ZERO,
            ..Default::default()
        });
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            f.failed(Some(peer), "ann", "");
        }
        assert!(f.check(Some(peer), "ann", "").is_ok());
    }
}
