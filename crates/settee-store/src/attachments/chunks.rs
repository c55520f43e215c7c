//! Where an attachment's bytes are: a file named by its blob (format 8, `files.rs`), its
//! chunks under a blob number (format 7), or, for an attachment stored by formats 1-6, one
//! whole `A` value read as a single chunk. This file finds them ([`Stored`]), reads them
//! whole, and writes inline attachments into a write call's batch; the streamed reader is
//! `reader.rs`, the streamed writer `staging.rs`.

use super::files;
use crate::database::Inner;
use crate::keys::{self, AttHead, AttStorage};
use crate::{Error, Result};

/// The size of the pieces attachments are read and written in: every piece a reader gives
/// ([`crate::AttachmentReader::next_chunk`]) but the last, every buffer of a streamed write,
/// and every sled chunk (format 7's attachments, and inline attachments of at most this
/// size, which are one chunk).
///
/// Why this size: a reader holds one piece at a time, so it bounds the memory of a read (and
/// of a streamed write, which buffers one); for sled chunks, sled's cost is per key, so a
/// chunk should be large enough that a big attachment is few keys (four per MiB). Bytes
/// longer than this go to a file of their own (`files.rs`): sled keeps every value it
/// touched in memory.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// An attachment's bytes as the store holds them.
pub(crate) enum Stored {
    /// Formats 7 and 8: a head naming the file or the chunks.
    Chunked(AttHead),
    /// Formats 1-6: the whole value under `A` + digest (read as one chunk).
    Whole(sled::IVec),
}

impl Stored {
    /// The stored length in bytes.
    pub(crate) fn length(&self) -> u64 {
        match self {
            Stored::Chunked(head) => head.length,
            Stored::Whole(v) => v.len() as u64,
        }
    }

    /// How the bytes were stored (formats 1-6 kept every attachment as given).
    pub(crate) fn encoding(&self) -> keys::AttEncoding {
        match self {
            Stored::Chunked(head) => head.encoding,
            Stored::Whole(_) => keys::AttEncoding::Identity,
        }
    }
}

/// How attachment `digest` is stored, if it is: its `H` head, else a format-6 `A` value.
pub(crate) fn lookup(inner: &Inner, digest: &str) -> Result<Option<Stored>> {
    if let Some(v) = inner
        .tree
        .get(keys::att_head_key(digest))
        .map_err(|e| inner.storage(e))?
    {
        return Ok(Some(Stored::Chunked(AttHead::decode(digest, &v)?)));
    }
    Ok(inner
        .tree
        .get(keys::att_key(digest))
        .map_err(|e| inner.storage(e))?
        .map(Stored::Whole))
}

/// Whether attachment `digest` is stored (a head or a whole value), without reading a
/// whole value.
pub(crate) fn is_stored(inner: &Inner, digest: &str) -> Result<bool> {
    let has = |k: Vec<u8>| inner.tree.contains_key(k).map_err(|e| inner.storage(e));
    Ok(has(keys::att_head_key(digest))? || has(keys::att_key(digest))?)
}

/// Reads all of attachment `digest` into memory: for the inline (base64) forms, whose JSON
/// holds the bytes anyway. `Ok(None)` when it is not stored.
pub(crate) fn read_all(inner: &Inner, digest: &str) -> Result<Option<Vec<u8>>> {
    match lookup(inner, digest)? {
        None => Ok(None),
        Some(Stored::Whole(v)) => Ok(Some(v.to_vec())),
        Some(Stored::Chunked(head)) => match head.storage {
            AttStorage::File => {
                files::read_all(&inner.path, digest, head.blob, head.length).map(Some)
            }
            AttStorage::Chunks(n) => {
                let mut out = Vec::with_capacity(usize::try_from(head.length).unwrap_or(0));
                for i in 0..n {
                    out.extend_from_slice(&read_chunk(inner, digest, &head, i)?);
                }
                check_length(digest, &head, out.len() as u64)?;
                Ok(Some(out))
            }
        },
    }
}

/// Chunk `index` of a chunked attachment.
///
/// # Errors
/// [`Error::Corrupt`] when the chunk is missing or longer than [`CHUNK_SIZE`].
pub(crate) fn read_chunk(
    inner: &Inner,
    digest: &str,
    head: &AttHead,
    index: u32,
) -> Result<sled::IVec> {
    let chunk = inner
        .tree
        .get(keys::att_chunk_key(head.blob, index))
        .map_err(|e| inner.storage(e))?
        .ok_or_else(|| {
            Error::corrupt(format!(
                "chunk {index} of attachment {digest} (blob {}) is missing",
                head.blob
            ))
        })?;
    if chunk.len() > CHUNK_SIZE {
        return Err(Error::corrupt(format!(
            "chunk {index} of attachment {digest} is {} bytes, over the chunk size",
            chunk.len()
        )));
    }
    Ok(chunk)
}

/// [`Error::Corrupt`] unless `read` bytes are the head's length.
pub(crate) fn check_length(digest: &str, head: &AttHead, read: u64) -> Result<()> {
    if read != head.length {
        return Err(Error::corrupt(format!(
            "attachment {digest}: its chunks hold {read} bytes, its head says {}",
            head.length
        )));
    }
    Ok(())
}

/// Puts `data` into `batch` as a new blob's chunks and its head under `digest` (an inline
/// attachment of a write call: its bytes are in memory already, and the document's batch
/// makes them visible with it, atomically).
pub(crate) fn write_whole(
    inner: &Inner,
    batch: &mut sled::Batch,
    digest: &str,
    data: &[u8],
    encoding: keys::AttEncoding,
) -> Result<AttHead> {
    let blob = inner.db.generate_id().map_err(|e| inner.storage(e))?;
    let mut chunks: u32 = 0;
    for chunk in data.chunks(CHUNK_SIZE) {
        batch.insert(&keys::att_chunk_key(blob, chunks)[..], chunk);
        chunks = chunks
            .checked_add(1)
            .ok_or_else(|| Error::bad_request("attachment too large"))?;
    }
    let head = AttHead {
        length: data.len() as u64,
        storage: AttStorage::Chunks(chunks),
        encoding,
        blob,
    };
    batch.insert(keys::att_head_key(digest), &head.encode()[..]);
    Ok(head)
}
