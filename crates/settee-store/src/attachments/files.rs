//! Attachment files: each blob's bytes in `attachments/<blob as 16 hex digits>` beside
//! sled's files in the store's directory. This file names, creates, opens, lists and
//! removes them; when each happens (and the `P` marker that guards it) is `staging.rs`'s
//! and `sweep.rs`'s.
//!
//! Why files and not sled values: sled 0.34 keeps every value it has written or read in
//! memory whatever its cache capacity, so a 200 MB attachment in sled chunks cost 200 MB of
//! the process's memory. A file is read and written a piece at a time through the page
//! cache, which the kernel reclaims.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The directory of attachment files inside a store's directory.
pub(crate) const DIR: &str = "attachments";

/// The attachment directory of the store at `store`.
pub(crate) fn dir(store: &Path) -> PathBuf {
    store.join(DIR)
}

/// The file of blob `blob` in the store at `store`.
pub(crate) fn path(store: &Path, blob: u64) -> PathBuf {
    dir(store).join(format!("{blob:016x}"))
}

/// The blob a file name names, if it is one of ours.
fn blob_of_name(name: &str) -> Option<u64> {
    (name.len() == 16)
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

/// The store's error for a filesystem error on `path` (in or of the attachment directory):
/// [`Error::DiskFull`] naming the store when the disk refused to grow a file, else
/// [`Error::Io`]. Unlike sled's, the handle stays writable: sled's log is untouched.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    if matches!(
        source.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
    ) {
        let store = path
            .ancestors()
            .find(|p| p.file_name() == Some(DIR.as_ref()))
            .and_then(Path::parent)
            .unwrap_or(path);
        return Error::sled(store, sled::Error::Io(source));
    }
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates blob `blob`'s file, new (an existing one is an error: blob numbers are never
/// reused), creating the directory first when it is missing (and syncing the store's
/// directory then, so that the directory's entry is durable before any file in it).
pub(crate) fn create(store: &Path, blob: u64) -> Result<File> {
    let dir = dir(store);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        sync_dir(store)?;
    }
    let path = path(store, blob);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))
}

/// Makes a file's bytes and its directory entry durable: the file's `sync_all`, then the
/// directory's (the entry of a newly created file is the directory's data).
pub(crate) fn sync_new(store: &Path, blob: u64, file: &File) -> Result<()> {
    file.sync_all()
        .map_err(|e| io_error(&path(store, blob), e))?;
    sync_dir(&dir(store))
}

/// fsyncs a directory (on Unix; elsewhere, opening a directory is not how it is done and
/// the entry's durability is the filesystem's).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens blob `blob`'s file for reading; `Ok(None)` when there is none.
pub(crate) fn open(store: &Path, blob: u64) -> Result<Option<File>> {
    let path = path(store, blob);
    match File::open(&path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, e)),
    }
}

/// The length of blob `blob`'s file; `Ok(None)` when there is none.
pub(crate) fn length(store: &Path, blob: u64) -> Result<Option<u64>> {
    let path = path(store, blob);
    match std::fs::metadata(&path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, e)),
    }
}

/// Reads all of blob `blob`'s file (which must be `length` bytes long): for the inline
/// (base64) forms, whose JSON holds the bytes anyway.
///
/// # Errors
/// [`Error::Corrupt`] when the file is missing or of another length.
pub(crate) fn read_all(store: &Path, digest: &str, blob: u64, length: u64) -> Result<Vec<u8>> {
    let file = open(store, blob)?.ok_or_else(|| missing(digest, blob))?;
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| io_error(&path(store, blob), e))?;
    check_length(digest, blob, length, out.len() as u64)?;
    Ok(out)
}

/// [`Error::Corrupt`]: an attachment's file is gone.
pub(crate) fn missing(digest: &str, blob: u64) -> Error {
    Error::corrupt(format!(
        "the file of attachment {digest} (attachments/{blob:016x}) is missing"
    ))
}

/// [`Error::Corrupt`] unless `found` bytes are the head's `length`.
pub(crate) fn check_length(digest: &str, blob: u64, length: u64, found: u64) -> Result<()> {
    if found != length {
        return Err(Error::corrupt(format!(
            "attachment {digest}: its file (attachments/{blob:016x}) holds {found} bytes, its head says {length}"
        )));
    }
    Ok(())
}

/// Removes blob `blob`'s file; a file already gone is fine (a removal a crash cut short is
/// done again).
pub(crate) fn remove(store: &Path, blob: u64) -> Result<()> {
    let path = path(store, blob);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&path, e)),
    }
}

/// The blobs that have a file, in no order (other names in the directory are ignored).
pub(crate) fn list(store: &Path) -> Result<Vec<u64>> {
    let dir = dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir, e)),
    };
    let mut blobs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&dir, e))?;
        if let Some(blob) = entry.file_name().to_str().and_then(blob_of_name) {
            blobs.push(blob);
        }
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        let store = tempfile::tempdir().unwrap();
        assert_eq!(list(store.path()).unwrap(), Vec::<u64>::new());
        let blob = u64::MAX - 3;
        let f = create(store.path(), blob).unwrap();
        sync_new(store.path(), blob, &f).unwrap();
        assert!(
            create(store.path(), blob).is_err(),
            "a blob's file is created once"
        );
        std::fs::write(dir(store.path()).join("notes.txt"), b"x").unwrap();
        assert_eq!(list(store.path()).unwrap(), vec![blob]);
        assert_eq!(length(store.path(), blob).unwrap(), Some(0));
        let err = read_all(store.path(), "d", blob, 3).unwrap_err();
        assert_eq!(err.name(), "corrupt");
        remove(store.path(), blob).unwrap();
        remove(store.path(), blob).unwrap();
        assert_eq!(length(store.path(), blob).unwrap(), None);
        assert_eq!(
            read_all(store.path(), "d", blob, 0).unwrap_err().name(),
            "corrupt"
        );
    }
}
