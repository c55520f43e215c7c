//! Stemming (`revs_limit`): PouchDB's `stem`. Every root-to-leaf path keeps at most its newest
//! `revs_limit` revisions; the cut paths are merged again only where they start at the same
//! revision, so a branch cut at a different depth becomes a root of its own. Leaves are never
//! removed.

use std::collections::{BTreeSet, HashMap};

use crate::tree::Node;
use crate::{Rev, RevTree};

impl RevTree {
    /// Stems every root-to-leaf path to at most `revs_limit` revisions (0 is taken as 1).
    /// Returns the revisions that no longer appear anywhere in the tree.
    ///
    /// ```
    /// use settee_revtree::{RevPath, RevTree};
    /// let mut tree = RevTree::new(&RevPath::new(1, ["a", "b", "c", "d"])?, false);
    /// let gone = tree.stem(2);
    /// assert_eq!(tree.roots()[0].to_string(), "3-c");
    /// assert_eq!(gone.len(), 2);
    /// # Ok::<(), settee_revtree::Error>(())
    /// ```
    pub fn stem(&mut self, revs_limit: u64) -> Vec<Rev> {
        let limit = revs_limit.max(1);
        let root_pos = self.root_positions();
        let too_long = self
            .nodes
            .iter()
            .enumerate()
            .any(|(i, n)| n.children.is_empty() && n.pos - root_pos[i] + 1 > limit);
        if !too_long {
            return Vec::new();
        }
        let before = self.revs();

        let mut out = RevTree {
            nodes: Vec::with_capacity(self.nodes.len()),
            roots: Vec::new(),
        };
        let mut root_of: HashMap<(u64, Box<str>), u32> = HashMap::new();
        for leaf in self.walk() {
            if !self.node(leaf).children.is_empty() {
                continue;
            }
            let mut chain: Vec<u32> = self.ancestors(leaf).take(limit as usize).collect();
            chain.reverse();
            let first = self.node(chain[0]);
            let key = (first.pos, first.hash.clone());
            let mut at = match root_of.get(&key) {
                Some(&r) => {
                    out.absorb(r, first);
                    r
                }
                None => {
                    let r = out.push_node(first, None);
                    out.roots.push(r);
                    root_of.insert(key, r);
                    r
                }
            };
            for &c in &chain[1..] {
                let n = self.node(c);
                let existing = out
                    .node(at)
                    .children
                    .iter()
                    .copied()
                    .find(|&k| out.node(k).hash == n.hash);
                at = match existing {
                    Some(k) => {
                        out.absorb(k, n);
                        k
                    }
                    None => {
                        let k = out.push_node(n, None);
                        out.adopt(at, k);
                        k
                    }
                };
            }
        }
        out.sort_roots();
        *self = out;
        let after = self.revs();
        before
            .difference(&after)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// For each node, the position of the root it hangs from.
    fn root_positions(&self) -> Vec<u64> {
        let mut out = vec![0; self.nodes.len()];
        let mut stack: Vec<(u32, u64)> =
            self.roots.iter().map(|&r| (r, self.node(r).pos)).collect();
        while let Some((i, rp)) = stack.pop() {
            out[i as usize] = rp;
            stack.extend(self.node(i).children.iter().map(|&c| (c, rp)));
        }
        out
    }

    fn push_node(&mut self, n: &Node, parent: Option<u32>) -> u32 {
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node {
            pos: n.pos,
            hash: n.hash.clone(),
            status: n.status,
            deleted: n.deleted,
            parent,
            children: Vec::new(),
        });
        idx
    }

    /// A second copy of a node merges into the first: `available` wins.
    fn absorb(&mut self, into: u32, n: &Node) {
        let a = &mut self.nodes[into as usize];
        if a.status == crate::RevStatus::Missing && n.status == crate::RevStatus::Available {
            a.status = n.status;
            a.deleted = n.deleted;
        }
    }
}
