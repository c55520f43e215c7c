//! `Peer` for the local store. Every store call is blocking (sled), so each goes through
//! `spawn_blocking` here, the one place async code touches the store. The sync-state hooks
//! (`track_peer`, `record_peer_revs`, and `write`'s origin) map onto the store's
//! per-remote sync state (`settee_store::Database::register_remote` and friends).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::value::RawValue;
use serde_json::Value;
use settee_revtree::{Rev, RevsDiff, Seq};
use settee_store::{
    ChangesOptions, ChangesStyle, Database, GetOptions, OpenRevResult, OpenRevs, Rejection,
};

use crate::checkpoint;
use crate::peer::{
    Change, ChangesBatch, ChangesRequest, DocFailure, FetchRequest, Fetched, Filter, Peer,
    PeerInfo, Role,
};
use crate::{Error, Result};

/// Documents per store batch when the replicator writes to a local store: the replicator's
/// fetch chunk, so one batch per fetch. With 100 a 100,000-note pull made twice the context
/// switches (sled wakes its I/O threads per batch) for ~5% more CPU; peak memory is ~64 MB
/// instead of ~53 MB (sled keeps the node versions a batch replaces until it ends).
const WRITE_CHUNK: usize = 500;

pub(crate) use crate::blocking::blocking;

fn local_seq(seq: &Seq) -> Result<u64> {
    seq.as_local().ok_or_else(|| Error::BadRequest {
        reason: format!("{seq} is not a sequence of a local store"),
    })
}

impl Peer for Database {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn identity(&self) -> String {
        format!("local:{}", self.uuid())
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn info(&self) -> Result<PeerInfo> {
        let info = blocking(self, |db| db.info()).await?;
        Ok(PeerInfo {
            update_seq: Seq::from(info.update_seq),
            doc_count: info.doc_count,
            doc_del_count: info.doc_del_count,
        })
    }

    async fn create(&self) -> Result<()> {
        // Opening the store created it.
        Ok(())
    }

    async fn changes(&self, req: &ChangesRequest) -> Result<ChangesBatch> {
        let since = local_seq(&req.since)?;
        let batch = read_changes(self, since, req).await?;
        if !batch.changes.is_empty() || req.wait.is_none() {
            return Ok(batch);
        }
        // Longpoll: wait for the next write after `since` (the live stream subscribes
        // before it reads, so nothing written meanwhile is missed), then read a page.
        let wait = req.wait.unwrap_or(Duration::ZERO);
        let mut live = Box::pin(self.live_changes(ChangesOptions {
            since,
            ..ChangesOptions::default()
        }));
        let _ = tokio::time::timeout(wait, live.next()).await;
        drop(live);
        read_changes(self, since, req).await
    }

    async fn revs_diff(
        &self,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, RevsDiff>> {
        blocking(self, move |db| db.revs_diff(revs)).await
    }

    async fn fetch(&self, reqs: Vec<FetchRequest>, max_bytes: u64) -> Result<Vec<Fetched>> {
        crate::store_fetch::fetch_from(self, reqs, max_bytes, false).await
    }

    async fn fetch_streamed(
        &self,
        reqs: Vec<FetchRequest>,
        max_bytes: u64,
    ) -> Result<Vec<Fetched>> {
        crate::store_fetch::fetch_from(self, reqs, max_bytes, true).await
    }

    async fn attachment_body(
        &self,
        id: &str,
        rev: &Rev,
        name: &str,
    ) -> Result<settee_couch::AttachmentBody> {
        crate::streamed::store_attachment_body(self, id, rev, name).await
    }

    fn takes_streamed(&self) -> bool {
        true
    }

    async fn write_streamed(
        &self,
        doc: Box<RawValue>,
        attachments: Vec<settee_couch::AttachmentUpload>,
        origin: &str,
    ) -> Result<Vec<DocFailure>> {
        crate::streamed::store_write(self, doc, attachments, origin).await
    }

    async fn filter_code(&self, name: &str) -> Result<String> {
        let (ddoc, _) = checkpoint::split_filter_name(name)?;
        let id = format!("_design/{ddoc}");
        let doc = blocking(self, move |db| db.get(&id, &GetOptions::default())).await;
        let doc = match doc {
            Ok(doc) => Some(doc),
            Err(Error::Store { source, .. }) if source.is_not_found() => None,
            Err(e) => return Err(e),
        };
        checkpoint::filter_code_in(doc.as_ref(), name, &Peer::describe(self))
    }

    async fn write(&self, docs: Vec<Box<RawValue>>, origin: &str) -> Result<Vec<DocFailure>> {
        // Written in store batches of at most WRITE_CHUNK: sled keeps the old node versions
        // a batch replaces until the batch ends, so smaller batches bound peak memory (the
        // replicator only needs everything written before it checkpoints).
        let origin = origin.to_owned();
        let results = blocking(self, move |db| {
            let mut results = Vec::with_capacity(docs.len());
            for chunk in docs.chunks(WRITE_CHUNK) {
                results.extend(db.bulk_docs_json_from(chunk, &origin)?);
            }
            Ok(results)
        })
        .await?;
        Ok(DocFailure::refused(results))
    }

    async fn commit(&self) -> Result<()> {
        blocking(self, |db| db.flush()).await
    }

    async fn get_local(&self, id: &str) -> Result<Option<Value>> {
        let id = id.to_owned();
        match blocking(self, move |db| db.get_local(&id)).await {
            Ok(doc) => Ok(Some(doc)),
            Err(Error::Store { source, .. }) if source.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_local(&self, id: &str, mut doc: Value) -> Result<String> {
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("_id".into(), Value::from(format!("_local/{id}")));
        }
        let res = blocking(self, move |db| db.put_local(doc)).await?;
        Ok(res.rev)
    }

    async fn pending_since(&self, since: &Seq) -> Option<u64> {
        let since = since.as_local()?;
        blocking(self, move |db| db.pending_since(since)).await.ok()
    }

    async fn track_peer(
        &self,
        other: &str,
        role: Role,
        filter: &Filter,
        rep_id: &str,
    ) -> Result<()> {
        let (other, rep_id) = (other.to_owned(), rep_id.to_owned());
        let filter = filter.to_json();
        blocking(self, move |db| {
            let trusted_key = format!("{CHECKPOINT_KEY_PREFIX}{rep_id}");
            let trusted = db
                .remote(&other)
                .is_some_and(|r| r.meta.get(&trusted_key) == Some(&Value::Bool(true)));
            if !trusted {
                // A checkpoint written before this store kept its sync state with `other`
                // would skip the revisions `other` already has, and they would stay
                // unpushed: without it the run starts from the beginning and confirms them.
                drop_local(&db, &rep_id)?;
            }
            let (filter_key, id_key) = match role {
                Role::Source => (PUSH_FILTER_KEY, PUSH_REPLICATION_KEY),
                Role::Target => (PULL_FILTER_KEY, PULL_REPLICATION_KEY),
            };
            let meta = [
                (filter_key.to_owned(), filter),
                (id_key.to_owned(), Value::String(rep_id)),
                (trusted_key, Value::Bool(true)),
            ];
            db.register_remote(&other, meta.into_iter().collect())?;
            Ok(())
        })
        .await
    }

    async fn peer_renamed(
        &self,
        other: &str,
        address: &str,
        old_rep_id: &str,
        rep_id: &str,
    ) -> Result<()> {
        let (other, address) = (other.to_owned(), address.to_owned());
        let (old_rep_id, rep_id) = (old_rep_id.to_owned(), rep_id.to_owned());
        blocking(self, move |db| {
            db.learn_remote_alias(&address, &other)?;
            if old_rep_id == rep_id {
                return Ok(());
            }
            let Some(old) = local_doc(&db, &old_rep_id)? else {
                return Ok(());
            };
            if local_doc(&db, &rep_id)?.is_none() {
                // Trust first, then the copy: a crash between the two leaves the trust with
                // no checkpoint (the next run copies it again); the other order would leave
                // a trusted checkpoint untrusted, and the run would read everything again.
                let old_key = format!("{CHECKPOINT_KEY_PREFIX}{old_rep_id}");
                let trusted = db
                    .remote(&other)
                    .is_some_and(|r| r.meta.get(&old_key) == Some(&Value::Bool(true)));
                if trusted {
                    let key = format!("{CHECKPOINT_KEY_PREFIX}{rep_id}");
                    db.register_remote(&other, [(key, Value::Bool(true))].into_iter().collect())?;
                }
                let mut doc = old;
                if let Some(obj) = doc.as_object_mut() {
                    obj.remove("_rev");
                    obj.insert("_id".into(), Value::from(format!("_local/{rep_id}")));
                }
                db.put_local(doc)?;
                tracing::info!(remote = %other, old = %old_rep_id, new = %rep_id, "checkpoint renamed after the remote's identity was learned");
            }
            // The old name is not used again: the replication finds the copy, and the
            // checkpoint on the remote (if it is still under the old name) is taken over
            // from there (`LogSlot::read_or_inherit`).
            drop_local(&db, &old_rep_id)
        })
        .await
    }

    async fn record_peer_lacks(
        &self,
        other: &str,
        lacking: BTreeMap<String, Vec<Rev>>,
    ) -> Result<()> {
        if lacking.is_empty() {
            return Ok(());
        }
        let other = other.to_owned();
        blocking(self, move |db| db.record_remote_lacks(&other, &lacking)).await
    }

    async fn record_failures_from(
        &self,
        other: &str,
        listed: Vec<String>,
        failed: Vec<DocFailure>,
    ) -> Result<()> {
        let other = other.to_owned();
        blocking(self, move |db| {
            let kept = pull_failures(&db, &other);
            if failed.is_empty() && !kept.iter().any(|f| listed.contains(&f.id)) {
                return Ok(());
            }
            let mut now: Vec<DocFailure> = kept
                .into_iter()
                .filter(|f| !listed.contains(&f.id))
                .collect();
            for f in failed {
                if !now.contains(&f) {
                    now.push(f);
                }
            }
            now.sort_by(|a, b| (&a.id, &a.rev).cmp(&(&b.id, &b.rev)));
            if now.len() > MAX_PULL_FAILURES {
                tracing::warn!(
                    remote = %other,
                    kept = MAX_PULL_FAILURES,
                    failed = now.len(),
                    "too many documents failed to pull to keep them all; some are not listed"
                );
                now.truncate(MAX_PULL_FAILURES);
            }
            let value = serde_json::to_value(&now).unwrap_or_default();
            db.register_remote(
                &other,
                [(PULL_FAILURES_KEY.to_owned(), value)]
                    .into_iter()
                    .collect(),
            )
            .map(|_| ())
        })
        .await
    }

    async fn failures_from(&self, other: &str) -> Result<Vec<DocFailure>> {
        let other = other.to_owned();
        blocking(self, move |db| Ok(pull_failures(&db, &other))).await
    }

    async fn refused_by(&self, other: &str) -> Result<Vec<DocFailure>> {
        let other = other.to_owned();
        blocking(self, move |db| {
            let mut out = Vec::new();
            let Ok(counts) = db.sync_counts(&other) else {
                return Ok(out);
            };
            if counts.rejected == 0 {
                return Ok(out);
            }
            // Rejections are explicit entries; the listing pages through the unsynced
            // documents in id order until it has seen them all.
            let mut after: Option<String> = None;
            while (out.len() as u64) < counts.rejected {
                let page = db.unsynced(&other, after.as_deref(), REFUSED_PAGE)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (id, state) in page {
                    if let settee_store::SyncState::Rejected { rev, error, reason } = state {
                        out.push(DocFailure {
                            id,
                            rev: Some(rev.to_string()),
                            error,
                            reason,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn not_held_by(
        &self,
        other: &str,
        revs: BTreeMap<String, Vec<Rev>>,
    ) -> Result<BTreeMap<String, Vec<Rev>>> {
        let other = other.to_owned();
        blocking(self, move |db| {
            let mut out = BTreeMap::new();
            for (id, asked) in revs {
                let not_held: Vec<Rev> = match db.sync_state(&other, &id)? {
                    Some(settee_store::SyncState::Unpushed { revs }) => {
                        asked.into_iter().filter(|r| revs.contains(r)).collect()
                    }
                    Some(settee_store::SyncState::Rejected { rev, .. }) => {
                        asked.into_iter().filter(|r| *r == rev).collect()
                    }
                    _ => Vec::new(),
                };
                if !not_held.is_empty() {
                    out.insert(id, not_held);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn peer_holds_nothing(&self, other: &str) -> Result<()> {
        let other = other.to_owned();
        blocking(self, move |db| db.reset_remote(&other).map(|_| ())).await
    }

    async fn record_peer_revs(
        &self,
        other: &str,
        held: BTreeMap<String, Vec<Rev>>,
        rejected: Vec<DocFailure>,
    ) -> Result<()> {
        let rejected: Vec<Rejection> = rejected
            .into_iter()
            .filter_map(|f| {
                Some(Rejection {
                    rev: f.rev.as_deref()?.parse().ok()?,
                    id: f.id,
                    error: f.error,
                    reason: f.reason,
                })
            })
            .collect();
        if held.is_empty() && rejected.is_empty() {
            return Ok(());
        }
        let other = other.to_owned();
        blocking(self, move |db| {
            db.record_remote_revs(&other, &held, &rejected)
        })
        .await
    }

    async fn caught_up(&self, other: &str, role: Role, at: &str) -> Result<()> {
        let key = match role {
            Role::Source => LAST_PUSH_KEY,
            Role::Target => LAST_PULL_KEY,
        };
        let meta = [(key.to_owned(), Value::String(at.to_owned()))];
        let other = other.to_owned();
        blocking(self, move |db| {
            db.register_remote(&other, meta.into_iter().collect())
                .map(|_| ())
        })
        .await
    }
}

/// The remote meta key (see `settee_store::Database::register_remote`) of the filter the
/// last push to a remote used (`Filter::to_json`).
pub(crate) const PUSH_FILTER_KEY: &str = "push_filter";

/// The remote meta key of the filter the last pull from a remote used.
pub(crate) const PULL_FILTER_KEY: &str = "pull_filter";
/// The remote meta key of the last push's replication id (the name of its checkpoint): it
/// hashes a named filter's code, which only the server has, so status reads it from here.
pub(crate) const PUSH_REPLICATION_KEY: &str = "push_replication";
/// The remote meta key of the last pull's replication id.
pub(crate) const PULL_REPLICATION_KEY: &str = "pull_replication";
/// The remote meta key of when the last push to a remote caught up (see `Peer::caught_up`).
pub(crate) const LAST_PUSH_KEY: &str = "last_push";
/// The remote meta key of when the last pull from a remote caught up.
pub(crate) const LAST_PULL_KEY: &str = "last_pull";
/// The remote meta key of the revisions pulls from a remote could not write here (a list
/// of `DocFailure`s, sorted by id; see `Peer::record_failures_from`).
pub(crate) const PULL_FAILURES_KEY: &str = "pull_failures";
/// At most this many pull failures are kept per remote (past it, the last ids in order are
/// not listed; each run's summary and events still report every one).
const MAX_PULL_FAILURES: usize = 10_000;

/// Unsynced documents read per page when listing a remote's refusals.
const REFUSED_PAGE: usize = 1000;

/// The pull failures the store keeps for `remote`.
pub(crate) fn pull_failures(db: &Database, remote: &str) -> Vec<DocFailure> {
    db.remote(remote)
        .and_then(|r| r.meta.get(PULL_FAILURES_KEY).cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The prefix of the remote meta keys `checkpoint:<replication id>`, true once the
/// replication's checkpoints on this store were written while it kept sync state.
const CHECKPOINT_KEY_PREFIX: &str = "checkpoint:";

/// The `_local` document `id`, if there is one.
fn local_doc(db: &Database, id: &str) -> settee_store::Result<Option<Value>> {
    match db.get_local(id) {
        Ok(doc) => Ok(Some(doc)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the `_local` document `id` if there is one.
fn drop_local(db: &Database, id: &str) -> settee_store::Result<()> {
    for _ in 0..3 {
        let rev = match db.get_local(id) {
            Ok(doc) => doc.get("_rev").and_then(Value::as_str).map(str::to_owned),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(rev) = rev else { return Ok(()) };
        match db.delete_local(id, &rev) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == settee_store::ErrorKind::Conflict || e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The winning revision of document `id` as the changes feed renders it with
/// `include_docs` (a tombstone too, as `{"_id","_rev","_deleted":true,...}`), which is
/// what a selector filter is evaluated on; `None` if there is no such document.
pub(crate) fn winning_doc(db: &Database, id: &str) -> settee_store::Result<Option<Value>> {
    match db.get(id, &GetOptions::default()) {
        Ok(doc) => Ok(Some(doc)),
        Err(e) if e.is_not_found() => {
            // Deleted (or missing): the winner is the first leaf.
            match db.open_revs(id, OpenRevs::All, &GetOptions::default()) {
                Ok(leaves) => Ok(leaves.into_iter().find_map(|l| match l {
                    OpenRevResult::Ok(doc) => Some(doc),
                    OpenRevResult::Missing(_) => None,
                })),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads one page of changes for the replicator. A selector is evaluated here, on the
/// winning revision's body; pages are read until `limit` rows match or the feed ends, so
/// that a short page still means "nothing more".
async fn read_changes(db: &Database, since: u64, req: &ChangesRequest) -> Result<ChangesBatch> {
    let selector = match &req.filter {
        Filter::Selector(s) => Some(s.clone()),
        _ => None,
    };
    let doc_ids = match &req.filter {
        Filter::DocIds(ids) => Some(ids.clone()),
        _ => None,
    };
    let limit = req.limit.max(1);
    let mut from = since;
    let mut out = Vec::new();
    loop {
        let opts = ChangesOptions {
            since: from,
            limit: Some(limit),
            style: ChangesStyle::AllDocs,
            include_docs: selector.is_some(),
            doc_ids: doc_ids.clone(),
            // The replicator estimates pending itself (see replication.rs).
            skip_pending: true,
            ..ChangesOptions::default()
        };
        let page = blocking(db, move |db| db.changes(&opts)).await?;
        let exhausted = page.results.len() < limit;
        from = page.last_seq;
        for row in page.results {
            if let Some(sel) = &selector {
                let doc = row.doc.as_ref().unwrap_or(&Value::Null);
                if !sel.matches(doc) {
                    continue;
                }
            }
            out.push(Change {
                seq: Seq::from(row.seq),
                id: row.id,
                changes: row.changes,
                invalid_revs: row.invalid_revs,
                deleted: row.deleted,
                doc: None,
            });
        }
        if exhausted || out.len() >= limit || selector.is_none() {
            return Ok(ChangesBatch {
                changes: out,
                last_seq: Seq::from(from),
                pending: None,
            });
        }
    }
}
