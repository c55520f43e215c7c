//! Bookmarks: where a page of `_find` ended, as an opaque base64url string that names the
//! index it was made by, so that a bookmark from another query's index is refused.

use super::{label, Plan};
use crate::{Error, Result};

impl Plan<'_> {
    /// The bookmark to return after a page whose last row is `entry` (an index entry's key
    /// after the index prefix, or a document id for `_all_docs`): opaque, base64url.
    pub fn bookmark(&self, entry: &[u8]) -> String {
        let label = label(self.indexes, self.chosen);
        let mut raw = Vec::with_capacity(3 + label.len() + entry.len());
        raw.push(1);
        // Labels are design document ids and names: far below 64 KiB.
        raw.extend_from_slice(&u16::try_from(label.len()).unwrap_or(u16::MAX).to_be_bytes());
        raw.extend_from_slice(label.as_bytes());
        raw.extend_from_slice(entry);
        base64url_encode(&raw)
    }

    /// Where a bookmark says to resume: reading continues strictly after this entry (before
    /// it, for a descending sort). `None` without a bookmark.
    ///
    /// # Errors
    /// [`Error::InvalidBookmark`] if it does not decode or was made by another index.
    pub fn resume_after(&self, bookmark: Option<&str>) -> Result<Option<Vec<u8>>> {
        let Some(b) = bookmark else {
            return Ok(None);
        };
        let bad = |why: &str| Error::InvalidBookmark {
            reason: format!("Invalid bookmark value: {b:?} ({why})"),
        };
        let raw = base64url_decode(b).ok_or_else(|| bad("not a Settee bookmark"))?;
        if raw.first() != Some(&1) || raw.len() < 3 {
            return Err(bad("not a Settee bookmark"));
        }
        let len = usize::from(u16::from_be_bytes([raw[1], raw[2]]));
        let label_bytes = raw.get(3..3 + len).ok_or_else(|| bad("truncated"))?;
        let expected = label(self.indexes, self.chosen);
        if label_bytes != expected.as_bytes() {
            return Err(bad(&format!(
                "it was made by index {}, this query uses {expected}",
                String::from_utf8_lossy(label_bytes)
            )));
        }
        Ok(Some(raw[3 + len..].to_vec()))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::plan::tests::{idx, req};
    use serde_json::json;

    #[test]
    fn base64url_round_trips() {
        for n in 0..20u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64url_encode(b"hi?"), "aGk_");
        assert!(base64url_decode("a=b").is_none());
    }

    #[test]
    fn bookmarks_belong_to_their_index() {
        let indexes = [idx(
            json!({"index": {"fields": ["a"]}, "ddoc": "a", "name": "a"}),
        )];
        let r = req(json!({"selector": {"a": {"$gt": 0}}}));
        let p = plan(&r, &indexes).unwrap();
        let b = p.bookmark(b"\x40key-and-id");
        assert_eq!(
            p.resume_after(Some(&b)).unwrap().unwrap(),
            b"\x40key-and-id"
        );
        let other = plan(&req(json!({"selector": {"z": 1}})), &indexes).unwrap();
        assert_eq!(
            other.resume_after(Some(&b)).unwrap_err().name(),
            "invalid_bookmark"
        );
        assert_eq!(
            p.resume_after(Some("!!")).unwrap_err().name(),
            "invalid_bookmark"
        );
    }
}
