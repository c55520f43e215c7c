//! Streamed attachment writes: [`StagedAttachment`], whose bytes go to the blob's file as
//! they are read (under a `P` pending marker) and become visible only with the document
//! write that refers to them, plus the removal of blobs a crash left staged. The document
//! write itself is `write/`'s; `attachment_io.rs` has the calls that stage and write
//! together; the files are `files.rs`'s.
//!
//! Crash safety: the pending marker is written and flushed before the file is created, so
//! after a crash every file of an uncommitted blob has its marker; opening removes those
//! blobs ([`remove_unfinished`]), file first, marker last. The file is synced (and its
//! directory) before the commit, which is in the document's batch: the head and the
//! marker's removal go with the document, all or nothing. When the digest is stored
//! already (dedup), the batch leaves the marker, and dropping the [`StagedAttachment`]
//! removes the file, then the marker. So every attachment file has a head or a marker, at
//! every moment a crash can pick.

use std::io::{Read, Write};

use md5::{Digest, Md5};

use super::chunks::CHUNK_SIZE;
use super::encoded::Check;
use super::files;
use crate::database::Inner;
use crate::keys::{self, AttEncoding as Encoding, AttHead, AttStorage};
use crate::{Database, Error, Result};

/// An attachment's bytes written to the store from a reader, not yet part of any document:
/// invisible to every read, and removed when dropped (or, after a crash, when the store is
/// next opened) unless a document write commits it
/// ([`Database::put_staged_attachment`]).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = settee_store::Database::open(dir.path().join("db"))?;
/// let staged = db.stage_attachment(&b"hello"[..])?;
/// assert_eq!((staged.digest(), staged.length()), ("md5-XUFAKrxLKna5cZ2REBfFkg==", 5));
/// db.put_staged_attachment("n", None, "a.txt", "text/plain", staged)?;
/// assert_eq!(db.attachment("n", None, "a.txt")?.data, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StagedAttachment {
    db: Database,
    digest: String,
    pub(crate) head: AttHead,
    /// The attachment's length once decoded (`head.length` unless encoded).
    pub(crate) decoded_length: u64,
}

impl StagedAttachment {
    /// CouchDB's digest of the bytes as staged (`md5-<base64>`; of the encoded bytes for an
    /// encoded attachment), computed while they were written.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The attachment's length in bytes (decoded).
    pub fn length(&self) -> u64 {
        self.decoded_length
    }

    /// How the staged bytes are encoded.
    pub fn encoding(&self) -> Encoding {
        self.head.encoding
    }

    /// The number of bytes staged (the encoded length of an encoded attachment).
    pub fn stored_length(&self) -> u64 {
        self.head.length
    }
}

impl Drop for StagedAttachment {
    fn drop(&mut self) {
        let inner = &self.db.inner;
        // The marker says whether the blob is still to be removed: a document write that
        // committed it removed the marker in its batch (even one whose flush then failed,
        // and which returned an error), so the file stays; one that found the digest stored
        // already (dedup), or that was refused, left it.
        let pending = inner
            .tree
            .contains_key(keys::att_pending_key(self.head.blob));
        if !matches!(pending, Ok(true)) {
            return;
        }
        if let Err(e) = remove_blob(inner, self.head.blob) {
            // Nothing to return to: the blob keeps its marker, so the next open removes it.
            tracing::warn!(error = %e, blob = self.head.blob, "could not remove a staged attachment");
        }
    }
}

impl Database {
    /// Writes an attachment's bytes from `reader` into the store (a file of its own in the
    /// store's directory), one chunk ([`crate::CHUNK_SIZE`]) at a time, computing its
    /// digest on the way, and syncs them; no document refers to it yet. Commit it with
    /// [`Database::put_staged_attachment`]; dropped uncommitted, it is removed. At most one
    /// chunk of the bytes is in memory.
    ///
    /// # Errors
    /// [`Error::AttachmentSource`] when `reader` fails (nothing stays behind);
    /// [`Error::Storage`] / [`Error::DiskFull`] when the store does.
    pub fn stage_attachment(&self, reader: impl Read) -> Result<StagedAttachment> {
        self.stage(reader, None)
    }

    /// [`Database::stage_attachment`] for bytes given encoded (CouchDB's gzipped `text/*`
    /// and JSON-like attachments): they are kept as they are, named by their own digest as
    /// CouchDB names them, and read decoded ([`Database::attachment_reader`]). They are
    /// decoded as they are written (and the decoded bytes thrown away) to check that they
    /// are whole and `decoded_length` long; with `digest`, the digest computed must be it.
    /// [`Encoding::Identity`] is [`Database::stage_attachment`] (`decoded_length` and
    /// `digest` checked the same way).
    ///
    /// ```
    /// # use std::io::Write;
    /// let dir = tempfile::tempdir()?;
    /// let db = settee_store::Database::open(dir.path().join("db"))?;
    /// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    /// gz.write_all(&b"text ".repeat(100))?;
    /// let gz = gz.finish()?;
    /// let digest = settee_store::attachment_digest(&gz);
    /// let gzip = settee_store::Encoding::Gzip;
    /// let staged = db.stage_attachment_encoded(&gz[..], gzip, 500, Some(&digest))?;
    /// assert_eq!((staged.digest(), staged.length()), (digest.as_str(), 500));
    /// // Another length, or another digest, is refused.
    /// assert!(db.stage_attachment_encoded(&gz[..], gzip, 499, None).is_err());
    /// assert!(db.stage_attachment_encoded(&gz[..], gzip, 500, Some("md5-other")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the bytes do not decode, decode to another length, or have
    /// another digest (nothing stays behind); as [`Database::stage_attachment`] otherwise.
    pub fn stage_attachment_encoded(
        &self,
        reader: impl Read,
        encoding: Encoding,
        decoded_length: u64,
        digest: Option<&str>,
    ) -> Result<StagedAttachment> {
        self.stage(
            reader,
            Some(Expected {
                encoding,
                decoded_length,
                digest,
            }),
        )
    }

    fn stage(
        &self,
        mut reader: impl Read,
        expected: Option<Expected<'_>>,
    ) -> Result<StagedAttachment> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let (blob, mut file) = begin_file(inner)?;
        let mut staged = StagedAttachment {
            db: self.clone(),
            digest: String::new(),
            head: AttHead {
                length: 0,
                storage: AttStorage::File,
                encoding: expected.as_ref().map_or(Encoding::Identity, |e| e.encoding),
                blob,
            },
            decoded_length: 0,
        };
        let mut check = match &expected {
            Some(e) if e.encoding == Encoding::Gzip => Some(Check::gzip(e.decoded_length)),
            _ => None,
        };
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let n = fill(&mut reader, &mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            if let Some(check) = &mut check {
                check.update(&buf[..n])?;
            }
            file.write_all(&buf[..n])
                .map_err(|e| files::io_error(&files::path(&inner.path, blob), e))?;
            staged.head.length += n as u64;
            if n < buf.len() {
                break;
            }
        }
        files::sync_new(&inner.path, blob, &file)?;
        staged.digest = super::digest_text(&md5.finalize());
        staged.decoded_length = staged.head.length;
        if let Some(check) = check {
            check.finish()?;
        }
        if let Some(e) = expected {
            staged.decoded_length = e.decoded_length;
            if e.encoding == Encoding::Identity && staged.head.length != e.decoded_length {
                return Err(Error::bad_request(format!(
                    "the attachment has {} bytes, its stub says {}",
                    staged.head.length, e.decoded_length
                )));
            }
            if let Some(d) = e.digest.filter(|d| *d != staged.digest) {
                return Err(Error::bad_request(format!(
                    "the attachment's digest is {}, its stub says {d}",
                    staged.digest
                )));
            }
        }
        Ok(staged)
    }
}

/// A new blob and its new file, after its pending marker is durable: a crash after the
/// file's creation finds the marker.
fn begin_file(inner: &Inner) -> Result<(u64, std::fs::File)> {
    let blob = inner.db.generate_id().map_err(|e| inner.storage(e))?;
    inner
        .tree
        .insert(keys::att_pending_key(blob), &[][..])
        .map_err(|e| inner.storage(e))?;
    inner.tree.flush().map_err(|e| inner.storage(e))?;
    Ok((blob, files::create(&inner.path, blob)?))
}

/// Writes bytes a write call holds whole (an inline attachment longer than one chunk) to a
/// new blob's file, synced, under a pending marker as a staging does; its head. The caller
/// puts its commit ([`commit_into`]) into its batch and keeps the blob in an
/// [`UncommittedFiles`], which removes it if that batch is never applied.
pub(crate) fn write_file(inner: &Inner, data: &[u8], encoding: Encoding) -> Result<AttHead> {
    let (blob, mut file) = begin_file(inner)?;
    let written = file
        .write_all(data)
        .map_err(|e| files::io_error(&files::path(&inner.path, blob), e))
        .and_then(|()| files::sync_new(&inner.path, blob, &file));
    if let Err(e) = written {
        drop(file);
        if let Err(e) = remove_blob(inner, blob) {
            tracing::warn!(error = %e, blob, "could not remove an attachment file");
        }
        return Err(e);
    }
    Ok(AttHead {
        length: data.len() as u64,
        storage: AttStorage::File,
        encoding,
        blob,
    })
}

/// The files a write call wrote for its inline attachments ([`write_file`]): dropped after
/// the call's batch was applied, it finds their markers gone and leaves them; dropped
/// without it (an error), it removes each file, then its marker, as a dropped
/// [`StagedAttachment`] does.
pub(crate) struct UncommittedFiles<'a> {
    inner: &'a Inner,
    pub(crate) blobs: Vec<u64>,
}

impl<'a> UncommittedFiles<'a> {
    pub(crate) fn new(inner: &'a Inner) -> UncommittedFiles<'a> {
        UncommittedFiles {
            inner,
            blobs: Vec::new(),
        }
    }
}

impl Drop for UncommittedFiles<'_> {
    fn drop(&mut self) {
        for &blob in &self.blobs {
            let pending = self.inner.tree.contains_key(keys::att_pending_key(blob));
            if !matches!(pending, Ok(true)) {
                continue;
            }
            if let Err(e) = remove_blob(self.inner, blob) {
                // The blob keeps its marker, so the next open removes it.
                tracing::warn!(error = %e, blob, "could not remove an uncommitted attachment file");
            }
        }
    }
}

/// What a staging of encoded bytes must find.
struct Expected<'a> {
    encoding: Encoding,
    decoded_length: u64,
    digest: Option<&'a str>,
}

/// Reads into `buf` until it is full or the reader ends; the count read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::AttachmentSource { source }),
        }
    }
    Ok(n)
}

/// Puts the commit of a staged blob into a document's batch: its head under `digest`, and
/// the pending marker's removal. When `digest` is stored already (`stored`), the blob is a
/// duplicate: a chunked one's chunks and marker are removed in the batch; a file's marker
/// stays, and the [`StagedAttachment`]'s drop removes the file, then the marker (a file is
/// never without a head or a marker).
pub(crate) fn commit_into(batch: &mut sled::Batch, digest: &str, head: &AttHead, stored: bool) {
    match (stored, head.storage) {
        (false, _) => {
            batch.insert(keys::att_head_key(digest), head.encode());
            batch.remove(&keys::att_pending_key(head.blob)[..]);
        }
        (true, AttStorage::File) => {}
        (true, AttStorage::Chunks(n)) => {
            for i in 0..n {
                batch.remove(&keys::att_chunk_key(head.blob, i)[..]);
            }
            batch.remove(&keys::att_pending_key(head.blob)[..]);
        }
    }
}

/// Removes a blob's file and chunks, then its pending marker (in that order: a crash in
/// between leaves the marker, and the next open finishes).
pub(crate) fn remove_blob(inner: &Inner, blob: u64) -> Result<()> {
    remove_blob_in(&inner.tree, &inner.path, blob, &|e| inner.storage(e))
}

fn remove_blob_in(
    tree: &sled::Tree,
    store: &std::path::Path,
    blob: u64,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<()> {
    files::remove(store, blob)?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for k in tree.scan_prefix(keys::att_chunk_prefix(blob)).keys() {
        batch.remove(k.map_err(storage)?);
        n += 1;
        if n % 1024 == 0 {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(storage)?;
        }
    }
    batch.remove(&keys::att_pending_key(blob)[..]);
    tree.apply_batch(batch).map_err(storage)
}

/// At open: removes every blob still marked pending (a staged write a crash or an
/// interrupted process left uncommitted, or a removal it cut short); the number removed.
/// No staging can be running: the store's lock is this process's, and it is being opened.
pub(crate) fn remove_unfinished(
    tree: &sled::Tree,
    store: &std::path::Path,
    storage: &dyn Fn(sled::Error) -> Error,
) -> Result<u64> {
    let mut blobs = Vec::new();
    for k in tree.scan_prefix([keys::ATT_PENDING]).keys() {
        blobs.push(keys::blob_of_key(&k.map_err(storage)?)?);
    }
    for &blob in &blobs {
        remove_blob_in(tree, store, blob, storage)?;
    }
    Ok(blobs.len() as u64)
}
