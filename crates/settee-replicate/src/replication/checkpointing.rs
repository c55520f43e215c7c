//! Writing a checkpoint: the target made durable first, then the replication log recorded
//! on the target and the source. When to write one (an interval, caught up, the end) is the
//! run loop's and the pipeline's decision.

use std::time::Instant;

use super::run::{Progress, SessionMeta};
use super::sink::Ctx;
use super::Replication;
use crate::checkpoint::{self, Logs, ReplicationLog, Session, HISTORY_LIMIT};
use crate::events::Event;
use crate::peer::Peer;
use crate::Result;

impl<S: Peer, T: Peer> Replication<S, T> {
    /// Makes the target durable, then records `progress.done_seq` on the target and the
    /// source. Skipped when nothing moved since the last checkpoint (unless `force`, which
    /// still skips if the sequence is unchanged and there are no new failures to record).
    pub(super) async fn checkpoint(
        &self,
        ctx: &Ctx,
        session: &SessionMeta,
        progress: &mut Progress,
        logs: &mut Logs,
        force: bool,
    ) -> Result<()> {
        progress.last_checkpoint = Instant::now();
        let unchanged = progress.checkpointed_seq.as_ref() == Some(&progress.done_seq);
        if unchanged && (!force || progress.failures.is_empty()) {
            return Ok(());
        }
        if progress.done_seq.is_zero() && progress.failures.is_empty() {
            return Ok(());
        }
        // INVARIANT: the checkpoint never points past data that is not durable on the target.
        self.target.commit().await?;
        let entry = Session {
            session_id: session.session_id.clone(),
            start_time: session.start_time.clone(),
            end_time: checkpoint::now_rfc3339(),
            start_last_seq: session.start_seq.clone(),
            end_last_seq: progress.done_seq.clone(),
            recorded_seq: progress.done_seq.clone(),
            missing_checked: progress.stats.missing_checked,
            missing_found: progress.stats.missing_found,
            docs_read: progress.stats.docs_read,
            docs_written: progress.stats.docs_written,
            doc_write_failures: progress.stats.doc_write_failures,
        };
        let previous = logs
            .target
            .log
            .as_ref()
            .or(logs.source.log.as_ref())
            .map(|l| l.history.clone())
            .unwrap_or_default();
        let mut history = vec![entry];
        history.extend(
            previous
                .into_iter()
                .filter(|s| s.session_id != session.session_id),
        );
        history.truncate(HISTORY_LIMIT);
        let log = ReplicationLog {
            session_id: session.session_id.clone(),
            source_last_seq: progress.done_seq.clone(),
            replication_id_version: 1,
            replicator: "settee".into(),
            history,
            doc_failures: progress.failures.clone(),
        };
        logs.target.write(&self.target, &log).await?;
        logs.source.write(&self.source, &log).await?;
        if self.source.is_local() {
            // A local source may flush on an interval: make its copy of the log durable too,
            // or a crash would leave only the target's and the next run would start over.
            self.source.commit().await?;
        }
        progress.checkpointed_seq = Some(progress.done_seq.clone());
        if self.source.is_local() {
            self.refresh_pending(progress).await;
        }
        tracing::info!(seq = %progress.done_seq, "checkpoint written");
        ctx.emit(Event::Checkpoint {
            direction: ctx.direction,
            seq: progress.done_seq.clone(),
        })
        .await;
        Ok(())
    }
}
