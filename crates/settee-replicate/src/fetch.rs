//! Fetching the revisions a batch needs from the source, piece by piece within the byte
//! budget ([`ByteBudget`]), so that the caller writes each piece and frees it before the next
//! is read. Every requested revision ends up fetched or a per-document failure: a revision
//! the source does not give is asked for once more on its own, then reported, never
//! dropped. Writing is `replication.rs`'s business.

use std::collections::VecDeque;

use serde_json::value::RawValue;

use crate::budget::{ByteBudget, Reservation};
use crate::peer::{DocFailure, FetchRequest, Fetched, Peer};
use crate::{Error, Result};

/// Fetched documents and the part of the budget they hold until they are written.
pub(crate) struct Piece {
    /// The documents, as JSON text.
    pub(crate) docs: Vec<Box<RawValue>>,
    /// Revisions asked for that the source did not give.
    pub(crate) failures: Vec<DocFailure>,
    /// Released when dropped: drop it once `docs` are written.
    pub(crate) held: Reservation,
}

/// The revisions of one batch still to fetch.
pub(crate) struct FetchQueue {
    rest: VecDeque<FetchRequest>,
    /// How attachments the target needs are fetched.
    attachments: Attachments,
}

/// How a fetch brings the attachments the target lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attachments {
    /// Inline, base64 in the documents' JSON ([`Peer::fetch`]).
    Inline,
    /// As `follows` stubs whose bytes are streamed ([`Peer::fetch_streamed`]), but only for
    /// a revision too large for a share of the budget; the others inline. For a remote
    /// source: each streamed attachment is one more request, and a flaky link fails a batch
    /// (and its retries) in proportion to its requests, so small ones ride in `_bulk_get`.
    StreamedWhenLarge,
    /// Always as `follows` stubs: a local source reads them without a request.
    Streamed,
}

impl FetchQueue {
    /// The revisions `reqs`, their attachments fetched as `attachments` says.
    pub(crate) fn new(reqs: Vec<FetchRequest>, attachments: Attachments) -> FetchQueue {
        FetchQueue {
            rest: reqs.into(),
            attachments,
        }
    }

    /// The next piece, or `None` when everything is fetched. A piece asks for
    /// `budget.chunk()` revisions and reads at most one share of the budget; an answer too
    /// large for that is asked again in halves; one revision too large for a share goes
    /// alone with the whole budget, and one too large even for the client becomes a
    /// `too_large` failure of that document.
    ///
    /// # Errors
    /// The source's errors other than the size of its answer.
    pub(crate) async fn next<S: Peer>(
        &mut self,
        source: &S,
        budget: &ByteBudget,
    ) -> Result<Option<Piece>> {
        loop {
            let n = budget.chunk().min(self.rest.len());
            if n == 0 {
                return Ok(None);
            }
            let piece: Vec<FetchRequest> = self.rest.drain(..n).collect();
            let share = budget.share_bytes();
            let mut held = budget.reserve_share().await;
            match fetch_each(
                source,
                piece.clone(),
                share,
                self.attachments == Attachments::Streamed,
            )
            .await
            {
                Ok((docs, failures)) => {
                    let bytes = size(&docs);
                    held.keep(bytes);
                    budget.grow(n, bytes);
                    return Ok(Some(Piece {
                        docs,
                        failures,
                        held,
                    }));
                }
                Err(e) if is_too_large(&e) && n > 1 => {
                    drop(held);
                    budget.shrink(n);
                    tracing::debug!(
                        asked = n,
                        limit = share,
                        "fetch answer over its share of the byte budget; asking for fewer"
                    );
                    for r in piece.into_iter().rev() {
                        self.rest.push_front(r);
                    }
                }
                Err(e) if is_too_large(&e) => {
                    drop(held);
                    let streamed = self.attachments != Attachments::Inline;
                    return alone(source, budget, piece, streamed).await.map(Some);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One revision larger than a share: fetched while holding the whole budget, read up to
/// the client's own limit.
async fn alone<S: Peer>(
    source: &S,
    budget: &ByteBudget,
    piece: Vec<FetchRequest>,
    streamed: bool,
) -> Result<Piece> {
    let mut held = budget.reserve_all().await;
    tracing::debug!(id = ?piece.first().map(|r| &r.id), "fetching a large revision alone");
    match fetch_each(source, piece.clone(), u64::MAX, streamed).await {
        Ok((docs, failures)) => {
            held.keep(size(&docs));
            Ok(Piece {
                docs,
                failures,
                held,
            })
        }
        Err(e) if is_too_large(&e) => Ok(Piece {
            docs: Vec::new(),
            failures: piece
                .into_iter()
                .map(|r| DocFailure {
                    id: r.id,
                    rev: Some(r.rev.to_string()),
                    error: "too_large".into(),
                    reason: crate::error_chain(&e),
                })
                .collect(),
            held,
        }),
        Err(e) => Err(e),
    }
}

/// Fetches `reqs`; those the source fails to give (a compaction race, a result left out of
/// its answer) are asked once more on their own, and those still missing are per-document
/// failures.
async fn fetch_each<S: Peer>(
    source: &S,
    reqs: Vec<FetchRequest>,
    limit: u64,
    streamed: bool,
) -> Result<(Vec<Box<RawValue>>, Vec<DocFailure>)> {
    let fetch = |reqs: Vec<FetchRequest>| async move {
        if streamed {
            source.fetch_streamed(reqs, limit).await
        } else {
            source.fetch(reqs, limit).await
        }
    };
    let mut docs = Vec::with_capacity(reqs.len());
    let mut failed = Vec::new();
    for f in fetch(reqs.clone()).await? {
        match f {
            Fetched::Doc(d) => docs.push(d),
            Fetched::Failed(fail) => failed.push(fail),
        }
    }
    if failed.is_empty() {
        return Ok((docs, failed));
    }
    let names = |f: &DocFailure, r: &FetchRequest| {
        f.id == r.id && f.rev.as_deref().is_none_or(|v| v == r.rev.to_string())
    };
    let again: Vec<FetchRequest> = reqs
        .into_iter()
        .filter(|r| failed.iter().any(|f| names(f, r)))
        .collect();
    // A failure that names no request (an odd answer) is reported as it is.
    let mut failures: Vec<DocFailure> = failed
        .into_iter()
        .filter(|f| !again.iter().any(|r| names(f, r)))
        .collect();
    if !again.is_empty() {
        for f in fetch(again).await? {
            match f {
                Fetched::Doc(d) => docs.push(d),
                Fetched::Failed(fail) => failures.push(fail),
            }
        }
    }
    for f in &failures {
        tracing::warn!(id = %f.id, rev = ?f.rev, error = %f.error, reason = %f.reason, "revision not fetched from the source");
    }
    Ok((docs, failures))
}

fn size(docs: &[Box<RawValue>]) -> u64 {
    docs.iter()
        .map(|d| d.get().len() as u64)
        .fold(0, u64::saturating_add)
}

fn is_too_large(e: &Error) -> bool {
    matches!(e, Error::FetchTooLarge { .. })
}
