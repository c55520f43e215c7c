//! The store's counters (`update_seq`, `doc_count`, `doc_del_count`, `purge_seq`), held
//! under the writer lock, and their one meta record.

use crate::keys;
use crate::{Error, Result};

/// The counters a write changes, held under the write lock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) update_seq: u64,
    pub(crate) doc_count: u64,
    pub(crate) doc_del_count: u64,
    pub(crate) purge_seq: u64,
}

impl Counters {
    /// The `Mcounters` record: four u64 big-endian, in field order.
    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, v) in [
            self.update_seq,
            self.doc_count,
            self.doc_del_count,
            self.purge_seq,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Counters> {
        if bytes.len() != 32 {
            return Err(Error::corrupt(format!(
                "counters record has {} bytes, expected 32",
                bytes.len()
            )));
        }
        let at = |i: usize| keys::decode_u64(&bytes[i * 8..i * 8 + 8], "counter");
        Ok(Counters {
            update_seq: at(0)?,
            doc_count: at(1)?,
            doc_del_count: at(2)?,
            purge_seq: at(3)?,
        })
    }
}
