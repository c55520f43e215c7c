//! Attachment bytes streamed out of a store into a response: one chunk of the store's
//! [`AttachmentReader`] at a time, each read on the blocking pool through
//! [`OpenDb::run`] (so a `DELETE /{db}` waits for it as for any store call), and a body
//! built of such streams and fixed bytes (multipart answers, byte ranges) whose length is
//! known before the first byte is sent. What to stream is the handlers' decision.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use settee_store::AttachmentReader;

use crate::registry::OpenDb;

/// Bytes on their way to the client.
pub(crate) type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// `take` bytes of `reader`'s attachment from byte `skip` on, read one store chunk at a
/// time. The store's reader cannot seek, so the bytes before `skip` are read and dropped
/// (a Range far into a large attachment costs the reads of what it skips, never more
/// than one chunk of memory). The stream fails (and so the response is cut short, which
/// the client sees as a broken body, never as other bytes) when the store fails, when the
/// attachment ends before `skip + take`, or when the database is being deleted.
pub(crate) fn reader_stream(
    open: Arc<OpenDb>,
    reader: AttachmentReader,
    skip: u64,
    take: u64,
) -> ByteStream {
    let stream = async_stream::try_stream! {
        let closed = open.closed();
        let (mut skip, mut left) = (skip, take);
        let mut reader = Some(reader);
        while left > 0 {
            let Some(r) = reader.take() else { break };
            let read = open.run(move |_| {
                let mut r = r;
                let chunk = r.next_chunk();
                Ok((r, chunk))
            });
            // `cancelled` and the store call are both cancel-safe here: dropping the call
            // leaves the reader behind, and the stream ends with an error anyway.
            let read: io::Result<_> = tokio::select! {
                () = closed.cancelled() => Err(io::Error::other("the database is being deleted")),
                res = read => res.map_err(|e| io::Error::other(e.reason)),
            };
            let (r, chunk) = read?;
            reader = Some(r);
            let Some(chunk) = chunk.map_err(io::Error::other)? else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the attachment ended early"))?;
                break;
            };
            let mut chunk = Bytes::from(chunk);
            let len = chunk.len() as u64;
            if skip >= len {
                skip -= len;
                continue;
            }
            // INVARIANT: skip < len, a chunk's length, which fits a usize.
            chunk = chunk.slice(skip as usize..);
            skip = 0;
            if chunk.len() as u64 > left {
                // INVARIANT: left < chunk.len(), a usize.
                chunk.truncate(left as usize);
            }
            left -= chunk.len() as u64;
            yield chunk;
        }
    };
    stream.boxed()
}

/// A response body made of `segments` in order, fixed bytes or streams, whose total
/// length is `length` (given, so that the response has a `Content-Length`).
pub(crate) struct Segments {
    parts: Vec<ByteStream>,
    length: u64,
}

impl Segments {
    pub(crate) fn new() -> Segments {
        Segments {
            parts: Vec::new(),
            length: 0,
        }
    }

    /// Fixed bytes.
    pub(crate) fn bytes(&mut self, b: impl Into<Bytes>) {
        let b: Bytes = b.into();
        self.length += b.len() as u64;
        self.parts
            .push(futures::stream::once(async move { Ok(b) }).boxed());
    }

    /// A stream that gives exactly `length` bytes.
    pub(crate) fn stream(&mut self, s: ByteStream, length: u64) {
        self.length += length;
        self.parts.push(s);
    }

    /// The total length so far.
    pub(crate) fn length(&self) -> u64 {
        self.length
    }

    /// The body, streamed part after part (each stream is started only when the one
    /// before it has ended, so at most one store reader is being read at once).
    pub(crate) fn into_body(self) -> Body {
        Body::from_stream(futures::stream::iter(self.parts).flatten())
    }
}
