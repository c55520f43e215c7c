//! [`AttachmentReader`]: one attachment read chunk by chunk, as [`std::io::Read`] or as
//! [`AttachmentReader::next_chunk`], decoded or as stored. Finding the attachment (document, revision, name) is
//! `mod.rs`'s; where the chunks are is `chunks.rs`'s.

use std::io::Read;

use super::chunks::{check_length, read_chunk, Stored, CHUNK_SIZE};
use super::encoded::Decoded;
use super::AttMeta;
use crate::keys::{AttEncoding as Encoding, AttHead};
use crate::{Database, Error, Result};

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
    content_type: String,
    digest: String,
    revpos: u64,
    /// The bytes this reader gives.
    length: u64,
    /// The attachment's length once decoded.
    decoded_length: u64,
    /// How the bytes this reader gives are encoded.
    encoding: Encoding,
    body: Body,
}

enum Body {
    /// The stored bytes.
    Raw(Chunks),
    /// Encoded stored bytes, decoded as they are read.
    Decoded(Box<Decoded<Chunks>>),
}

/// The stored bytes of one attachment, chunk by chunk.
struct Chunks {
    db: Database,
    digest: String,
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
            .field("encoding", &self.encoding)
            .field("revpos", &self.revpos)
            .finish_non_exhaustive()
    }
}

impl AttachmentReader {
    /// A reader of the attachment `meta` describes, stored as `stored`: of its decoded
    /// bytes with `decode`, else of the stored ones.
    pub(crate) fn new(db: Database, meta: AttMeta, stored: Stored, decode: bool) -> Self {
        let stored_length = stored.length();
        let source = match stored {
            Stored::Chunked(head) => Source::Chunked {
                head,
                next: 0,
                read: 0,
            },
            Stored::Whole(v) => Source::Whole(Some(v)),
        };
        let chunks = Chunks {
            db,
            digest: meta.digest.clone(),
            source,
            current: sled::IVec::default(),
            pos: 0,
        };
        let stored_encoding = meta.stored_encoding();
        let (body, length, encoding) = match stored_encoding {
            Encoding::Gzip if decode => (
                Body::Decoded(Box::new(Decoded::new(
                    chunks,
                    meta.digest.clone(),
                    meta.length,
                ))),
                meta.length,
                Encoding::Identity,
            ),
            _ => (Body::Raw(chunks), stored_length, stored_encoding),
        };
        AttachmentReader {
            content_type: meta.content_type,
            digest: meta.digest,
            revpos: meta.revpos,
            length,
            decoded_length: meta.length,
            encoding,
            body,
        }
    }

    /// The MIME type given when it was written.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// CouchDB's digest of the bytes as stored (`md5-<base64>`): of the encoded bytes for an
    /// encoded attachment, as CouchDB names it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The number of bytes this reader gives: the attachment's length, or its encoded length
    /// for a raw reader ([`Database::attachment_reader_raw`]) of an encoded attachment.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// How the bytes this reader gives are encoded: [`Encoding::Identity`] unless it is a
    /// raw reader of an encoded attachment.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The attachment's length once decoded (what [`AttachmentReader::length`] is unless
    /// the bytes are encoded).
    pub fn decoded_length(&self) -> u64 {
        self.decoded_length
    }

    /// The revision position at which it was last changed.
    pub fn revpos(&self) -> u64 {
        self.revpos
    }

    /// The next chunk of bytes (at most [`crate::CHUNK_SIZE`]; never empty), or `None` at
    /// the end. Do not mix with [`Read::read`], which gives out the same chunks.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] when a chunk is missing (see the type's docs), the chunks
    /// do not add up to the length or do not decode; [`crate::Error::Storage`] on I/O
    /// errors.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match &mut self.body {
            Body::Raw(chunks) => Ok(chunks.next_ivec()?.map(|v| v.to_vec())),
            Body::Decoded(decoded) => {
                let mut out = vec![0u8; CHUNK_SIZE];
                let mut n = 0;
                while n < out.len() {
                    match decoded.read(&mut out[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(from_io(&self.digest, e)),
                    }
                }
                out.truncate(n);
                Ok((n > 0).then_some(out))
            }
        }
    }
}

/// The store's error inside an I/O error (how [`Read`] carries it), or a corrupt encoding.
fn from_io(digest: &str, e: std::io::Error) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(err)) => *err,
        Some(Err(other)) => Error::corrupt(format!("attachment {digest}: {other}")),
        None => Error::corrupt(format!("attachment {digest}: decoding failed")),
    }
}

impl Chunks {
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

impl Read for Chunks {
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

impl Read for AttachmentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.body {
            Body::Raw(chunks) => chunks.read(buf),
            Body::Decoded(decoded) => decoded.read(buf),
        }
    }
}

/// An [`AttachmentReader`] is an iterator of its chunks ([`AttachmentReader::next_chunk`]).
impl Iterator for AttachmentReader {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}
