//! `Rev`: a revision id `N-hash`, parsed once and compared the way CouchDB picks winners.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The largest position we accept. JavaScript peers (PouchDB) lose integer precision above
/// 2^53, so a larger position cannot have come from a real replica.
pub const MAX_POS: u64 = (1 << 53) - 1;

/// The longest hash we accept. CouchDB and PouchDB make 32 hex characters; other writers
/// (old PouchDB, Couchbase Lite, hand-made revs) make other lengths, which CouchDB stores as
/// opaque strings, so we accept any visible ASCII up to this length.
pub const MAX_HASH_LEN: usize = 256;

/// A revision id: the position of the revision in its document's history (1 for the first
/// edit) and an opaque hash.
///
/// `Rev` orders the way CouchDB and PouchDB rank leaves: by position, then by hash compared
/// byte for byte (for lowercase hex this is the order of the raw digest bytes CouchDB stores).
///
/// ```
/// use settee_revtree::Rev;
/// let rev: Rev = "3-1f2e".parse()?;
/// assert_eq!(rev.pos(), 3);
/// assert_eq!(rev.hash(), "1f2e");
/// assert_eq!(rev.to_string(), "3-1f2e");
/// assert!("x-1".parse::<Rev>().is_err());
/// # Ok::<(), settee_revtree::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rev {
    pos: u64,
    hash: Box<str>,
}

impl Rev {
    /// Builds a rev from a position and a hash, checking both.
    ///
    /// # Errors
    /// [`Error::InvalidRev`] when `pos` is 0 or above [`MAX_POS`], or the hash is empty, too
    /// long, or has characters other than visible ASCII.
    pub fn new(pos: u64, hash: impl Into<String>) -> Result<Rev> {
        let hash = hash.into();
        check_pos(pos, &hash)?;
        check_hash(&hash).map_err(|reason| invalid(&format!("{pos}-{hash}"), reason))?;
        Ok(Rev {
            pos,
            hash: hash.into_boxed_str(),
        })
    }

    /// The position: 1 for a document's first revision, one more for each edit.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The hash part, after the `-`.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub(crate) fn new_unchecked(pos: u64, hash: Box<str>) -> Rev {
        Rev { pos, hash }
    }
}

fn invalid(text: &str, reason: &'static str) -> Error {
    Error::InvalidRev {
        rev: text.chars().take(64).collect(),
        reason,
    }
}

fn check_pos(pos: u64, hash: &str) -> Result<()> {
    if pos == 0 {
        return Err(invalid(&format!("0-{hash}"), "position must be at least 1"));
    }
    if pos > MAX_POS {
        return Err(invalid(&format!("{pos}-{hash}"), "position is too large"));
    }
    Ok(())
}

/// Checks a hash on its own; used for `_revisions.ids` entries too.
pub(crate) fn check_hash(hash: &str) -> std::result::Result<(), &'static str> {
    if hash.is_empty() {
        return Err("hash is empty");
    }
    if hash.len() > MAX_HASH_LEN {
        return Err("hash is too long");
    }
    if !hash.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("hash has characters other than visible ASCII");
    }
    Ok(())
}

impl FromStr for Rev {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rev> {
        let (pos, hash) = s
            .split_once('-')
            .ok_or_else(|| invalid(s, "expected N-hash"))?;
        if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(s, "position is not a decimal number"));
        }
        let pos: u64 = pos
            .parse()
            .map_err(|_| invalid(s, "position is too large"))?;
        check_pos(pos, hash)?;
        check_hash(hash).map_err(|reason| invalid(s, reason))?;
        Ok(Rev {
            pos,
            hash: hash.into(),
        })
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.pos, self.hash)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rev({self})")
    }
}

impl Ord for Rev {
    fn cmp(&self, other: &Rev) -> Ordering {
        self.pos
            .cmp(&other.pos)
            .then_with(|| self.hash.as_bytes().cmp(other.hash.as_bytes()))
    }
}

impl PartialOrd for Rev {
    fn partial_cmp(&self, other: &Rev) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Rev {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rev {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Rev, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let rev: Rev = "12-abcdef0123456789abcdef0123456789".parse().unwrap();
        assert_eq!(rev.pos(), 12);
        assert_eq!(rev.to_string(), "12-abcdef0123456789abcdef0123456789");
    }

    #[test]
    fn hash_may_contain_a_dash() {
        // CouchDB splits at the first '-' only.
        let rev: Rev = "2-ab-cd".parse().unwrap();
        assert_eq!(rev.hash(), "ab-cd");
    }

    #[test]
    fn malformed_revs_are_errors() {
        for bad in [
            "",
            "-",
            "1-",
            "-abc",
            "abc",
            "0-abc",
            "x-abc",
            "+1-abc",
            " 1-abc",
            "1 -abc",
            "1-a b",
            "1-ab\u{e9}",
            "1-\n",
            "18446744073709551616-abc",
            "9007199254740992-abc",
        ] {
            let err = bad.parse::<Rev>().unwrap_err();
            assert_eq!(err.name(), "bad_request", "{bad:?}");
        }
    }

    #[test]
    fn too_long_hash_is_an_error() {
        let long = format!("1-{}", "a".repeat(MAX_HASH_LEN + 1));
        assert!(long.parse::<Rev>().is_err());
        let ok = format!("1-{}", "a".repeat(MAX_HASH_LEN));
        assert!(ok.parse::<Rev>().is_ok());
    }

    #[test]
    fn orders_by_pos_then_hash_bytes() {
        let a: Rev = "2-b".parse().unwrap();
        let b: Rev = "10-a".parse().unwrap();
        let c: Rev = "10-b".parse().unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn serde_as_string() {
        let rev: Rev = serde_json::from_str("\"3-abc\"").unwrap();
        assert_eq!(serde_json::to_string(&rev).unwrap(), "\"3-abc\"");
        assert!(serde_json::from_str::<Rev>("\"3abc\"").is_err());
        assert!(serde_json::from_str::<Rev>("3").is_err());
    }
}
