//! Merging a path into a tree (PouchDB's `doMerge`/`mergeTree`, CouchDB's
//! `couch_key_tree:merge`), and what the merge did.
//!
//! A path joins a root when they share a revision at the same position: either they start
//! at the same place with the same hash, or one starts deeper and its first hash appears at that
//! depth in the other. That second case is how a history that reaches back further than a
//! stemmed tree, or a stemmed history of a full tree, joins it instead of starting a new root.

use crate::tree::{Node, RevStatus};
use crate::{Rev, RevPath, RevTree};

/// What merging a path did to the tree, in CouchDB's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeKind {
    /// The path's leaf is new and extends an existing leaf (or the tree was empty): a normal
    /// edit. CouchDB's `new_leaf`.
    NewLeaf,
    /// The path's leaf is new and starts a sibling of an existing revision, or a new root: a
    /// conflict. CouchDB's `new_branch`.
    NewBranch,
    /// The path's leaf was already in the tree. CouchDB's `internal_node`. (Older ancestors
    /// may still have been added, or a missing body made available.)
    AlreadyKnown,
}

/// The result of [`RevTree::merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// What the merge did.
    pub kind: MergeKind,
    /// Revisions that stemming removed and that no longer appear anywhere in the tree (their
    /// bodies can be deleted).
    pub stemmed: Vec<Rev>,
}

impl RevTree {
    /// Merges a revision's path into the tree, then stems every root-to-leaf path to at most
    /// `revs_limit` revisions (a limit of 0 is taken as 1).
    ///
    /// The path's leaf is marked available (its body is being stored) and `deleted` says
    /// whether it is a deletion; its ancestors are marked missing unless the tree already has
    /// their bodies.
    ///
    /// ```
    /// use settee_revtree::{MergeKind, RevPath, RevTree};
    /// let mut tree = RevTree::new(&RevPath::new(1, ["a"])?, false);
    /// let edit = tree.merge(&RevPath::new(1, ["a", "b"])?, false, 1000);
    /// assert_eq!(edit.kind, MergeKind::NewLeaf);
    /// let again = tree.merge(&RevPath::new(1, ["a", "b"])?, false, 1000);
    /// assert_eq!(again.kind, MergeKind::AlreadyKnown);
    /// let fork = tree.merge(&RevPath::new(1, ["a", "c"])?, false, 1000);
    /// assert_eq!(fork.kind, MergeKind::NewBranch);
    /// # Ok::<(), settee_revtree::Error>(())
    /// ```
    pub fn merge(&mut self, path: &RevPath, deleted: bool, revs_limit: u64) -> MergeOutcome {
        let kind = self.merge_kind(path);
        self.merge_unstemmed(path, deleted, RevStatus::Available);
        let stemmed = self.stem(revs_limit);
        MergeOutcome { kind, stemmed }
    }

    /// Classifies the merge before doing it (see [`MergeKind`]).
    fn merge_kind(&self, path: &RevPath) -> MergeKind {
        let leaf = path.leaf();
        if self.contains(&leaf) {
            return MergeKind::AlreadyKnown;
        }
        // The deepest revision of the path (other than the new leaf) the tree already has.
        let attach = path
            .revs()
            .take(path.len() - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find_map(|rev| {
                let copies: Vec<u32> = self.find_all(rev.pos(), rev.hash()).collect();
                (!copies.is_empty()).then_some(copies)
            });
        match attach {
            Some(copies) if copies.iter().all(|&i| self.node(i).children.is_empty()) => {
                MergeKind::NewLeaf
            }
            _ => MergeKind::NewBranch,
        }
    }

    /// PouchDB's `doMerge` without stemming: the path joins every root it overlaps (those
    /// roots become one tree), or becomes a new root.
    pub(crate) fn merge_unstemmed(&mut self, path: &RevPath, deleted: bool, status: RevStatus) {
        let overlapping: Vec<u32> = self
            .roots
            .iter()
            .copied()
            .filter(|&r| self.overlaps(r, path))
            .collect();
        let mut unified = self.push_chain(path, deleted, status, None);
        let mut kept: Vec<u32> = Vec::with_capacity(self.roots.len() + 1);
        for &root in &self.roots.clone() {
            if !overlapping.contains(&root) {
                kept.push(root);
                continue;
            }
            let (early, late) = if self.node(root).pos <= self.node(unified).pos {
                (root, unified)
            } else {
                (unified, root)
            };
            if self.join(early, late) {
                unified = early;
            } else {
                kept.push(root);
            }
        }
        kept.push(unified);
        self.roots = kept;
        self.sort_roots();
        self.collect_garbage();
    }

    /// Whether the root at `root` and `path` share a revision at the same position.
    fn overlaps(&self, root: u32, path: &RevPath) -> bool {
        let r = self.node(root);
        let hashes = path.hashes();
        if r.pos >= path.start() {
            let d = (r.pos - path.start()) as usize;
            d < hashes.len() && hashes[d] == r.hash
        } else {
            self.at_depth(root, r.pos, path.start(), &hashes[0])
                .is_some()
        }
    }

    /// The first node (children in hash order) under `root` at position `pos` with `hash`.
    fn at_depth(&self, root: u32, root_pos: u64, pos: u64, hash: &str) -> Option<u32> {
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            let n = self.node(i);
            if n.pos == pos {
                if &*n.hash == hash {
                    return Some(i);
                }
                continue;
            }
            debug_assert!(n.pos >= root_pos);
            stack.extend(n.children.iter().rev().copied());
        }
        None
    }

    /// Joins the tree rooted at `late` into the tree rooted at `early` (which starts at the
    /// same position or before it). Returns false, changing nothing, if `early` has no node
    /// where `late`'s root belongs.
    fn join(&mut self, early: u32, late: u32) -> bool {
        let (pos, hash) = {
            let l = self.node(late);
            (l.pos, l.hash.clone())
        };
        let Some(at) = self.at_depth(early, self.node(early).pos, pos, &hash) else {
            return false;
        };
        self.merge_nodes(at, late);
        true
    }

    /// PouchDB's `mergeTree`: merges the subtree at `from` into the subtree at `into` (same
    /// position and hash). `available` wins over `missing`; a node keeps its deletion flag
    /// unless its body arrives only now (CouchDB's `value_pref`).
    fn merge_nodes(&mut self, into: u32, from: u32) {
        let mut queue = vec![(into, from)];
        while let Some((a, b)) = queue.pop() {
            let (b_status, b_deleted, b_children) = {
                let nb = self.node(b);
                (nb.status, nb.deleted, nb.children.clone())
            };
            let na = &mut self.nodes[a as usize];
            if na.status == RevStatus::Missing && b_status == RevStatus::Available {
                na.status = RevStatus::Available;
                na.deleted = b_deleted;
            }
            for child in b_children {
                let hash = self.node(child).hash.clone();
                let existing = self
                    .node(a)
                    .children
                    .iter()
                    .copied()
                    .find(|&c| self.node(c).hash == hash);
                match existing {
                    Some(c) => queue.push((c, child)),
                    None => self.adopt(a, child),
                }
            }
            // `b` is now detached garbage; collect_garbage drops it.
            self.nodes[b as usize].children.clear();
            self.nodes[b as usize].parent = None;
        }
    }

    /// Makes `child` a child of `parent`, keeping children sorted by hash.
    pub(crate) fn adopt(&mut self, parent: u32, child: u32) {
        self.nodes[child as usize].parent = Some(parent);
        let hash = self.node(child).hash.clone();
        let at = self
            .node(parent)
            .children
            .iter()
            .position(|&c| self.node(c).hash.as_bytes() > hash.as_bytes())
            .unwrap_or(self.node(parent).children.len());
        self.nodes[parent as usize].children.insert(at, child);
    }

    pub(crate) fn sort_roots(&mut self) {
        let nodes = &self.nodes;
        self.roots.sort_by(|&a, &b| {
            let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
            a.pos.cmp(&b.pos).then_with(|| a.hash.cmp(&b.hash))
        });
    }

    /// Rebuilds the arena with only the nodes reachable from the roots.
    pub(crate) fn collect_garbage(&mut self) {
        let order = self.walk();
        if order.len() == self.nodes.len() {
            return;
        }
        let mut remap = vec![u32::MAX; self.nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(order.len());
        for &old in &order {
            let n = &self.nodes[old as usize];
            nodes.push(Node {
                pos: n.pos,
                hash: n.hash.clone(),
                status: n.status,
                deleted: n.deleted,
                parent: n.parent.map(|p| remap[p as usize]),
                children: n.children.iter().map(|&c| remap[c as usize]).collect(),
            });
        }
        self.roots = self.roots.iter().map(|&r| remap[r as usize]).collect();
        self.nodes = nodes;
    }

    /// Merges every root-to-leaf path of `other` into this tree, keeping the statuses `other`
    /// has (a body available on either side stays available). Returns the revisions stemming
    /// removed.
    pub fn merge_tree(&mut self, other: &RevTree, revs_limit: u64) -> Vec<Rev> {
        for (i, n) in other.nodes.iter().enumerate() {
            if !n.children.is_empty() {
                continue;
            }
            let mut chain: Vec<&Node> = other.ancestors(i as u32).map(|a| other.node(a)).collect();
            chain.reverse();
            let hashes: Vec<String> = chain.iter().map(|c| c.hash.to_string()).collect();
            let Ok(path) = RevPath::new(chain[0].pos, hashes) else {
                continue;
            };
            self.merge_unstemmed(&path, n.deleted, n.status);
            for c in chain.iter().filter(|c| c.status == RevStatus::Available) {
                for idx in self.find_all(c.pos, &c.hash).collect::<Vec<_>>() {
                    let node = &mut self.nodes[idx as usize];
                    if node.status == RevStatus::Missing {
                        node.status = RevStatus::Available;
                        node.deleted = c.deleted;
                    }
                }
            }
        }
        self.stem(revs_limit)
    }
}
