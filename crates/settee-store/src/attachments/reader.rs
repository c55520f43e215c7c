//! [`AttachmentReader`]: one attachment read chunk by chunk, as [`std::io::Read`] or as
//! [`AttachmentReader::next_chunk`], decoded or as stored, with [`AttachmentReader::skip_bytes`]
//! for ranges. Finding the attachment (document, revision, name) is `mod.rs`'s; where the
//! bytes are (a file, chunks) is `chunks.rs`'s and `files.rs`'s.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::chunks::{check_length, read_chunk, Stored, CHUNK_SIZE};
use super::encoded::Decoded;
use super::{files, AttMeta};
use crate::keys::{AttEncoding as Encoding, AttHead, AttStorage};
use crate::{Database, Error, Result};

/// One attachment's stub information and its bytes, read one chunk at a time: at most one
/// chunk ([`crate::CHUNK_SIZE`] bytes) is in memory, whatever the attachment's length.
/// An attachment written by formats 1-6 (one whole value) is read as a single chunk.
///
/// The reader holds a handle on the store (it stays open while the reader lives) and, for
/// an attachment kept in a file (every one written by format 8), the file, opened when the
/// reader was: if [`Database::compact`] removes the attachment meanwhile (its last revision
/// went away), the reader still reads it whole (on Unix; elsewhere the removal may fail and
/// be done by a later `compact`). An attachment kept in format 7's chunks is read as the
/// chunks are when it reaches them: one removed meanwhile fails the next read with
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
    /// Format 8: the blob's file, `left` bytes of it still to give.
    File {
        file: File,
        blob: u64,
        length: u64,
        left: u64,
    },
    /// Format 7: sled chunks.
    Chunked {
        head: AttHead,
        chunks: u32,
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
    ///
    /// # Errors
    /// [`Error::Corrupt`] when its file is missing or not the head's length.
    pub(crate) fn new(db: Database, meta: AttMeta, stored: Stored, decode: bool) -> Result<Self> {
        let stored_length = stored.length();
        let source = match stored {
            Stored::Chunked(head) => match head.storage {
                AttStorage::File => {
                    let file = files::open(&db.inner.path, head.blob)?
                        .ok_or_else(|| files::missing(&meta.digest, head.blob))?;
                    let on_disk = file
                        .metadata()
                        .map_err(|e| files::io_error(&files::path(&db.inner.path, head.blob), e))?
                        .len();
                    files::check_length(&meta.digest, head.blob, head.length, on_disk)?;
                    Source::File {
                        file,
                        blob: head.blob,
                        length: head.length,
                        left: head.length,
                    }
                }
                AttStorage::Chunks(chunks) => Source::Chunked {
                    head,
                    chunks,
                    next: 0,
                    read: 0,
                },
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
        Ok(AttachmentReader {
            content_type: meta.content_type,
            digest: meta.digest,
            revpos: meta.revpos,
            length,
            decoded_length: meta.length,
            encoding,
            body,
        })
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
            Body::Raw(chunks) if chunks.pos < chunks.current.len() => {
                // What a [`AttachmentReader::skip_bytes`] left of a chunk.
                let rest = chunks.current[chunks.pos..].to_vec();
                chunks.current = sled::IVec::default();
                chunks.pos = 0;
                Ok(Some(rest))
            }
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

impl AttachmentReader {
    /// Skips the next `n` bytes of what this reader gives (the start of a `Range`; named so
    /// as not to be [`Iterator::skip`], which skips chunks); the
    /// count skipped, less than `n` only at the end. Bytes kept in a file as this reader
    /// gives them are skipped with a seek; others (chunks, decoded bytes) are read and
    /// dropped. Reads after it ([`AttachmentReader::next_chunk`], [`Read::read`]) go on from
    /// there.
    ///
    /// ```
    /// use std::io::Read;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// db.put_attachment_from("n", None, "a.txt", "text/plain", &b"hello, world"[..])?;
    /// let mut att = db.attachment_reader("n", None, "a.txt")?;
    /// assert_eq!(att.skip_bytes(7)?, 7);
    /// let mut rest = String::new();
    /// att.read_to_string(&mut rest)?;
    /// assert_eq!(rest, "world");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`AttachmentReader::next_chunk`].
    pub fn skip_bytes(&mut self, n: u64) -> Result<u64> {
        match &mut self.body {
            Body::Raw(chunks) => chunks.skip(n),
            Body::Decoded(decoded) => {
                std::io::copy(&mut decoded.as_mut().take(n), &mut std::io::sink())
                    .map_err(|e| from_io(&self.digest, e))
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
            Source::File {
                file,
                blob,
                length,
                left,
            } => {
                let want = usize::try_from((*left).min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
                if want == 0 {
                    return Ok(None);
                }
                let mut piece = vec![0u8; want];
                let n = read_file(file, &mut piece, &self.db, *blob)?;
                if n < want {
                    let read = *length - *left + n as u64;
                    return Err(files::check_length(&self.digest, *blob, *length, read)
                        .err()
                        .unwrap_or_else(|| files::missing(&self.digest, *blob)));
                }
                *left -= n as u64;
                Ok(Some(sled::IVec::from(piece)))
            }
            Source::Chunked {
                head,
                chunks,
                next,
                read,
            } => {
                if *next >= *chunks {
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

/// Fills `buf` from `file` as far as it goes; the count read (short only at its end).
fn read_file(file: &mut File, buf: &mut [u8], db: &Database, blob: u64) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(files::io_error(&files::path(&db.inner.path, blob), e)),
        }
    }
    Ok(n)
}

impl Chunks {
    /// Skips up to `n` bytes; the count skipped (less only at the end). A file seeks; chunks
    /// are read and dropped.
    fn skip(&mut self, mut n: u64) -> Result<u64> {
        let mut skipped = 0;
        let in_current = (self.current.len() - self.pos.min(self.current.len())) as u64;
        let k = in_current.min(n);
        // INVARIANT: k <= the bytes left in `current`, a usize.
        self.pos += usize::try_from(k).unwrap_or(0);
        skipped += k;
        n -= k;
        if let Source::File {
            file, blob, left, ..
        } = &mut self.source
        {
            let k = (*left).min(n);
            let offset = i64::try_from(k).map_err(|_| Error::bad_request("skip too long"))?;
            file.seek(SeekFrom::Current(offset))
                .map_err(|e| files::io_error(&files::path(&self.db.inner.path, *blob), e))?;
            *left -= k;
            return Ok(skipped + k);
        }
        while n > 0 {
            let Some(chunk) = self.next_ivec()? else {
                break;
            };
            let k = (chunk.len() as u64).min(n);
            if k < chunk.len() as u64 {
                self.current = chunk;
                // INVARIANT: k < chunk.len(), a usize.
                self.pos = usize::try_from(k).unwrap_or(0);
            }
            skipped += k;
            n -= k;
        }
        Ok(skipped)
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
