//! [`AttachmentReader`]: one attachment read chunk by chunk, as [`std::io::Read`] or as
//! [`AttachmentReader::next_chunk`]. Finding the attachment (document, revision, name) is
//! `mod.rs`'s; where the chunks are is `chunks.rs`'s.

use std::io::Read;

use super::chunks::{check_length, read_chunk, Stored};
use crate::keys::AttHead;
use crate::{Database, Result};

/// One attachment's stub information and its bytes, read one chunk at a time: at most one
/// chunk ([`crate::CHUNK_SIZE`] bytes) is in memory, whatever the attachment's length.
/// An attachment written by formats 1-6 (one whole value) is read as a single chunk.
///
/// The reader holds a handle on the store (it stays open while the reader lives). It reads
/// the chunks as they are when it reaches them: if [`Database::compact`] removes the
/// attachment meanwhile (its last revision went away), the next read fails with
/// [`crate::Error::Corrupt`] naming the missing chunk, never with other bytes.
///
/// ```
/// use std::io::Read;
/// let dir = tempfile::tempdir()?;
/// let db = settee_store::Database::open(dir.path().join("db"))?;
/// db.put_attachment_from("n", None, "a.txt", "text/plain", &b"hello"[..])?;
/// let mut att = db.attachment_reader("n", None, "a.txt")?;
/// assert_eq!((att.content_type(), att.length()), ("text/plain", 5));
/// let mut text = String::new();
/// att.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AttachmentReader {
    db: Database,
    content_type: String,
    digest: String,
    revpos: u64,
    length: u64,
    source: Source,
    /// The chunk being read by [`Read::read`], and how much of it was given out.
    current: sled::IVec,
    pos: usize,
}

enum Source {
    Chunked {
        head: AttHead,
        next: u32,
        read: u64,
    },
    /// A format-6 value, given out once.
    Whole(Option<sled::IVec>),
}

impl std::fmt::Debug for AttachmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentReader")
            .field("content_type", &self.content_type)
            .field("digest", &self.digest)
            .field("length", &self.length)
            .field("revpos", &self.revpos)
            .finish_non_exhaustive()
    }
}

impl AttachmentReader {
    pub(crate) fn new(
        db: Database,
        content_type: String,
        digest: String,
        revpos: u64,
        stored: Stored,
    ) -> AttachmentReader {
        let length = stored.length();
        let source = match stored {
            Stored::Chunked(head) => Source::Chunked {
                head,
                next: 0,
                read: 0,
            },
            Stored::Whole(v) => Source::Whole(Some(v)),
        };
        AttachmentReader {
            db,
            content_type,
            digest,
            revpos,
            length,
            source,
            current: sled::IVec::default(),
            pos: 0,
        }
    }

    /// The MIME type given when it was written.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// CouchDB's digest of the bytes (`md5-<base64>`).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The revision position at which it was last changed.
    pub fn revpos(&self) -> u64 {
        self.revpos
    }

    /// The next chunk of bytes (at most [`crate::CHUNK_SIZE`]; never empty), or `None` at
    /// the end. Do not mix with [`Read::read`], which gives out the same chunks.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] when a chunk is missing (see the type's docs) or the chunks
    /// do not add up to the length; [`crate::Error::Storage`] on I/O errors.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.next_ivec()?.map(|v| v.to_vec()))
    }

    fn next_ivec(&mut self) -> Result<Option<sled::IVec>> {
        match &mut self.source {
            Source::Whole(v) => Ok(v.take().filter(|v| !v.is_empty())),
            Source::Chunked { head, next, read } => {
                if *next >= head.chunks {
                    check_length(&self.digest, head, *read)?;
                    return Ok(None);
                }
                let chunk = read_chunk(&self.db.inner, &self.digest, head, *next)?;
                *next += 1;
                *read += chunk.len() as u64;
                Ok(Some(chunk))
            }
        }
    }
}

impl Read for AttachmentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.next_ivec().map_err(std::io::Error::other)? {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An [`AttachmentReader`] is an iterator of its chunks ([`AttachmentReader::next_chunk`]).
impl Iterator for AttachmentReader {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}
