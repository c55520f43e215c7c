//! Checkpoints: the replication id, the `_local/<id>` log documents kept on both peers, and
//! "find common ancestry" (CouchDB's `compare_replication_logs`). When to write one is
//! `replication.rs`'s decision.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use settee_revtree::Seq;
use sha2::{Digest, Sha256};

use crate::peer::{DocFailure, Filter, Peer};
use crate::{Error, Result};

/// How many sessions a log keeps (CouchDB keeps 50, PouchDB 5; more history means more
/// chances to find a common session with a peer that replicates with many partners).
pub const HISTORY_LIMIT: usize = 50;

/// Version of our replication id scheme; part of the hashed input.
const REP_ID_VERSION: u32 = 1;

/// The replication id: a hash of both peers' identities (no credentials) and the filter.
/// The same replication gets the same id on every run, so it finds its checkpoints.
pub fn replication_id(source: &str, target: &str, filter: &Filter) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "settee-replication-v{REP_ID_VERSION}\n{source}\n{target}\n"
    ));
    match filter {
        Filter::All => h.update("all"),
        Filter::DocIds(ids) => {
            let mut ids = ids.clone();
            ids.sort();
            ids.dedup();
            h.update(format!("doc_ids\n{}", Value::from(ids)));
        }
        Filter::Selector(sel) => h.update(format!("selector\n{}", sel.to_canonical_json())),
        Filter::Named { name, query_params } => {
            // serde_json with preserve_order keeps insertion order: sort for stability.
            let sorted: std::collections::BTreeMap<&String, &Value> = query_params.iter().collect();
            h.update(format!(
                "filter\n{name}\n{}",
                serde_json::to_string(&sorted).unwrap_or_default()
            ));
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// One session in a replication log (the fields CouchDB writes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// Unique id of the session.
    pub session_id: String,
    /// When the session started (RFC 3339, UTC).
    #[serde(default)]
    pub start_time: String,
    /// When this entry was written.
    #[serde(default)]
    pub end_time: String,
    /// Source sequence the session started from.
    #[serde(default)]
    pub start_last_seq: Seq,
    /// Source sequence reached.
    #[serde(default)]
    pub end_last_seq: Seq,
    /// Source sequence up to which everything is on the target: where to resume.
    #[serde(default)]
    pub recorded_seq: Seq,
    /// Revisions checked with `_revs_diff`.
    #[serde(default)]
    pub missing_checked: u64,
    /// Revisions the target lacked.
    #[serde(default)]
    pub missing_found: u64,
    /// Revisions read from the source.
    #[serde(default)]
    pub docs_read: u64,
    /// Revisions written to the target.
    #[serde(default)]
    pub docs_written: u64,
    /// Revisions the target rejected.
    #[serde(default)]
    pub doc_write_failures: u64,
}

/// A replication log, stored as `_local/<replication id>` on both peers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicationLog {
    /// The session that wrote this log last.
    pub session_id: String,
    /// Where the last session got to (same as its `recorded_seq`).
    pub source_last_seq: Seq,
    /// Our id scheme version.
    #[serde(default)]
    pub replication_id_version: u32,
    /// Who wrote it.
    #[serde(default)]
    pub replicator: String,
    /// Sessions, newest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub history: Vec<Session>,
    /// Documents that failed to replicate in the last session (for `settee status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doc_failures: Vec<DocFailure>,
}

impl ReplicationLog {
    /// Parses a `_local` document body; a log we cannot read counts as no log.
    pub fn from_doc(doc: &Value) -> Option<ReplicationLog> {
        serde_json::from_value(doc.clone()).ok()
    }
}

/// Where to start: CouchDB's `compare_replication_logs`. The same last session on both sides
/// resumes from its sequence; otherwise the newest session both histories share; otherwise 0.
pub fn find_start(source: Option<&ReplicationLog>, target: Option<&ReplicationLog>) -> Seq {
    let (Some(s), Some(t)) = (source, target) else {
        return Seq::zero();
    };
    if s.session_id == t.session_id {
        return s.source_last_seq.clone();
    }
    compare_history(&s.history, &t.history)
}

fn compare_history(source: &[Session], target: &[Session]) -> Seq {
    let (mut s, mut t) = (source, target);
    loop {
        let (Some(s1), Some(t1)) = (s.first(), t.first()) else {
            return Seq::zero();
        };
        if t.iter().any(|x| x.session_id == s1.session_id) {
            return s1.recorded_seq.clone();
        }
        if s[1..].iter().any(|x| x.session_id == t1.session_id) {
            return t1.recorded_seq.clone();
        }
        s = &s[1..];
        t = &t[1..];
    }
}

/// The checkpoint document on one peer: its current `_rev`, and whether writing to it works
/// (a read-only source answers 401/403; CouchDB and PouchDB then checkpoint the target only).
#[derive(Debug, Clone)]
pub(crate) struct LogSlot {
    pub(crate) rev: Option<String>,
    pub(crate) log: Option<ReplicationLog>,
    pub(crate) writable: bool,
}

impl LogSlot {
    pub(crate) async fn read<P: Peer>(peer: &P, id: &str) -> Result<LogSlot> {
        let doc = peer.get_local(id).await?;
        let rev = doc
            .as_ref()
            .and_then(|d| d.get("_rev"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let log = doc.as_ref().and_then(ReplicationLog::from_doc);
        Ok(LogSlot {
            rev,
            log,
            writable: true,
        })
    }

    /// Writes `log`; on a conflict (someone else wrote it) re-reads the rev and tries once
    /// more.
    pub(crate) async fn write<P: Peer>(
        &mut self,
        peer: &P,
        id: &str,
        log: &ReplicationLog,
        tolerate_forbidden: bool,
    ) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        for attempt in 0..2 {
            let mut doc = serde_json::to_value(log).map_err(|e| Error::Checkpoint {
                peer: peer.describe(),
                reason: e.to_string(),
            })?;
            if let (Some(rev), Some(obj)) = (&self.rev, doc.as_object_mut()) {
                obj.insert("_rev".into(), Value::from(rev.clone()));
            }
            match peer.put_local(id, doc).await {
                Ok(rev) => {
                    self.rev = Some(rev);
                    self.log = Some(log.clone());
                    return Ok(());
                }
                Err(e) if e.name() == "conflict" && attempt == 0 => {
                    let fresh = LogSlot::read(peer, id).await?;
                    self.rev = fresh.rev;
                }
                Err(e)
                    if tolerate_forbidden && matches!(e.name(), "forbidden" | "unauthorized") =>
                {
                    tracing::warn!(peer = %peer.describe(), "cannot write checkpoints to the source ({e}); checkpointing the target only");
                    self.writable = false;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Checkpoint {
            peer: peer.describe(),
            reason: "the checkpoint document kept changing under us".into(),
        })
    }
}

/// Now as RFC 3339 in UTC, for the informational timestamps in the log.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, seq: u64) -> Session {
        Session {
            session_id: id.into(),
            start_time: String::new(),
            end_time: String::new(),
            start_last_seq: Seq::zero(),
            end_last_seq: Seq::from(seq),
            recorded_seq: Seq::from(seq),
            missing_checked: 0,
            missing_found: 0,
            docs_read: 0,
            docs_written: 0,
            doc_write_failures: 0,
        }
    }

    fn log(last: &str, seq: u64, history: Vec<Session>) -> ReplicationLog {
        ReplicationLog {
            session_id: last.into(),
            source_last_seq: Seq::from(seq),
            replication_id_version: 1,
            replicator: "settee".into(),
            history,
            doc_failures: Vec::new(),
        }
    }

    #[test]
    fn same_session_resumes_from_source_last_seq() {
        let s = log("a", 10, vec![session("a", 10)]);
        let t = log("a", 10, vec![session("a", 10)]);
        assert_eq!(find_start(Some(&s), Some(&t)), Seq::from(10));
    }

    #[test]
    fn missing_log_on_either_side_starts_from_zero() {
        let s = log("a", 10, vec![session("a", 10)]);
        assert_eq!(find_start(Some(&s), None), Seq::zero());
        assert_eq!(find_start(None, Some(&s)), Seq::zero());
    }

    #[test]
    fn falls_back_to_newest_common_session() {
        // The source wrote session c, but the target's write of c was lost (crash between
        // the two writes): both share b.
        let s = log(
            "c",
            30,
            vec![session("c", 30), session("b", 20), session("a", 10)],
        );
        let t = log("b", 20, vec![session("b", 20), session("a", 10)]);
        assert_eq!(find_start(Some(&s), Some(&t)), Seq::from(20));
        // The other way round.
        assert_eq!(find_start(Some(&t), Some(&s)), Seq::from(20));
    }

    #[test]
    fn no_common_session_starts_from_zero() {
        let s = log("x", 30, vec![session("x", 30)]);
        let t = log("y", 20, vec![session("y", 20)]);
        assert_eq!(find_start(Some(&s), Some(&t)), Seq::zero());
    }

    #[test]
    fn replication_id_ignores_doc_id_order_and_changes_with_filter() {
        let a = replication_id("s", "t", &Filter::DocIds(vec!["b".into(), "a".into()]));
        let b = replication_id("s", "t", &Filter::DocIds(vec!["a".into(), "b".into()]));
        assert_eq!(a, b);
        assert_ne!(a, replication_id("s", "t", &Filter::All));
        assert_ne!(
            replication_id("s", "t", &Filter::All),
            replication_id("t", "s", &Filter::All)
        );
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn opaque_sequences_survive_the_log_round_trip() {
        let mut l = log("a", 0, vec![]);
        l.source_last_seq = Seq::from_json(Value::from("12-g1AAAAGjeJzLYWBg"));
        let back = ReplicationLog::from_doc(&serde_json::to_value(&l).unwrap()).unwrap();
        assert_eq!(back.source_last_seq, l.source_last_seq);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
