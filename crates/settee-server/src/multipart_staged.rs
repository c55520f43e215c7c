//! A replicated revision sent as `multipart/related` (`PUT /{db}/{docid}?new_edits=false`,
//! what CouchDB's and Settee's replicators send) written without holding its attachments:
//! each part's bytes go, as [`RelatedReader`] reads them, through a small bounded channel
//! into the store on the blocking pool (`stage.rs`: one store chunk in memory), encoded
//! ones as they are (`encoding: gzip`, kept with CouchDB's digest), each checked against
//! its stub (length, decoded length, digest); then the validators see the document with
//! its `follows` stubs and the store writes it with the staged bytes in one call
//! (`Database::bulk_doc_staged_from`). Whatever fails, nothing staged stays: what was
//! staged is removed before the answer is sent.
//!
//! An edit (`new_edits=true`) is read by `multipart_put.rs` with its parts inline: the
//! store has no call that writes an edit with several staged attachments in one write.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Map, Value};
use settee_store::{DocResult, Encoding, StagedAttachment};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::HttpError;
use crate::multipart_put::{Part, RelatedReader, Step};
use crate::registry::OpenDb;
use crate::stage::{self, Expected, Fault};
use crate::validate::{Validators, Writer};
use crate::RequestLimits;

/// How many pieces of a part may wait between the body and the store: the reading of
/// the body waits when they are there (each piece is what the connection delivered, a
/// few KB to a few hundred), so what a part holds in memory stays small whatever its
/// length, while the store is rarely left with nothing to write.
const IN_FLIGHT: usize = 4;

/// The origin recorded for the revisions a client replicates here: none (the server
/// does not know the client's name for itself, and no remote is registered under "").
const NO_ORIGIN: &str = "";

/// A staged attachment, named.
pub(crate) type Staged = Vec<(String, StagedAttachment)>;

/// Reads a `multipart/related` replicated revision from `body` (of type `content_type`):
/// the document as sent (its `follows` stubs kept) and its attachments staged in `open`'s
/// store. The JSON part may have `limits.max_body` bytes, each attachment
/// `limits.max_attachment_size`.
///
/// # Errors
/// As [`RelatedReader::feed`] and [`RelatedReader::finish`]; 400 when a part does not
/// check against its stub (length, decoded length, digest) or names an encoding the
/// store does not keep; 413 past a limit; 408 when the body stalls. Nothing stays staged.
pub(crate) async fn read_related_staged(
    open: &Arc<OpenDb>,
    content_type: &str,
    body: Body,
    limits: &RequestLimits,
) -> Result<(Map<String, Value>, Staged), HttpError> {
    let mut parts = Parts {
        staging: None,
        done: Vec::new(),
    };
    match read(open, content_type, body, limits, &mut parts).await {
        Ok(doc) => Ok((doc, parts.done)),
        Err(e) => {
            parts.discard(open).await;
            Err(e)
        }
    }
}

async fn read(
    open: &Arc<OpenDb>,
    content_type: &str,
    body: Body,
    limits: &RequestLimits,
    parts: &mut Parts,
) -> Result<Map<String, Value>, HttpError> {
    let mut reader = RelatedReader::new(content_type, limits.max_body)?;
    let mut steps = Vec::new();
    let mut stream = stage::body_stream(body);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Fault::answer(&e))?;
        let ended = reader.feed(&chunk, &mut steps)?;
        for step in steps.drain(..) {
            match step {
                Step::Start(part) => {
                    parts.staging = Some(Staging::start(open, part, limits.max_attachment_size)?)
                }
                Step::Bytes(b) => {
                    let Some(staging) = &mut parts.staging else {
                        return Err(HttpError::internal("part bytes outside a part"));
                    };
                    if staging.tx.send(Ok(b)).await.is_err() {
                        // The store stopped reading: it refused the bytes, and says why.
                        let Some(staging) = parts.staging.take() else {
                            return Err(HttpError::internal("part bytes outside a part"));
                        };
                        let staged = staging.finish().await?;
                        parts.done.push(staged);
                        return Err(HttpError::internal("the store stopped reading a part"));
                    }
                }
                Step::End => {
                    let Some(staging) = parts.staging.take() else {
                        return Err(HttpError::internal("a part ended that did not begin"));
                    };
                    parts.done.push(staging.finish().await?);
                }
            }
        }
        if ended {
            break;
        }
    }
    reader.finish()
}

/// The parts of one body: the one being staged, and those staged.
struct Parts {
    staging: Option<Staging>,
    done: Staged,
}

impl Parts {
    /// Stops what is being staged and removes all that was.
    async fn discard(self, open: &Arc<OpenDb>) {
        let mut done = self.done;
        if let Some(staging) = self.staging {
            done.extend(staging.abort().await);
        }
        discard(open, done).await;
    }
}

/// Removes `staged` (on the blocking pool: a removal writes to the store), and waits for
/// it, so that a refused body leaves nothing behind once answered.
pub(crate) async fn discard(open: &Arc<OpenDb>, staged: Staged) {
    if !staged.is_empty() {
        // An error here is the store's: the blobs keep their pending markers, and the
        // next open removes them.
        let _ = open
            .run(move |_| {
                drop(staged);
                Ok(())
            })
            .await;
    }
}

/// One part on its way into the store: its bytes go through `tx` to a store call on the
/// blocking pool (`task`).
struct Staging {
    name: String,
    tx: mpsc::Sender<io::Result<Bytes>>,
    task: JoinHandle<Result<StagedAttachment, HttpError>>,
}

impl Staging {
    /// Starts staging `part` (at most `limit` bytes).
    fn start(open: &Arc<OpenDb>, part: Part, limit: u64) -> Result<Staging, HttpError> {
        let expected = expected(&part)?;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let open = Arc::clone(open);
        let task =
            tokio::spawn(async move { stage::stage_as(&open, stream, limit, expected).await });
        Ok(Staging {
            name: part.name,
            tx,
            task,
        })
    }

    /// All the part's bytes were sent: the staged attachment, or why the store refused it.
    async fn finish(self) -> Result<(String, StagedAttachment), HttpError> {
        drop(self.tx);
        let staged = self
            .task
            .await
            .map_err(|e| HttpError::internal(format!("staging a part failed: {e}")))?;
        let staged = staged.map_err(|e| {
            HttpError::new(
                e.status,
                e.error.clone(),
                format!("attachment {}: {}", self.name, e.reason),
            )
        })?;
        Ok((self.name, staged))
    }

    /// Stops the staging (the body was refused) and waits for it to end; what it staged
    /// anyway, if it ended first, is the caller's to remove.
    async fn abort(self) -> Option<(String, StagedAttachment)> {
        let why = io::Error::other(Fault::Broken("the body was refused".into()));
        // Fails only when the store stopped reading already.
        let _ = self.tx.send(Err(why)).await;
        drop(self.tx);
        let staged = self.task.await.ok()?.ok()?;
        Some((self.name, staged))
    }
}

/// What the store must check a part's bytes against: the stub's encoding, decoded length
/// and digest (an `md5-` one: the store computes no other).
fn expected(part: &Part) -> Result<Option<Expected>, HttpError> {
    let digest = part.digest.clone().filter(|d| d.starts_with("md5-"));
    let Some(encoding) = part.encoding.as_deref() else {
        return Ok(part.length.map(|decoded_length| Expected {
            encoding: Encoding::Identity,
            decoded_length,
            digest,
        }));
    };
    let encoding = encoding.parse::<Encoding>().map_err(|_| {
        HttpError::bad_request(format!(
            "attachment {}: unsupported encoding {encoding:?}",
            part.name
        ))
    })?;
    let decoded_length = part.length.ok_or_else(|| {
        HttpError::bad_request(format!(
            "attachment {}: an encoded attachment needs its length",
            part.name
        ))
    })?;
    Ok(Some(Expected {
        encoding,
        decoded_length,
        digest,
    }))
}

/// Writes a replicated revision `doc` with its `staged` attachments: the validators see it
/// with its `follows` stubs, then the store writes it and commits the staged bytes in
/// one call. A per-document error is the request's; staged bytes the write did not take
/// are removed.
///
/// # Errors
/// The validators' refusal; the document's error (a missing `_rev`, ...); the store's.
pub(crate) async fn write_staged(
    open: &Arc<OpenDb>,
    doc: Value,
    staged: Staged,
    writer: Writer,
) -> Result<DocResult, HttpError> {
    let result = open
        .run(move |db| {
            let mut doc = doc;
            Validators::load(db)?.check(db, &writer, &mut doc, false)?;
            let raw = serde_json::value::to_raw_value(&doc)
                .map_err(|e| HttpError::internal(format!("a document as JSON: {e}")))?;
            Ok(db.bulk_doc_staged_from(&raw, staged, NO_ORIGIN)?)
        })
        .await?;
    match &result.error {
        Some(e) => Err(crate::error::doc_error(
            e,
            result.reason.as_deref().unwrap_or(""),
        )),
        None => Ok(result),
    }
}
