//! Writing fetched revisions to the target, with CouchDB's replicator's recovery from a
//! refused attachment stub: a revision the target refuses with `missing_stub` is fetched
//! again with every attachment's data (no `atts_since`) and written once more
//! (`couch_replicator_worker:fetch_doc`). A document refused for any other reason, or again,
//! is a [`DocFailure`] and the rest of the batch is written regardless: the peers turn a
//! request refused for one document into that document's result (`settee-couch`'s
//! `bulk_docs` halves such a request down to it). What to write, and when, is
//! `replication.rs`'s decision.
//!
//! A remote target's answer is checked, not trusted: with `new_edits=false` CouchDB answers
//! only the refusals, so a refusal lost on the way (a proxy, a cut answer) reads as a
//! success, the document would look synced and the checkpoint would pass it. A `_revs_diff`
//! of what was written confirms it (one small request per write); a revision still missing
//! without a refusal, and not on the path of one of the target's leaves (PouchDB keeps a
//! revision it first learned as an ancestor without a body, calls it missing, and skips
//! writing it: [`Peer::held_as_ancestors`]), fails the batch with [`Error::Unconfirmed`],
//! which is retried.

use serde_json::value::RawValue;
use settee_revtree::Rev;

use crate::budget::{ByteBudget, Reservation};
use crate::fetch::{Attachments, FetchQueue};
use std::collections::BTreeMap;

use crate::peer::{DocFailure, FetchRequest, Peer};
use crate::streamed;
use crate::{Error, Result};

/// CouchDB's error name for an attachment stub the target cannot resolve.
const MISSING_STUB: &str = "missing_stub";

/// Pauses before asking a target's `_revs_diff` again about revisions it just called
/// missing although their write was not refused. A CouchDB cluster answers `_revs_diff`
/// from the first copy of each shard range to reply, and a write is acknowledged once a
/// quorum of copies has it: the copy outside the quorum can lag for a moment, and says
/// "missing" for what the cluster holds. Asking again after a pause costs one small
/// request; the check of every such document's leaves it replaces costs one request per
/// document (on a 1M-note push to a 3-node cluster: 4.7x slower than the raw write rate).
const CONFIRM_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(400),
];

/// Writes `docs` (fetched from `source`) to `target`; returns the documents not written.
///
/// A stub is sent for an attachment the target should already hold (its `revpos` is at or
/// below a revision the target has on the document's path). The target can still lack it:
/// its copy of that revision was written by another replica with other attachments, or a
/// server resolves stubs by a digest it computed differently. Those revisions are fetched
/// again in full; only a second refusal is a failure. With `confirm_writes`, a remote
/// target's answers are confirmed (see the module docs).
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
    confirm_writes: bool,
) -> Result<Vec<DocFailure>> {
    let origin = source.identity();
    let confirm_writes = confirm_writes && !target.is_local();
    let written = if !confirm_writes {
        BTreeMap::new()
    } else {
        revisions_of(&docs)
    };
    let refused = write_piece(source, target, budget, docs, held, &origin).await?;
    confirm(target, written, &refused).await?;
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
    let mut queue = FetchQueue::new(again, streams(source, target));
    while let Some(piece) = queue.next(source, budget).await? {
        failures.extend(piece.failures);
        let written = if confirm_writes {
            revisions_of(&piece.docs)
        } else {
            BTreeMap::new()
        };
        let refused = write_piece(source, target, budget, piece.docs, piece.held, &origin).await?;
        confirm(target, written, &refused).await?;
        failures.extend(refused);
    }
    Ok(failures)
}

/// How attachments go from `source` to `target`: streamed when the target takes them
/// ([`Peer::takes_streamed`]), always from a local source or one that answers multipart
/// (`pulls`), else only for revisions too large for a share of the budget; between two local stores inline (no wire
/// to spare the base64 on).
pub(crate) fn streams<S: Peer, T: Peer>(source: &S, target: &T) -> Attachments {
    if !target.takes_streamed() || (source.is_local() && target.is_local()) {
        Attachments::Inline
    } else if source.is_local() || pulls(source) {
        Attachments::Streamed
    } else {
        Attachments::StreamedWhenLarge
    }
}

/// Writes one fetched piece: the documents with inline attachments (or none) in one
/// [`Peer::write`], then, with the piece's budget given back, each one with `follows`
/// attachments alone, its bytes streamed from `source` ([`streamed::write_one`]). Returns
/// the refusals of both.
async fn write_piece<S: Peer, T: Peer>(
    source: &S,
    target: &T,
    budget: &ByteBudget,
    docs: Vec<Box<RawValue>>,
    held: Reservation,
    origin: &str,
) -> Result<Vec<DocFailure>> {
    let (alone, together): (Vec<_>, Vec<_>) = if streams(source, target) != Attachments::Inline {
        docs.into_iter().partition(|d| streamed::has_follows(d))
    } else {
        (Vec::new(), docs)
    };
    let mut refused = if together.is_empty() {
        Vec::new()
    } else {
        target.write(together, origin).await?
    };
    drop(held);
    if pulls(source) {
        refused.extend(streamed::write_pulled(source, target, budget, alone, origin).await?);
        return Ok(refused);
    }
    for doc in alone {
        refused.extend(streamed::write_one(source, target, budget, doc, origin).await?);
    }
    Ok(refused)
}

/// Whether revisions with attachments are read from `source` in one multipart answer
/// ([`Peer::pull_streamed`]) rather than inline or one request per attachment: from any
/// remote source that answers multipart, to any target (a store keeps gzipped attachments
/// gzipped, with their encoding, as a remote database does).
fn pulls<S: Peer>(source: &S) -> bool {
    !source.is_local() && source.pulls_streamed()
}

/// The (id, revision) of each document, read from its JSON text (the other members are
/// skipped). A document whose revision cannot be read is left out: the target refuses it
/// by itself.
fn revisions_of(docs: &[Box<RawValue>]) -> BTreeMap<String, Vec<Rev>> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "_id")]
        id: String,
        #[serde(rename = "_rev")]
        rev: String,
    }
    let mut out: BTreeMap<String, Vec<Rev>> = BTreeMap::new();
    for d in docs {
        let Ok(head) = serde_json::from_str::<Head>(d.get()) else {
            continue;
        };
        if let Ok(rev) = head.rev.parse::<Rev>() {
            out.entry(head.id).or_default().push(rev);
        }
    }
    out
}

/// Of `asked`, the revisions the target's `_revs_diff` calls missing. Only a revision named
/// as it was written counts: a server that spells a revision its own way (CouchDB
/// lower-cases some hashes) is not asked again forever.
async fn still_missing<T: Peer>(
    target: &T,
    asked: BTreeMap<String, Vec<Rev>>,
) -> Result<BTreeMap<String, Vec<Rev>>> {
    let mut lacking = BTreeMap::new();
    for (id, d) in target.revs_diff(asked.clone()).await? {
        let named = asked.get(&id).cloned().unwrap_or_default();
        let missing: Vec<Rev> = d
            .missing
            .into_iter()
            .filter(|r| named.contains(r))
            .collect();
        if !missing.is_empty() {
            lacking.insert(id, missing);
        }
    }
    Ok(lacking)
}

/// Checks that the target has every revision in `written` that it did not refuse.
///
/// # Errors
/// [`Error::Unconfirmed`] when it lacks some; the target's own errors.
async fn confirm<T: Peer>(
    target: &T,
    mut written: BTreeMap<String, Vec<Rev>>,
    refused: &[DocFailure],
) -> Result<()> {
    for f in refused {
        match f.rev.as_deref().and_then(|r| r.parse::<Rev>().ok()) {
            Some(rev) => {
                if let Some(revs) = written.get_mut(&f.id) {
                    revs.retain(|r| *r != rev);
                }
            }
            // A refusal without a revision (pouchdb-server's) covers the document.
            None => {
                written.remove(&f.id);
            }
        }
    }
    written.retain(|_, revs| !revs.is_empty());
    if written.is_empty() {
        return Ok(());
    }
    let mut lacking = still_missing(target, written).await?;
    for (asked, pause) in CONFIRM_PAUSES.into_iter().enumerate() {
        if lacking.is_empty() {
            break;
        }
        tracing::debug!(
            documents = lacking.len(),
            "the target calls written revisions missing; asking again (a cluster's copy may lag)"
        );
        tokio::time::sleep(pause).await;
        let before = lacking.len();
        lacking = still_missing(target, lacking).await?;
        // Twice the same answer is not a copy catching up (PouchDB's body-less ancestors
        // stay missing for ever): the leaves decide below.
        if asked > 0 && lacking.len() >= before {
            break;
        }
    }
    // A revision the target holds only as a body-less ancestor (PouchDB) is held.
    if !lacking.is_empty() {
        for (id, held) in target.held_as_ancestors(lacking.clone()).await? {
            if let Some(revs) = lacking.get_mut(&id) {
                revs.retain(|r| !held.contains(r));
            }
        }
    }
    let lacking: Vec<(String, Rev)> = lacking
        .into_iter()
        .flat_map(|(id, revs)| revs.into_iter().map(move |r| (id.clone(), r)))
        .collect();
    match lacking.first() {
        None => Ok(()),
        Some((id, rev)) => {
            tracing::warn!(count = lacking.len(), first = %id, %rev, refused = ?refused, "the target does not have revisions its write answer did not refuse; the batch is written again");
            Err(Error::Unconfirmed {
                peer: target.describe(),
                count: lacking.len(),
                first: format!("{id} {rev}"),
            })
        }
    }
}
