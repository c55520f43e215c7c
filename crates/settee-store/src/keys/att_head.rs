//! [`AttHead`]: the record under `H` + digest that says where an attachment's bytes are
//! ([`Storage`]: a file named by its blob, or, as format 7 wrote them, its blob's `C` chunk
//! keys) and how long they are. The files and chunks are `attachments/`'s.

use crate::{Error, Result};

/// Version byte of a head whose bytes are in sled chunks (format 7's only kind).
const VERSION_CHUNKS: u8 = 1;
/// Encoded size of a version-1 head: version, encoding, length, chunk count, blob.
const LEN_CHUNKS: usize = 1 + 1 + 8 + 4 + 8;
/// Version byte of a head with a storage kind (format 8).
const VERSION_KIND: u8 = 2;
/// Encoded size of a version-2 head: version, encoding, kind, length, blob.
const LEN_KIND: usize = 1 + 1 + 1 + 8 + 8;
/// The storage kind byte of a version-2 head: the bytes are in a file.
const KIND_FILE: u8 = 1;

/// How an attachment's bytes are stored: as they are, or encoded as CouchDB keeps `text/*`
/// and JSON-like attachments (gzipped, and named by the digest of the gzipped bytes; its
/// stubs say so with `att_encoding_info`). Readers get the decoded bytes
/// ([`crate::Database::attachment_reader`]); replication moves the stored ones
/// ([`crate::Database::attachment_reader_raw`]), so that digests stay CouchDB's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The bytes as given.
    Identity,
    /// gzip (RFC 1952), CouchDB's `"encoding": "gzip"`.
    Gzip,
}

impl Encoding {
    /// CouchDB's name for it: `"identity"`, `"gzip"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Encoding {
    type Err = Error;

    /// Parses CouchDB's name of an encoding (`"gzip"`, `"identity"`).
    fn from_str(s: &str) -> Result<Encoding> {
        match s {
            "identity" => Ok(Encoding::Identity),
            "gzip" => Ok(Encoding::Gzip),
            _ => Err(Error::bad_request(format!(
                "unknown attachment encoding {s:?}"
            ))),
        }
    }
}

/// Where an attachment's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// In the file `attachments/<blob as 16 hex digits>` of the store's directory (format 8:
    /// every attachment written since).
    File,
    /// In sled, as this many chunks under `C` + blob, indexes `0..n` (format 7's attachments,
    /// read as they are).
    Chunks(u32),
}

/// An attachment's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttHead {
    /// The stored length in bytes (the file's length, or the sum of its chunks' lengths;
    /// the encoded length of an encoded attachment).
    pub(crate) length: u64,
    /// Where the bytes are.
    pub(crate) storage: Storage,
    /// How the stored bytes are encoded, as they were staged. Two revisions may name the
    /// same bytes (one digest) with different encodings (a `.gz` file kept as it is, and a
    /// text CouchDB gzipped to the same bytes): a revision's `AttMeta` decides how it reads
    /// them; this says how the blob was first written.
    pub(crate) encoding: Encoding,
    /// The blob number its file is named by (or its chunks are keyed by).
    pub(crate) blob: u64,
}

impl AttHead {
    /// A file head: version (2), encoding (1, `0` identity, `1` gzip), kind (1, `1` file),
    /// length (u64), blob (u64). A chunked head keeps format 7's version 1: version,
    /// encoding, length (u64), chunk count (u32), blob (u64). Big-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let encoding = match self.encoding {
            Encoding::Identity => 0,
            Encoding::Gzip => 1,
        };
        let mut out = Vec::with_capacity(LEN_CHUNKS);
        match self.storage {
            Storage::File => {
                out.extend_from_slice(&[VERSION_KIND, encoding, KIND_FILE]);
                out.extend_from_slice(&self.length.to_be_bytes());
            }
            Storage::Chunks(n) => {
                out.extend_from_slice(&[VERSION_CHUNKS, encoding]);
                out.extend_from_slice(&self.length.to_be_bytes());
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.blob.to_be_bytes());
        out
    }

    /// Decodes the head of attachment `digest`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a record of another size, version, encoding or kind.
    pub(crate) fn decode(digest: &str, b: &[u8]) -> Result<AttHead> {
        let bad = |what: &str| Error::corrupt(format!("attachment head of {digest}: {what}"));
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let (storage, length, blob) = match b.first() {
            Some(&VERSION_CHUNKS) if b.len() == LEN_CHUNKS => (
                Storage::Chunks(u32::from_be_bytes([b[10], b[11], b[12], b[13]])),
                u64_at(2),
                u64_at(14),
            ),
            Some(&VERSION_KIND) if b.len() == LEN_KIND => {
                if b[2] != KIND_FILE {
                    return Err(bad("unknown storage kind"));
                }
                (Storage::File, u64_at(3), u64_at(11))
            }
            Some(&VERSION_CHUNKS) | Some(&VERSION_KIND) => return Err(bad("wrong size")),
            _ => return Err(bad("unknown version")),
        };
        let encoding = match b[1] {
            0 => Encoding::Identity,
            1 => Encoding::Gzip,
            _ => return Err(bad("unknown encoding")),
        };
        Ok(AttHead {
            length,
            storage,
            encoding,
            blob,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_refuses_other_sizes() {
        let head = AttHead {
            length: 5 << 32,
            storage: Storage::Chunks(7),
            encoding: Encoding::Identity,
            blob: u64::MAX - 1,
        };
        assert_eq!(AttHead::decode("d", &head.encode()).unwrap(), head);
        let gz = AttHead {
            encoding: Encoding::Gzip,
            ..head
        };
        assert_eq!(gz.encode()[1], 1);
        assert_eq!(AttHead::decode("d", &gz.encode()).unwrap(), gz);
        assert_eq!(
            AttHead::decode("d", &head.encode()[1..])
                .unwrap_err()
                .name(),
            "corrupt"
        );
        let mut other = head.encode();
        other[1] = 9;
        assert_eq!(AttHead::decode("d", &other).unwrap_err().name(), "corrupt");
        let file = AttHead {
            storage: Storage::File,
            ..gz
        };
        assert_eq!(file.encode().len(), LEN_KIND);
        assert_eq!(AttHead::decode("d", &file.encode()).unwrap(), file);
        let mut other = file.encode();
        other[2] = 0;
        assert_eq!(AttHead::decode("d", &other).unwrap_err().name(), "corrupt");
        assert_eq!(AttHead::decode("d", &[]).unwrap_err().name(), "corrupt");
    }
}
