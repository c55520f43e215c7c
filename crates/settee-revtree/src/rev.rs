//! `Rev`: a revision id `N-hash`, parsed once and compared the way CouchDB picks winners.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The largest position we accept: one below `u64::MAX`, so that a child's position never
/// overflows. Apache CouchDB stores any integer position given with `new_edits=false`
/// (bignums included) and replicates it; every position a `u64` holds can be stored here and
/// replicated back. A larger one cannot be represented and is reported as an error.
pub const MAX_POS: u64 = u64::MAX - 1;

/// A revision id: the position of the revision in its document's history (1 for the first
/// edit) and an opaque hash.
///
/// The form is CouchDB's: a decimal position, a `-`, and everything after that first `-` is
/// the hash. Apache CouchDB 3.5 stores whatever a `new_edits=false` write gives it in that
/// form, so a hash may be any string (empty, any length, spaces, control characters,
/// non-ASCII) and a position may be 0; `Rev` accepts all of it, so that such a revision
/// replicates through Settee unchanged. What is refused: no `-`, a position that is not
/// plain decimal digits (`+1`, ` 1`, `-1`), or above [`MAX_POS`].
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
/// assert_eq!("0-xyz!".parse::<Rev>()?.hash(), "xyz!"); // as CouchDB stores it
/// # Ok::<(), settee_revtree::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rev {
    pos: u64,
    hash: Box<str>,
}

impl Rev {
    /// Builds a rev from a position and a hash.
    ///
    /// # Errors
    /// [`Error::InvalidRev`] when `pos` is above [`MAX_POS`].
    pub fn new(pos: u64, hash: impl Into<String>) -> Result<Rev> {
        let hash = hash.into();
        check_pos(pos, &hash)?;
        Ok(Rev {
            pos,
            hash: hash.into_boxed_str(),
        })
    }

    /// The position: 1 for a document's first revision, one more for each edit (0 only for
    /// revisions another writer made so).
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

pub(crate) fn check_pos(pos: u64, hash: &str) -> Result<()> {
    if pos > MAX_POS {
        return Err(invalid(&format!("{pos}-{hash}"), "position is too large"));
    }
    Ok(())
}

impl FromStr for Rev {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rev> {
        let (pos, hash) = s
            .split_once('-')
            .ok_or_else(|| invalid(s, "expected N-hash"))?;
        if pos.is_empty()
            && hash
                .split('-')
                .next()
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            // `-1-b`: CouchDB stores it for `_revisions: {start: -1}`, and refuses it as a rev.
            return Err(invalid(s, "position is negative"));
        }
        if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(s, "position is not a decimal number"));
        }
        let pos: u64 = pos
            .parse()
            .map_err(|_| invalid(s, "position is too large"))?;
        check_pos(pos, hash)?;
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
        // What Apache CouchDB 3.5 answers 400 "Invalid rev format" for (no `-`, no digits
        // before it), what it never sends back (`+1-` is stored as `1-`), and positions a
        // u64 cannot hold.
        for bad in [
            "",
            "-",
            "-abc",
            "-1-b",
            "abc",
            "x-abc",
            "+1-abc",
            " 1-abc",
            "1 -abc",
            "18446744073709551615-abc",
            "18446744073709551616-abc",
            "99999999999999999999999999999-abc",
        ] {
            let err = bad.parse::<Rev>().unwrap_err();
            assert_eq!(err.name(), "bad_request", "{bad:?}");
        }
        let err = "-1-b".parse::<Rev>().unwrap_err();
        assert_eq!(
            err.reason(),
            r#"invalid rev format "-1-b": position is negative"#
        );
        assert_eq!(err.to_string(), format!("bad_request: {}", err.reason()));
    }

    #[test]
    fn every_rev_couchdb_stores_parses_and_prints_back_unchanged() {
        // Each of these was written to Apache CouchDB 3.5.0 with new_edits=false and read
        // back in this exact form.
        let long = format!("1-{}", "a1".repeat(150));
        let huge = format!("1-{}", "z".repeat(100_000));
        for text in [
            "0-abc",
            "1-xyz!",
            "1-",
            "0-",
            "1--abc",
            "2-ab-cd",
            "1-a b",
            "1-ab\u{e9}",
            "1-\u{1f600}",
            "1-a\nb",
            "1-a\u{0}b",
            "1-abcdef0123456789abcdef0123456789",
            "9007199254740992-abc",
            "18446744073709551614-abc",
            &long,
            &huge,
        ] {
            let rev: Rev = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(rev.to_string(), text);
            assert_eq!(Rev::new(rev.pos(), rev.hash()).unwrap(), rev);
        }
        assert_eq!("0-abc".parse::<Rev>().unwrap().pos(), 0);
        assert_eq!("1-".parse::<Rev>().unwrap().hash(), "");
        // Leading zeros are read as CouchDB reads them, and printed canonically.
        assert_eq!("01-abc".parse::<Rev>().unwrap().to_string(), "1-abc");
        assert!(Rev::new(MAX_POS + 1, "a").is_err());
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
