//! Request bytes staged into a store as they arrive ([`Database::stage_attachment`] on
//! the blocking pool, reading the body through a [`SyncIoBridge`]): at most one store
//! chunk of an attachment is in memory, whatever its length. The size limit
//! ([`crate::RequestLimits::max_attachment_size`]) is counted as the bytes arrive; a body
//! past it, one that stops arriving (the idle timeout of `body.rs`) or breaks leaves
//! nothing in the store (an unfinished stage is removed when dropped). Which document the
//! staged bytes join is the caller's.
//!
//! [`Database::stage_attachment`]: settee_store::Database::stage_attachment

use std::io;
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use settee_store::{Encoding, StagedAttachment};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::HttpError;
use crate::registry::OpenDb;

/// Why the bytes being staged stopped: carried inside the `io::Error` the store's reader
/// sees, and turned back into the answer's status afterwards.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fault {
    /// More bytes than the limit.
    #[error("the attachment is larger than the limit")]
    TooLarge,
    /// The body stopped arriving for longer than the idle timeout.
    #[error("the request body stopped arriving")]
    Stalled,
    /// The body broke (the client went away, a bad chunked encoding), or its bytes are
    /// not what was announced (`reason`).
    #[error("{0}")]
    Broken(String),
}

impl Fault {
    /// The answer to a request whose bytes failed so.
    pub(crate) fn to_http(&self) -> HttpError {
        match self {
            Fault::TooLarge => HttpError::too_large(),
            Fault::Stalled => crate::body::stalled(),
            Fault::Broken(reason) => HttpError::bad_request(reason.clone()),
        }
    }

    /// The fault inside an I/O error, if it is one of ours.
    pub(crate) fn of(e: &io::Error) -> Option<&Fault> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Fault>())
    }

    /// The answer to a request whose body stream ([`body_stream`]) failed with `e`.
    pub(crate) fn answer(e: &io::Error) -> HttpError {
        match Fault::of(e) {
            Some(f) => f.to_http(),
            None => HttpError::bad_request(e.to_string()),
        }
    }
}

/// A request body as a stream of bytes, its errors as [`Fault`]s.
pub(crate) fn body_stream(body: Body) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
    body.into_data_stream().map(|r| {
        r.map_err(|e| {
            let fault = if crate::body::is_stalled(&e) {
                Fault::Stalled
            } else {
                Fault::Broken(format!("the request body could not be read: {e}"))
            };
            io::Error::other(fault)
        })
    })
}

/// Whether a body announces (`Content-Length`) more than `limit` bytes: 413 before
/// anything of it is read.
pub(crate) fn check_announced(body: &Body, limit: u64) -> Result<(), HttpError> {
    if body.size_hint().lower() > limit {
        return Err(HttpError::too_large());
    }
    Ok(())
}

/// `stream`, failing with [`Fault::TooLarge`] once more than `limit` bytes have come.
pub(crate) fn limited<S>(stream: S, limit: u64) -> impl Stream<Item = io::Result<Bytes>> + Send
where
    S: Stream<Item = io::Result<Bytes>> + Send,
{
    let mut seen: u64 = 0;
    stream.map(move |r| {
        let b = r?;
        seen = seen.saturating_add(b.len() as u64);
        if seen > limit {
            return Err(io::Error::other(Fault::TooLarge));
        }
        Ok(b)
    })
}

/// What staged bytes must be: how they are encoded, and what the attachment's stub says of
/// them (checked by the store as they are staged).
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// How the bytes are encoded (they are kept so).
    pub(crate) encoding: Encoding,
    /// The attachment's length once decoded.
    pub(crate) decoded_length: u64,
    /// The digest of the bytes as given, when the stub names one.
    pub(crate) digest: Option<String>,
}

/// Stages the bytes of `stream` (at most `limit`) into `open`'s store.
///
/// # Errors
/// 413 past `limit`; 408 when the body stalls; 400 when it breaks; the store's errors.
pub(crate) async fn stage<S>(
    open: &Arc<OpenDb>,
    stream: S,
    limit: u64,
) -> Result<StagedAttachment, HttpError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    stage_as(open, stream, limit, None).await
}

/// [`stage`], the bytes checked against `expected` when given (400, nothing staged,
/// when they do not decode, or have another length or digest).
///
/// # Errors
/// As [`stage`], and 400 when the bytes are not what was expected.
pub(crate) async fn stage_as<S>(
    open: &Arc<OpenDb>,
    stream: S,
    limit: u64,
    expected: Option<Expected>,
) -> Result<StagedAttachment, HttpError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let stream = Box::pin(limited(stream, limit));
    // Made here, on the runtime: the bridge keeps its handle to block on reads from the
    // blocking pool.
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let staged = open
        .run(move |db| {
            Ok(match expected {
                None => db.stage_attachment(reader),
                Some(e) => db.stage_attachment_encoded(
                    reader,
                    e.encoding,
                    e.decoded_length,
                    e.digest.as_deref(),
                ),
            })
        })
        .await?;
    staged.map_err(|e| match &e {
        settee_store::Error::AttachmentSource { source } => match Fault::of(source) {
            Some(f) => f.to_http(),
            None => HttpError::bad_request(format!("the attachment could not be read: {source}")),
        },
        _ => e.into(),
    })
}
