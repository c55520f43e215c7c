//! `RevTree`: a document's revision forest, and the read-only questions asked of it (winner,
//! leaves, conflicts, ancestry, `_revs_info`, `latest`, `_revs_diff`). Merging and stemming
//! live in `merge.rs` and `stem.rs`; the storage encoding lives in `encoding.rs`.
//!
//! The forest follows PouchDB's model (`pouchdb-merge`): each root is a path that starts at its
//! own position, and after stemming the same revision can appear under two roots (when two
//! branches were cut at different depths). Every query here tolerates that duplication.

use std::collections::BTreeSet;

use crate::{Rev, RevPath, Revisions};

/// Whether a revision's body is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevStatus {
    /// The body is stored.
    Available,
    /// Only the id is known: an ancestor learned from `_revisions`, or a body removed by
    /// compaction.
    Missing,
}

/// A node of the arena. Children are kept sorted by hash, as PouchDB and CouchDB keep them.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: u64,
    pub(crate) hash: Box<str>,
    pub(crate) status: RevStatus,
    pub(crate) deleted: bool,
    pub(crate) parent: Option<u32>,
    pub(crate) children: Vec<u32>,
}

impl Node {
    pub(crate) fn rev(&self) -> Rev {
        Rev::from_checked(self.pos, self.hash.clone())
    }

    fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// One leaf of a tree: a revision with no children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf revision.
    pub rev: Rev,
    /// Whether the revision is a deletion (tombstone).
    pub deleted: bool,
    /// Whether its body is stored.
    pub status: RevStatus,
}

impl Leaf {
    /// CouchDB's winner order: live beats deleted, then the higher position, then the greater
    /// hash. `a.cmp_winner(b) == Greater` means `a` wins over `b`.
    pub fn cmp_winner(&self, other: &Leaf) -> std::cmp::Ordering {
        (!self.deleted)
            .cmp(&!other.deleted)
            .then_with(|| self.rev.cmp(&other.rev))
    }
}

/// Status of a revision as `_revs_info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevInfoStatus {
    /// The body is stored.
    Available,
    /// The body is not stored.
    Missing,
    /// The revision is a deletion whose tombstone is stored.
    Deleted,
}

impl RevInfoStatus {
    /// The string CouchDB uses: `available`, `missing` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevInfoStatus::Available => "available",
            RevInfoStatus::Missing => "missing",
            RevInfoStatus::Deleted => "deleted",
        }
    }
}

/// The answer of [`RevTree::revs_diff`] for one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevsDiff {
    /// The asked revisions the tree does not have, in the order asked.
    pub missing: Vec<Rev>,
    /// Leaves of the tree that could be ancestors of a missing revision (their position is
    /// lower than some missing revision's), as CouchDB computes them.
    pub possible_ancestors: Vec<Rev>,
}

/// A document's revision tree (a forest after stemming), never empty.
///
/// ```
/// use settee_revtree::{RevPath, RevTree, Revisions};
/// let mut tree = RevTree::new(&RevPath::new(1, ["a", "b"])?, false);
/// // Another replica edited 1-a differently: a conflict.
/// tree.merge(&RevPath::new(1, ["a", "c"])?, false, 1000);
/// assert_eq!(tree.winner().to_string(), "2-c");
/// assert_eq!(tree.conflicts()[0].to_string(), "2-b");
/// # Ok::<(), settee_revtree::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RevTree {
    pub(crate) nodes: Vec<Node>,
    /// Sorted by (pos, hash).
    pub(crate) roots: Vec<u32>,
}

impl RevTree {
    /// A tree holding one path: its leaf is available (and deleted if `deleted`), its
    /// ancestors are missing.
    pub fn new(path: &RevPath, deleted: bool) -> RevTree {
        let mut tree = RevTree {
            nodes: Vec::with_capacity(path.len()),
            roots: Vec::new(),
        };
        let root = tree.push_chain(path, deleted, RevStatus::Available, None);
        tree.roots.push(root);
        tree
    }

    /// Appends the path's nodes as a detached chain under `parent` and returns the first one.
    pub(crate) fn push_chain(
        &mut self,
        path: &RevPath,
        deleted: bool,
        leaf_status: RevStatus,
        parent: Option<u32>,
    ) -> u32 {
        let first = self.nodes.len() as u32;
        let last = path.len() - 1;
        for (i, hash) in path.hashes().iter().enumerate() {
            let idx = self.nodes.len() as u32;
            let parent = if i == 0 { parent } else { Some(idx - 1) };
            self.nodes.push(Node {
                pos: path.start() + i as u64,
                hash: hash.clone(),
                status: if i == last {
                    leaf_status
                } else {
                    RevStatus::Missing
                },
                deleted: i == last && deleted,
                parent,
                children: Vec::new(),
            });
            if i > 0 {
                self.nodes[idx as usize - 1].children.push(idx);
            }
        }
        first
    }

    pub(crate) fn node(&self, idx: u32) -> &Node {
        &self.nodes[idx as usize]
    }

    /// Indices of every copy of `rev` (more than one only after stemming split a branch).
    pub(crate) fn find_all<'a>(
        &'a self,
        pos: u64,
        hash: &'a str,
    ) -> impl Iterator<Item = u32> + 'a {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.pos == pos && &*n.hash == hash)
            .map(|(i, _)| i as u32)
    }

    /// Nodes reachable from the roots, depth first, roots in order, children by hash.
    pub(crate) fn walk(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<u32> = self.roots.iter().rev().copied().collect();
        while let Some(idx) = stack.pop() {
            out.push(idx);
            stack.extend(self.node(idx).children.iter().rev().copied());
        }
        out
    }

    /// Number of nodes (revisions, counting a revision twice if stemming duplicated it).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The roots' revisions, in order of position.
    pub fn roots(&self) -> Vec<Rev> {
        self.roots.iter().map(|&r| self.node(r).rev()).collect()
    }

    /// Every leaf, each once, sorted best first (the winner is first).
    pub fn leaves(&self) -> Vec<Leaf> {
        let mut seen: BTreeSet<(u64, &str)> = BTreeSet::new();
        let mut leaves: Vec<Leaf> = self
            .nodes
            .iter()
            .filter(|n| n.is_leaf())
            .filter(|n| seen.insert((n.pos, &*n.hash)))
            .map(|n| Leaf {
                rev: n.rev(),
                deleted: n.deleted,
                status: n.status,
            })
            .collect();
        leaves.sort_by(|a, b| b.cmp_winner(a));
        leaves
    }

    /// The winning leaf.
    pub fn winning_leaf(&self) -> Leaf {
        // INVARIANT: a RevTree has at least one node (RevTree::new takes a non-empty path,
        // decoding rejects an empty tree, merging and stemming never remove leaves), and a
        // finite non-empty forest has a leaf.
        self.nodes
            .iter()
            .filter(|n| n.is_leaf())
            .map(|n| Leaf {
                rev: n.rev(),
                deleted: n.deleted,
                status: n.status,
            })
            .max_by(Leaf::cmp_winner)
            .expect("rev tree has a leaf")
    }

    /// The winning revision: CouchDB's deterministic pick among the leaves, the same on every
    /// replica. Live leaves beat deleted ones, then the higher position wins, then the greater
    /// hash.
    pub fn winner(&self) -> Rev {
        self.winning_leaf().rev
    }

    /// Whether the document reads as deleted: its winner is a deletion.
    pub fn is_deleted(&self) -> bool {
        self.winning_leaf().deleted
    }

    /// `_conflicts`: live leaves other than the winner, best first.
    pub fn conflicts(&self) -> Vec<Rev> {
        let mut leaves = self.leaves().into_iter();
        leaves.next();
        leaves.filter(|l| !l.deleted).map(|l| l.rev).collect()
    }

    /// `_deleted_conflicts`: deleted leaves other than the winner, best first.
    pub fn deleted_conflicts(&self) -> Vec<Rev> {
        let mut leaves = self.leaves().into_iter();
        leaves.next();
        leaves.filter(|l| l.deleted).map(|l| l.rev).collect()
    }

    /// Whether the document has more than one live leaf.
    pub fn has_conflicts(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.is_leaf() && !n.deleted)
            .map(|n| (n.pos, &n.hash))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    }

    /// Whether the tree knows `rev` (as a leaf, an ancestor, or a missing ancestor).
    pub fn contains(&self, rev: &Rev) -> bool {
        self.find_all(rev.pos(), rev.hash()).next().is_some()
    }

    /// Whether `rev` is a leaf of the tree.
    pub fn is_leaf(&self, rev: &Rev) -> bool {
        self.find_all(rev.pos(), rev.hash())
            .any(|i| self.node(i).is_leaf())
    }

    /// The status of `rev`'s body, or `None` if the tree does not know `rev`.
    pub fn status(&self, rev: &Rev) -> Option<RevStatus> {
        let mut status = None;
        for i in self.find_all(rev.pos(), rev.hash()) {
            if self.node(i).status == RevStatus::Available {
                return Some(RevStatus::Available);
            }
            status = Some(RevStatus::Missing);
        }
        status
    }

    /// Whether `rev` is a deletion, or `None` if the tree does not know `rev`.
    pub fn is_deleted_rev(&self, rev: &Rev) -> Option<bool> {
        self.find_all(rev.pos(), rev.hash())
            .map(|i| self.node(i).deleted)
            .reduce(|a, b| a || b)
    }

    /// The copy of `rev` with the longest known ancestry.
    fn deepest_copy(&self, rev: &Rev) -> Option<u32> {
        self.find_all(rev.pos(), rev.hash())
            .max_by_key(|&i| self.ancestors(i).count())
    }

    /// `idx` and its ancestors, newest first.
    pub(crate) fn ancestors(&self, idx: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(idx), move |&i| self.node(i).parent)
    }

    /// The known history of `rev`, oldest first, ending at `rev`.
    pub fn ancestry(&self, rev: &Rev) -> Option<RevPath> {
        let idx = self.deepest_copy(rev)?;
        let mut hashes: Vec<Box<str>> = self
            .ancestors(idx)
            .map(|i| self.node(i).hash.clone())
            .collect();
        hashes.reverse();
        let start = rev.pos() + 1 - hashes.len() as u64;
        // The tree's nodes were validated on the way in, so this cannot fail.
        RevPath::new(start, hashes.into_iter().map(String::from)).ok()
    }

    /// `_revisions` for `rev`: its ancestry, newest first.
    pub fn revisions(&self, rev: &Rev) -> Option<Revisions> {
        self.ancestry(rev).map(|p| p.to_revisions())
    }

    /// `_revs_info` for `rev`: its ancestry, newest first, each with its status.
    pub fn revs_info(&self, rev: &Rev) -> Option<Vec<(Rev, RevInfoStatus)>> {
        let idx = self.deepest_copy(rev)?;
        Some(
            self.ancestors(idx)
                .map(|i| {
                    let n = self.node(i);
                    let status = match (n.status, n.deleted) {
                        (RevStatus::Missing, _) => RevInfoStatus::Missing,
                        (RevStatus::Available, true) => RevInfoStatus::Deleted,
                        (RevStatus::Available, false) => RevInfoStatus::Available,
                    };
                    (n.rev(), status)
                })
                .collect(),
        )
    }

    /// `latest`: the leaves that descend from `rev` (just `rev` if it is a leaf), best first.
    /// Empty if the tree does not know `rev`.
    pub fn latest(&self, rev: &Rev) -> Vec<Rev> {
        let mut found = BTreeSet::new();
        let mut stack: Vec<u32> = self.find_all(rev.pos(), rev.hash()).collect();
        while let Some(i) = stack.pop() {
            let n = self.node(i);
            if n.is_leaf() {
                found.insert(n.rev());
            } else {
                stack.extend(n.children.iter().copied());
            }
        }
        let mut leaves: Vec<Leaf> = self
            .leaves()
            .into_iter()
            .filter(|l| found.contains(&l.rev))
            .collect();
        leaves.sort_by(|a, b| b.cmp_winner(a));
        leaves.into_iter().map(|l| l.rev).collect()
    }

    /// `_revs_diff` for one document: which of `revs` the tree lacks, and which of its leaves
    /// could be their ancestors (CouchDB: leaves whose position is below some missing rev's).
    pub fn revs_diff<'a>(&self, revs: impl IntoIterator<Item = &'a Rev>) -> RevsDiff {
        let mut missing: Vec<Rev> = Vec::new();
        for rev in revs {
            if !self.contains(rev) && !missing.contains(rev) {
                missing.push(rev.clone());
            }
        }
        let max_missing = missing.iter().map(Rev::pos).max().unwrap_or(0);
        let possible_ancestors = if missing.is_empty() {
            Vec::new()
        } else {
            self.leaves()
                .into_iter()
                .filter(|l| l.rev.pos() < max_missing)
                .map(|l| l.rev)
                .collect()
        };
        RevsDiff {
            missing,
            possible_ancestors,
        }
    }

    /// Every revision the tree knows, each once, sorted.
    pub fn revs(&self) -> BTreeSet<Rev> {
        self.nodes.iter().map(Node::rev).collect()
    }

    /// Every root-to-leaf path, each as (start position, hashes oldest first), sorted. Two
    /// trees with the same paths are the same forest; tests compare trees this way.
    pub fn paths(&self) -> Vec<(u64, Vec<String>)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                let mut hashes: Vec<String> = self
                    .ancestors(i as u32)
                    .map(|a| self.node(a).hash.to_string())
                    .collect();
                hashes.reverse();
                out.push((n.pos + 1 - hashes.len() as u64, hashes));
            }
        }
        out.sort();
        out
    }

    /// Marks `rev`'s body as gone (compaction). Returns whether the tree knows `rev`.
    pub fn set_missing(&mut self, rev: &Rev) -> bool {
        let copies: Vec<u32> = self.find_all(rev.pos(), rev.hash()).collect();
        for &i in &copies {
            self.nodes[i as usize].status = RevStatus::Missing;
        }
        !copies.is_empty()
    }

    /// Non-leaf revisions whose bodies are still stored: what compaction may drop.
    pub fn compactable(&self) -> Vec<Rev> {
        let leaves: BTreeSet<Rev> = self.leaves().into_iter().map(|l| l.rev).collect();
        self.nodes
            .iter()
            .filter(|n| n.status == RevStatus::Available && !n.is_leaf())
            .map(Node::rev)
            .filter(|r| !leaves.contains(r))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

impl PartialEq for RevTree {
    /// Two trees are equal when they hold the same root-to-leaf paths with the same statuses
    /// and deletion flags, whatever their arena layout.
    fn eq(&self, other: &RevTree) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for RevTree {}

/// A root-to-leaf path as (start, [(hash, available, deleted)]), for comparing trees.
type CanonicalPath = (u64, Vec<(String, bool, bool)>);

impl RevTree {
    fn canonical(&self) -> Vec<CanonicalPath> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                let mut nodes: Vec<(String, bool, bool)> = self
                    .ancestors(i as u32)
                    .map(|a| {
                        let a = self.node(a);
                        (
                            a.hash.to_string(),
                            a.status == RevStatus::Available,
                            a.deleted,
                        )
                    })
                    .collect();
                nodes.reverse();
                out.push((n.pos + 1 - nodes.len() as u64, nodes));
            }
        }
        out.sort();
        out
    }
}
