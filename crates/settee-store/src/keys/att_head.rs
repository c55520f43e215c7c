//! [`AttHead`]: the record under `H` + digest that says where a chunked attachment's bytes
//! are (its blob's `C` keys) and how many there are. The chunks are `attachments/`'s.

use crate::{Error, Result};

/// Version byte of the head record.
const VERSION: u8 = 1;
/// Encoded size: version, encoding, length, chunk count, blob.
const LEN: usize = 1 + 1 + 8 + 4 + 8;

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

/// A chunked attachment's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttHead {
    /// The stored length in bytes (the sum of its chunks' lengths; the encoded length of an
    /// encoded attachment).
    pub(crate) length: u64,
    /// How many chunks it has, indexes `0..chunks`.
    pub(crate) chunks: u32,
    /// How the stored bytes are encoded, as they were staged. Two revisions may name the
    /// same bytes (one digest) with different encodings (a `.gz` file kept as it is, and a
    /// text CouchDB gzipped to the same bytes): a revision's `AttMeta` decides how it reads
    /// them; this says how the blob was first written.
    pub(crate) encoding: Encoding,
    /// The blob number its chunks are keyed by.
    pub(crate) blob: u64,
}

impl AttHead {
    /// version (1), encoding (1, `0` identity, `1` gzip), length (u64), chunk count (u32), blob (u64);
    /// big-endian.
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = VERSION;
        out[1] = match self.encoding {
            Encoding::Identity => 0,
            Encoding::Gzip => 1,
        };
        out[2..10].copy_from_slice(&self.length.to_be_bytes());
        out[10..14].copy_from_slice(&self.chunks.to_be_bytes());
        out[14..22].copy_from_slice(&self.blob.to_be_bytes());
        out
    }

    /// Decodes the head of attachment `digest`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a record of another size, version or encoding.
    pub(crate) fn decode(digest: &str, bytes: &[u8]) -> Result<AttHead> {
        let bad = |what: &str| Error::corrupt(format!("attachment head of {digest}: {what}"));
        let b: &[u8; LEN] = bytes.try_into().map_err(|_| bad("wrong size"))?;
        if b[0] != VERSION {
            return Err(bad("unknown version"));
        }
        let encoding = match b[1] {
            0 => Encoding::Identity,
            1 => Encoding::Gzip,
            _ => return Err(bad("unknown encoding")),
        };
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        Ok(AttHead {
            length: u64_at(2),
            chunks: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
            encoding,
            blob: u64_at(14),
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
            chunks: 7,
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
    }
}
