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

/// The replication id: a hash of both peers' identities ([`Peer::identity`]: a remote
/// database's server uuid with the database and user names, or its URL with the user name
/// but never a password, or a store's uuid) and of what the filter selects. The
/// same replication gets the same id on every run, so it finds its checkpoints; a different
/// user, or a filter that selects differently, gets another id, so it never resumes from a
/// checkpoint that skipped documents it would replicate.
///
/// The input follows CouchDB's (`couch_replicator_ids`: the peers, then the filter): ids
/// for `doc_ids` (sorted), the selector (normalised), or, for a filter function, its
/// source code `filter_code` (trimmed; required for [`Filter::Named`], ignored otherwise)
/// and its query parameters (sorted). A function's name is not part of it: the same code
/// with the same parameters selects the same documents. The bytes hashed for an unfiltered,
/// `doc_ids` or selector replication are the same as before filter code and user names were
/// added, so those checkpoints stay valid where the identities did not change.
///
/// ```
/// use settee_replicate::{replication_id, Filter};
/// let named = Filter::Named { name: "app/f".into(), query_params: Default::default() };
/// let a = replication_id("local:1", "http://alice@h/db", &named, Some("function(d){return true}"));
/// let b = replication_id("local:1", "http://alice@h/db", &named, Some("function(d){return false}"));
/// assert_ne!(a, b, "a changed filter function gets its own checkpoints");
/// assert_ne!(
///     replication_id("local:1", "http://alice@h/db", &Filter::All, None),
///     replication_id("local:1", "http://bob@h/db", &Filter::All, None),
/// );
/// ```
pub fn replication_id(
    source: &str,
    target: &str,
    filter: &Filter,
    filter_code: Option<&str>,
) -> String {
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
        Filter::Named { query_params, .. } => {
            // serde_json with preserve_order keeps insertion order: sort for stability.
            let sorted: std::collections::BTreeMap<&String, &Value> = query_params.iter().collect();
            let params = serde_json::to_string(&sorted).unwrap_or_default();
            let code = filter_code.unwrap_or_default().trim();
            // Length-prefixed: no code and parameters can be spelled as other ones.
            h.update(format!("filter_code\n{}\n{code}\n{params}", code.len()));
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// The replication id of `source` to `target` with `filter`, reading the filter function's
/// code from the source when the filter is one (see [`replication_id`]).
///
/// # Errors
/// The source's errors reading `_design/<ddoc>`, and [`Error::BadRequest`] when the filter
/// name is not `ddoc/name` or the design document has no such filter.
pub async fn replication_id_of<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    filter: &Filter,
) -> Result<String> {
    Ok(replication_ids_of(source, target, filter).await?.0)
}

/// The replication id of `source` to `target` with `filter` ([`replication_id_of`]) and,
/// when a peer's identity differs from its address ([`Peer::address`]: it was learned),
/// the id under their addresses: the one earlier builds computed, which names checkpoints
/// written before the identity was learned.
pub(crate) async fn replication_ids_of<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    filter: &Filter,
) -> Result<(String, Option<String>)> {
    let code = match filter {
        Filter::Named { name, .. } => Some(source.filter_code(name).await?),
        _ => None,
    };
    let (sid, tid) = (source.identity(), target.identity());
    let (saddr, taddr) = (source.address(), target.address());
    let id = replication_id(&sid, &tid, filter, code.as_deref());
    let old = (sid != saddr || tid != taddr)
        .then(|| replication_id(&saddr, &taddr, filter, code.as_deref()));
    Ok((id, old))
}

/// `ddoc/name` split at its first slash (CouchDB's rule), both parts non-empty.
pub(crate) fn split_filter_name(name: &str) -> Result<(&str, &str)> {
    match name.split_once('/') {
        Some((ddoc, f)) if !ddoc.is_empty() && !f.is_empty() => Ok((ddoc, f)),
        _ => Err(Error::BadRequest {
            reason: format!("filter {name:?} is not of the form ddoc/name"),
        }),
    }
}

/// The code of filter `name` (`ddoc/name`) in its design document `ddoc`, if that exists,
/// trimmed as CouchDB trims it before hashing.
pub(crate) fn filter_code_in(ddoc: Option<&Value>, name: &str, peer: &str) -> Result<String> {
    let (ddoc_name, filter) = split_filter_name(name)?;
    ddoc.and_then(|d| d.get("filters"))
        .and_then(|f| f.get(filter))
        .and_then(Value::as_str)
        .map(|code| code.trim().to_owned())
        .ok_or_else(|| Error::BadRequest {
            reason: format!(
                "filter {name}: _design/{ddoc_name} on {peer} has no filter function {filter:?}"
            ),
        })
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

/// Where a session starts: the given `since`; else, when the source is read-only and has no
/// log of its own, the target's (PouchDB's rule: a reader cannot leave a checkpoint on the
/// source, and the target's records what reached it); else CouchDB's comparison of both
/// logs ([`find_start`]).
pub(crate) fn start_seq(since: Option<&Seq>, source: &LogSlot, target: &LogSlot) -> Seq {
    if let Some(since) = since {
        return since.clone();
    }
    match (&source.log, &target.log) {
        (None, Some(t)) if !source.writable => t.source_last_seq.clone(),
        (s, t) => find_start(s.as_ref(), t.as_ref()),
    }
}

/// A session's checkpoint document on each peer.
pub(crate) struct Logs {
    /// On the source (written only where the source lets us).
    pub(crate) source: LogSlot,
    /// On the target.
    pub(crate) target: LogSlot,
}

/// The checkpoint document on one peer, as this session last read or wrote it: its `_rev`
/// and log, and whether writing to it works (a read-only source answers 401/403; CouchDB
/// and PouchDB then checkpoint the target only).
///
/// It is also how a session notices that a peer is no longer the database it started with.
/// Every write first reads the document back and requires it to be the one the slot holds
/// (same `_rev`, same session and sequence); [`LogSlot::claim`] writes one at the start of
/// a session where there is none, so there is always one to find. A database deleted and
/// recreated during the run has lost it, and another replication writing the same id has
/// replaced it: either way the write fails with [`Error::CheckpointLost`] instead of
/// recording progress the peer may not have. (A conflict on the write itself is not
/// overwritten either: CouchDB never answers one for `_local` documents, so comparing is
/// the check that works on every server.)
#[derive(Debug, Clone)]
pub(crate) struct LogSlot {
    /// The checkpoint document's id (without `_local/`).
    id: String,
    /// On the source: a refused write marks the slot read-only instead of failing (see
    /// [`LogSlot::claim`]).
    tolerate_forbidden: bool,
    pub(crate) rev: Option<String>,
    pub(crate) log: Option<ReplicationLog>,
    pub(crate) writable: bool,
    /// A write whose answer was lost (it may or may not have been applied).
    unconfirmed: Option<ReplicationLog>,
}

impl LogSlot {
    /// Reads the checkpoint document `id` on `peer` (`tolerate_forbidden` on the source).
    pub(crate) async fn read<P: Peer>(
        peer: &P,
        id: &str,
        tolerate_forbidden: bool,
    ) -> Result<LogSlot> {
        let doc = peer.get_local(id).await?;
        let rev = doc
            .as_ref()
            .and_then(|d| d.get("_rev"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let log = doc.as_ref().and_then(ReplicationLog::from_doc);
        Ok(LogSlot {
            id: id.to_owned(),
            tolerate_forbidden,
            rev,
            log,
            writable: true,
            unconfirmed: None,
        })
    }

    /// [`LogSlot::read`], and where there is no document `id` on `peer`, the log of the
    /// document `old` (the replication's id before a peer's identity was learned, see
    /// [`replication_ids_of`]) if there is one: the slot inherits it, and
    /// [`LogSlot::claim`] writes it under `id`. Both peers inherit the same session, so the
    /// replication resumes where it was instead of reading every change again.
    pub(crate) async fn read_or_inherit<P: Peer>(
        peer: &P,
        id: &str,
        old: Option<&str>,
        tolerate_forbidden: bool,
    ) -> Result<LogSlot> {
        let mut slot = LogSlot::read(peer, id, tolerate_forbidden).await?;
        if let (Some(old), None) = (old, &slot.rev) {
            let before = LogSlot::read(peer, old, tolerate_forbidden).await?;
            if before.log.is_some() {
                tracing::info!(peer = %peer.describe(), old, new = id, "taking over the checkpoint written under the peer's address");
                slot.log = before.log;
            }
        }
        Ok(slot)
    }

    /// Where there is no (readable) log, writes an empty one for `session_id`: it records no
    /// progress (sequence 0, no history), but gives later writes a document to find; a log
    /// inherited from the old id ([`LogSlot::read_or_inherit`]) is written as it is. On the
    /// source with `tolerate_forbidden`, a refusal marks the slot read-only instead of
    /// failing (how a read-only source is recognised).
    pub(crate) async fn claim<P: Peer>(&mut self, peer: &P, session_id: &str) -> Result<()> {
        if let (Some(inherited), None) = (&self.log, &self.rev) {
            let log = inherited.clone();
            return self.put(peer, &log).await;
        }
        if self.log.is_some() {
            return Ok(());
        }
        let log = ReplicationLog {
            session_id: session_id.to_owned(),
            source_last_seq: Seq::zero(),
            replication_id_version: REP_ID_VERSION,
            replicator: "settee".into(),
            history: Vec::new(),
            doc_failures: Vec::new(),
        };
        self.put(peer, &log).await
    }

    /// Writes `log` over the log this slot holds; fails with [`Error::CheckpointLost`] if the
    /// peer's document is no longer that one (see the type's documentation).
    pub(crate) async fn write<P: Peer>(&mut self, peer: &P, log: &ReplicationLog) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.verify(peer).await?;
        self.put(peer, log).await
    }

    async fn put<P: Peer>(&mut self, peer: &P, log: &ReplicationLog) -> Result<()> {
        let mut doc = serde_json::to_value(log).map_err(|e| Error::Checkpoint {
            peer: peer.describe(),
            reason: e.to_string(),
        })?;
        if let (Some(rev), Some(obj)) = (&self.rev, doc.as_object_mut()) {
            obj.insert("_rev".into(), Value::from(rev.clone()));
        }
        self.unconfirmed = Some(log.clone());
        match peer.put_local(&self.id, doc).await {
            Ok(rev) => {
                self.rev = Some(rev);
                self.log = Some(log.clone());
                self.unconfirmed = None;
                Ok(())
            }
            Err(e) if e.kind() == settee_store::ErrorKind::Conflict => {
                // Someone wrote it since we read it, unless that was this very write, applied
                // once already by a request that was retried.
                self.verify(peer).await?;
                if self.unconfirmed.is_none() {
                    return Ok(());
                }
                self.unconfirmed = None;
                Err(Error::CheckpointLost {
                    peer: peer.describe(),
                    reason: "the checkpoint document was written by someone else".into(),
                })
            }
            Err(e)
                if self.tolerate_forbidden
                    && matches!(
                        e.kind(),
                        settee_store::ErrorKind::Forbidden | settee_store::ErrorKind::Unauthorized
                    ) =>
            {
                tracing::warn!(peer = %peer.describe(), "cannot write checkpoints to the source ({e}); checkpointing the target only");
                self.unconfirmed = None;
                self.writable = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the document back: it must be the one this slot holds, or the write whose
    /// answer was lost (then the slot takes it).
    async fn verify<P: Peer>(&mut self, peer: &P) -> Result<()> {
        let now = LogSlot::read(peer, &self.id, self.tolerate_forbidden).await?;
        let same = |a: &Option<ReplicationLog>, b: &Option<ReplicationLog>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.session_id == b.session_id && a.source_last_seq == b.source_last_seq
            }
            _ => false,
        };
        if now.log.is_some() && same(&now.log, &self.unconfirmed) {
            self.rev = now.rev;
            self.log = now.log;
            self.unconfirmed = None;
            return Ok(());
        }
        if now.rev == self.rev && same(&now.log, &self.log) {
            return Ok(());
        }
        let reason = match (&now.log, &self.log) {
            (None, Some(_)) if now.rev.is_none() => "the checkpoint document is gone".to_owned(),
            (None, _) => "the checkpoint document is not a replication log".to_owned(),
            (Some(l), _) => format!(
                "the checkpoint document was written by session {} of another run",
                l.session_id
            ),
        };
        Err(Error::CheckpointLost {
            peer: peer.describe(),
            reason,
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
mod tests;
