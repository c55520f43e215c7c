//! The sync state a run keeps on both peers: after each batch, what each now knows the
//! other holds and what failed; first thing in a session, the failures earlier runs kept,
//! tried again. The state itself is the peers' (`Peer::record_peer_revs` and friends).

use std::collections::BTreeMap;

use settee_revtree::{Rev, Seq};

use super::pipeline::{add, MAX_RECORDED_FAILURES};
use super::run::Progress;
use super::sink::{error_chain, Ctx};
use super::Replication;
use crate::events::Event;
use crate::peer::{ChangesBatch, DocFailure, Peer};
use crate::Result;

impl<S: Peer, T: Peer> Replication<S, T> {
    /// Tells both peers what the other holds after a batch (`Peer::record_peer_revs`): the
    /// target holds every listed revision except those of documents it refused (it had
    /// them, or took them); the source holds every listed revision, and the target only
    /// needs telling about the ones it did not just take from it (`Peer::write` recorded
    /// those with the data).
    pub(super) async fn record_sync_state(
        &self,
        source_id: &str,
        listed: BTreeMap<String, Vec<Rev>>,
        missing: BTreeMap<String, Vec<Rev>>,
        failures: &[DocFailure],
    ) -> Result<()> {
        let mut on_target = BTreeMap::new();
        let mut on_source = BTreeMap::new();
        let listed_ids: Vec<String> = listed.keys().cloned().collect();
        for (id, revs) in listed {
            let missing = missing.get(&id);
            let refused = failures.iter().any(|f| f.id == id);
            let had: Vec<Rev> = revs
                .iter()
                .filter(|r| missing.is_none_or(|m| !m.contains(r)))
                .cloned()
                .collect();
            if !had.is_empty() {
                on_source.insert(id.clone(), had.clone());
            }
            let held = if refused { had } else { revs };
            if !held.is_empty() {
                on_target.insert(id, held);
            }
        }
        // pouchdb-server (and a store refusing a pulled document) names no `rev` in a
        // refusal: the refused revision is then the one this batch sent for the document
        // (the highest, if it sent several).
        let refusals: Vec<DocFailure> = failures
            .iter()
            .map(|f| {
                let mut f = f.clone();
                if f.rev.is_none() {
                    f.rev = missing
                        .get(&f.id)
                        .and_then(|m| m.iter().max())
                        .map(ToString::to_string);
                }
                f
            })
            .collect();
        self.source
            .record_peer_revs(&self.target.identity(), on_target, refusals.clone())
            .await?;
        self.target
            .record_peer_revs(source_id, on_source, Vec::new())
            .await?;
        // What this batch could not take from the source stays part of the target's sync
        // state with it (listed, counted, tried again by the next session).
        self.target
            .record_failures_from(source_id, listed_ids, refusals)
            .await
    }

    /// Asks again, first thing in a session, for the revisions earlier runs could not write
    /// to the target (`Peer::failures_from`: a pull's failures) and those the target refused
    /// (`Peer::refused_by`: a push's rejections; the target's rules may have changed): one
    /// batch through the usual diff, fetch and write, whose results replace what was kept. A revision that fails again stays
    /// listed; an error here is reported and left for the next session, never fatal.
    pub(super) async fn retry_failures(&self, ctx: &Ctx, progress: &mut Progress, since: &Seq) {
        let (sid, tid) = (self.source.identity(), self.target.identity());
        let (failed, refused) = futures::join!(
            self.target.failures_from(&sid),
            self.source.refused_by(&tid)
        );
        let kept: Vec<DocFailure> = match (failed, refused) {
            (Ok(mut failed), Ok(refused)) => {
                failed.extend(refused);
                failed
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "could not read the failures to retry");
                return;
            }
        };
        if kept.is_empty() {
            return;
        }
        let mut changes: BTreeMap<String, crate::peer::Change> = BTreeMap::new();
        for f in kept {
            let change = changes
                .entry(f.id.clone())
                .or_insert_with(|| crate::peer::Change {
                    seq: since.clone(),
                    id: f.id.clone(),
                    changes: Vec::new(),
                    invalid_revs: Vec::new(),
                    deleted: false,
                    doc: None,
                });
            match f.rev.as_deref().map(str::parse::<Rev>) {
                Some(Ok(rev)) => change.changes.push(rev),
                Some(Err(_)) => change.invalid_revs.extend(f.rev),
                // No revision named: nothing to ask for; it stays listed as it was.
                None => {}
            }
        }
        tracing::info!(
            documents = changes.len(),
            "trying again what earlier runs could not write"
        );
        let batch = ChangesBatch {
            changes: changes.into_values().collect(),
            last_seq: since.clone(),
            pending: None,
        };
        match self.process(batch, false).await {
            Ok(p) => {
                add(&mut progress.stats, &p.delta);
                if progress.failures.len() < MAX_RECORDED_FAILURES {
                    progress.failures.extend(p.failures.iter().cloned());
                }
                ctx.emit_change(Event::Change {
                    direction: ctx.direction,
                    stats: progress.stats.clone(),
                    last_seq: progress.done_seq.clone(),
                    pending: None,
                    failures: p.failures,
                    ids: p.written,
                });
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "trying the earlier failures again failed; the next session tries again");
            }
        }
    }
}
