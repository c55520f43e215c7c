//! Properties of merging and stemming, on generated edit histories (see common.rs), plus a
//! model test: the tree against a plain set of paths.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use settee_revtree::{Rev, RevPath, RevTree};

/// A set of paths from one universe (full ancestries, so no stemming on the way in), with a
/// revs_limit large enough that nothing is stemmed.
fn arb_paths() -> impl Strategy<Value = Vec<(RevPath, bool)>> {
    (any::<u64>(), 1usize..60, 1usize..20).prop_map(|(seed, size, n)| {
        let mut rng = StdRng::seed_from_u64(seed);
        let revs = common::universe(&mut rng, size, seed % 2 == 0);
        (0..n)
            .map(|i| {
                common::path_of(
                    &revs,
                    (seed as usize).wrapping_add(i * 7919) % revs.len(),
                    usize::MAX,
                )
            })
            .collect()
    })
}

fn build(paths: &[(RevPath, bool)], limit: u64) -> RevTree {
    let mut tree = RevTree::new(&paths[0].0, paths[0].1);
    tree.stem(limit);
    for (p, d) in &paths[1..] {
        tree.merge(p, *d, limit);
    }
    tree
}

fn leaf_set(tree: &RevTree) -> BTreeSet<Rev> {
    tree.leaves().into_iter().map(|l| l.rev).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn merge_order_does_not_matter(paths in arb_paths(), rotate in 0usize..20) {
        let a = build(&paths, 1000);
        let mut shuffled = paths.clone();
        shuffled.reverse();
        let n = shuffled.len();
        shuffled.rotate_left(rotate % n);
        let b = build(&shuffled, 1000);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.winner(), b.winner());
        prop_assert_eq!(a.conflicts(), b.conflicts());
        prop_assert_eq!(a.deleted_conflicts(), b.deleted_conflicts());
    }

    #[test]
    fn merge_never_drops_a_leaf(paths in arb_paths()) {
        // Without stemming, every path's leaf is a leaf unless a later path extends it.
        let tree = build(&paths, u64::MAX);
        let leaves = leaf_set(&tree);
        for (p, _) in &paths {
            let leaf = p.leaf();
            prop_assert!(tree.contains(&leaf));
            let extended = paths.iter().any(|(q, _)| q.revs().any(|r| r == leaf) && q.leaf() != leaf);
            if !extended {
                prop_assert!(leaves.contains(&leaf), "{} lost", leaf);
            }
        }
    }

    #[test]
    fn stemming_keeps_limit_on_every_path_and_never_drops_a_leaf(paths in arb_paths(), limit in 1u64..8) {
        // (Building with the limit on the way in is not the same: a path that only names an
        // already-stemmed ancestor brings it back as a leaf, in PouchDB as here.)
        let full = build(&paths, u64::MAX);
        let mut stemmed = full.clone();
        stemmed.stem(limit);
        for (start, hashes) in build(&paths, limit).paths() {
            prop_assert!(hashes.len() as u64 <= limit, "path from {} has {} revs", start, hashes.len());
        }
        for (start, hashes) in stemmed.paths() {
            prop_assert!(hashes.len() as u64 <= limit, "path from {} has {} revs", start, hashes.len());
        }
        prop_assert_eq!(leaf_set(&full), leaf_set(&stemmed));
        prop_assert_eq!(full.winner(), stemmed.winner());
        prop_assert_eq!(full.conflicts(), stemmed.conflicts());
    }

    #[test]
    fn merging_a_tree_with_itself_changes_nothing(paths in arb_paths(), limit in prop::sample::select(vec![1u64, 2, 3, 5, 1000])) {
        let tree = build(&paths, limit);
        let mut again = tree.clone();
        let gone = again.merge_tree(&tree, limit);
        prop_assert!(gone.is_empty());
        prop_assert_eq!(&again, &tree);
    }

    #[test]
    fn winner_and_conflicts_are_stable_under_remerge(paths in arb_paths()) {
        let mut tree = build(&paths, 1000);
        let (winner, conflicts) = (tree.winner(), tree.conflicts());
        for (p, d) in &paths {
            let out = tree.merge(p, *d, 1000);
            prop_assert_eq!(out.kind, settee_revtree::MergeKind::AlreadyKnown);
        }
        prop_assert_eq!(tree.winner(), winner);
        prop_assert_eq!(tree.conflicts(), conflicts);
    }

    #[test]
    fn tree_agrees_with_a_model_of_paths(paths in arb_paths()) {
        // Model (redb-fuzz style): the set of known revisions and their parents, with leaves
        // being revisions nobody names as a parent.
        let tree = build(&paths, u64::MAX);
        let mut known = BTreeSet::new();
        let mut parents = BTreeSet::new();
        let mut deleted = std::collections::BTreeMap::new();
        for (p, d) in &paths {
            let revs: Vec<Rev> = p.revs().collect();
            for w in revs.windows(2) {
                parents.insert(w[0].clone());
            }
            known.extend(revs.iter().cloned());
            deleted.insert(p.leaf(), *d);
        }
        let model_leaves: BTreeSet<Rev> = known.difference(&parents).cloned().collect();
        prop_assert_eq!(&tree.revs(), &known);
        prop_assert_eq!(&leaf_set(&tree), &model_leaves);
        let model_winner = model_leaves
            .iter()
            .max_by(|a, b| (!deleted[*a], *a).cmp(&(!deleted[*b], *b)))
            .unwrap();
        prop_assert_eq!(&tree.winner(), model_winner);
        prop_assert_eq!(tree.is_deleted(), deleted[model_winner]);
    }

    #[test]
    fn encoding_round_trips(paths in arb_paths(), limit in 1u64..10) {
        let tree = build(&paths, limit);
        let json = serde_json::to_vec(&tree).unwrap();
        let back: RevTree = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(back, tree);
    }
}
