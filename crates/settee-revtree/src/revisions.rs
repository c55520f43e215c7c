//! `Revisions`: the `_revisions` ancestry object (`{start, ids}`), and `RevPath`, the checked
//! linear history that the tree merges.

use serde::{Deserialize, Serialize};

use crate::rev::MAX_POS;
use crate::{Error, Result, Rev};

/// CouchDB's `_revisions` object: `start` is the position of `ids[0]`, and `ids` lists hashes
/// newest first, each the parent of the one before it.
///
/// ```
/// use settee_revtree::Revisions;
/// let revs: Revisions = serde_json::from_str(r#"{"start":3,"ids":["c","b","a"]}"#)?;
/// let path = revs.to_path()?;
/// assert_eq!(path.leaf().to_string(), "3-c");
/// assert_eq!(path.start(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    /// Position of the newest revision, `ids[0]`.
    pub start: u64,
    /// Hashes, newest first.
    pub ids: Vec<String>,
}

impl Revisions {
    /// Checks the ancestry and turns it into a path, oldest first.
    ///
    /// # Errors
    /// [`Error::InvalidRevisions`] when `ids` is empty, `start` is above the largest
    /// position, or `ids` reaches back before position 0. (CouchDB stores such a history
    /// too, with negative positions; no replica can name those revisions back to it, as its
    /// own rev parser refuses them.)
    pub fn to_path(&self) -> Result<RevPath> {
        if self.ids.is_empty() {
            return Err(bad("ids is empty"));
        }
        if self.start > MAX_POS {
            return Err(bad(format!("start {} is out of range", self.start)));
        }
        let len = self.ids.len() as u64;
        if len > self.start + 1 {
            return Err(bad(format!(
                "{} ids reach back before position 0 from start {}",
                len, self.start
            )));
        }
        Ok(RevPath {
            start: self.start + 1 - len,
            hashes: self.ids.iter().rev().map(|h| h.as_str().into()).collect(),
        })
    }

    /// The ancestry of `rev` when nothing but the rev itself is known.
    pub fn from_rev(rev: &Rev) -> Revisions {
        Revisions {
            start: rev.pos(),
            ids: vec![rev.hash().to_owned()],
        }
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidRevisions {
        reason: reason.into(),
    }
}

/// A checked, non-empty linear history: the hashes of consecutive revisions from position
/// `start` (oldest) to the leaf (newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevPath {
    start: u64,
    hashes: Vec<Box<str>>,
}

impl RevPath {
    /// A path from its oldest position and its hashes, oldest first.
    ///
    /// # Errors
    /// [`Error::InvalidRevisions`] as for [`Revisions::to_path`].
    pub fn new<I, S>(start: u64, hashes_oldest_first: I) -> Result<RevPath>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ids: Vec<String> = hashes_oldest_first.into_iter().map(Into::into).collect();
        ids.reverse();
        let len = ids.len() as u64;
        if ids.is_empty() {
            return Err(bad("ids is empty"));
        }
        let newest = start
            .checked_add(len - 1)
            .filter(|&n| n <= MAX_POS)
            .ok_or_else(|| {
                bad(format!(
                    "{len} ids from start {start} pass the largest position"
                ))
            })?;
        Revisions { start: newest, ids }.to_path()
    }

    /// The path of a single revision with no known ancestors.
    pub fn from_rev(rev: &Rev) -> RevPath {
        RevPath {
            start: rev.pos(),
            hashes: vec![rev.hash().into()],
        }
    }

    /// The path of a new edit: `parent` (if any) followed by a new revision `hash`.
    ///
    /// # Errors
    /// [`Error::InvalidRev`] when the parent is at the largest position.
    pub fn child_of(parent: Option<&Rev>, hash: &str) -> Result<RevPath> {
        match parent {
            None => Ok(RevPath::from_rev(&Rev::new(1, hash)?)),
            Some(p) => {
                // INVARIANT: p.pos() <= MAX_POS < u64::MAX, so this does not overflow.
                let child = Rev::new(p.pos() + 1, hash)?;
                Ok(RevPath {
                    start: p.pos(),
                    hashes: vec![p.hash().into(), child.hash().into()],
                })
            }
        }
    }

    /// Position of the oldest revision on the path.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Number of revisions on the path (at least 1).
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Always false: a path has at least one revision. Present for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The newest revision.
    pub fn leaf(&self) -> Rev {
        self.rev_at(self.hashes.len() - 1)
    }

    /// The revisions, oldest first.
    pub fn revs(&self) -> impl Iterator<Item = Rev> + '_ {
        (0..self.hashes.len()).map(|i| self.rev_at(i))
    }

    /// The hashes, oldest first.
    pub fn hashes(&self) -> &[Box<str>] {
        &self.hashes
    }

    fn rev_at(&self, i: usize) -> Rev {
        Rev::from_checked(self.start + i as u64, self.hashes[i].clone())
    }

    /// As a `_revisions` object (newest first).
    pub fn to_revisions(&self) -> Revisions {
        Revisions {
            start: self.start + self.hashes.len() as u64 - 1,
            ids: self.hashes.iter().rev().map(|h| h.to_string()).collect(),
        }
    }
}

impl Rev {
    /// Builds a rev from parts already checked by this crate (a path or tree node).
    pub(crate) fn from_checked(pos: u64, hash: Box<str>) -> Rev {
        // Parts come from a RevPath or a RevTree, whose constructors validated them.
        Rev::new_unchecked(pos, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revs(start: u64, ids: &[&str]) -> Revisions {
        Revisions {
            start,
            ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn path_from_revisions_is_oldest_first() {
        let path = revs(5, &["e", "d", "c"]).to_path().unwrap();
        assert_eq!(path.start(), 3);
        let all: Vec<String> = path.revs().map(|r| r.to_string()).collect();
        assert_eq!(all, ["3-c", "4-d", "5-e"]);
        assert_eq!(path.to_revisions(), revs(5, &["e", "d", "c"]));
    }

    #[test]
    fn empty_ids_are_rejected() {
        assert!(matches!(
            revs(1, &[]).to_path(),
            Err(Error::InvalidRevisions { .. })
        ));
    }

    #[test]
    fn ids_reaching_before_position_zero_are_rejected() {
        assert!(revs(1, &["c", "b", "a"]).to_path().is_err());
        assert!(revs(0, &["b", "a"]).to_path().is_err());
    }

    #[test]
    fn histories_down_to_position_zero_are_kept() {
        // Apache CouchDB stores these with new_edits=false and replicates them.
        let path = revs(1, &["b", "a"]).to_path().unwrap();
        let all: Vec<String> = path.revs().map(|r| r.to_string()).collect();
        assert_eq!(all, ["0-a", "1-b"]);
        assert_eq!(revs(0, &["a"]).to_path().unwrap().leaf().to_string(), "0-a");
        assert_eq!(
            RevPath::new(0, ["a", "b"]).unwrap().to_revisions(),
            revs(1, &["b", "a"])
        );
    }

    #[test]
    fn huge_start_is_rejected() {
        assert!(revs(u64::MAX, &["a"]).to_path().is_err());
        assert!(revs(MAX_POS, &["a"]).to_path().is_ok());
        assert!(RevPath::new(MAX_POS, ["a", "b"]).is_err());
        assert!(RevPath::new(u64::MAX, ["a"]).is_err());
    }

    #[test]
    fn any_string_is_a_hash_in_ids() {
        let long = "x".repeat(300);
        let path = revs(3, &["", "a b\n\u{0}", &long]).to_path().unwrap();
        assert_eq!(path.leaf().to_string(), "3-");
        assert_eq!(path.revs().next().unwrap().hash(), long);
    }

    #[test]
    fn revisions_deserialize_rejects_wrong_types() {
        // A negative start (CouchDB stores one) cannot be represented.
        assert!(serde_json::from_str::<Revisions>(r#"{"start":-1,"ids":["a"]}"#).is_err());
        assert!(serde_json::from_str::<Revisions>(r#"{"start":1,"ids":"a"}"#).is_err());
        assert!(serde_json::from_str::<Revisions>(r#"{"ids":["a"]}"#).is_err());
    }

    #[test]
    fn child_of_builds_two_step_path() {
        let parent: Rev = "4-abc".parse().unwrap();
        let path = RevPath::child_of(Some(&parent), "def").unwrap();
        assert_eq!(path.start(), 4);
        assert_eq!(path.leaf().to_string(), "5-def");
        let root = RevPath::child_of(None, "x").unwrap();
        assert_eq!(root.leaf().to_string(), "1-x");
    }
}
