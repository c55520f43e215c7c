//! Writing fetched revisions to the target, with CouchDB's replicator's recovery from a
//! refused attachment stub: a revision the target refuses with `missing_stub` is fetched
//! again with every attachment's data (no `atts_since`) and written once more
//! (`couch_replicator_worker:fetch_doc`). A document refused for any other reason, or again,
//! is a [`DocFailure`] and the rest of the batch is written regardless: the peers turn a
//! request refused for one document into that document's result (`settee-couch`'s
//! `bulk_docs` halves such a request down to it). What to write, and when, is
//! `replication.rs`'s decision.

use serde_json::value::RawValue;
use settee_revtree::Rev;

use crate::budget::{ByteBudget, Reservation};
use crate::fetch::FetchQueue;
use crate::peer::{DocFailure, FetchRequest, Peer};
use crate::Result;

/// CouchDB's error name for an attachment stub the target cannot resolve.
const MISSING_STUB: &str = "missing_stub";

/// Writes `docs` (fetched from `source`) to `target`; returns the documents not written.
///
/// A stub is sent for an attachment the target should already hold (its `revpos` is at or
/// below a revision the target has on the document's path). The target can still lack it:
/// its copy of that revision was written by another replica with other attachments, or a
/// server resolves stubs by a digest it computed differently. Those revisions are fetched
/// again in full; only a second refusal is a failure.
///
/// `held` is the budget `docs` hold: it is given back as soon as they are written, before
/// any refetch asks the budget for more. A refetch that waited while its own batch kept its
/// share would wait forever with one batch in flight, or with a revision larger than a
/// share (which needs the whole budget).
pub(crate) async fn write_docs<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    budget: &ByteBudget,
    docs: Vec<Box<RawValue>>,
    held: Reservation,
) -> Result<Vec<DocFailure>> {
    let origin = source.identity();
    let refused = target.write(docs, &origin).await?;
    drop(held);
    let (stubs, mut failures): (Vec<DocFailure>, Vec<DocFailure>) =
        refused.into_iter().partition(|f| f.error == MISSING_STUB);
    let mut again = Vec::new();
    for f in stubs {
        match f.rev.as_deref().and_then(|r| r.parse::<Rev>().ok()) {
            Some(rev) => {
                tracing::info!(id = %f.id, %rev, reason = %f.reason, "attachment stub refused; sending the attachments in full");
                again.push(FetchRequest {
                    id: f.id,
                    rev,
                    atts_since: Vec::new(),
                });
            }
            // Without the revision there is nothing to fetch again.
            None => failures.push(f),
        }
    }
    if again.is_empty() {
        return Ok(failures);
    }
    // Fetched again within the byte budget, as every fetch is (attachment data in full can
    // be much larger than the stubs were).
    let mut queue = FetchQueue::new(again);
    while let Some(piece) = queue.next(source, budget).await? {
        failures.extend(piece.failures);
        failures.extend(target.write(piece.docs, &origin).await?);
    }
    Ok(failures)
}
