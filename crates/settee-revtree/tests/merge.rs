//! Examples of merging and querying, with expected answers worked out from CouchDB's and
//! PouchDB's documented rules (protocol-notes §1).

#![allow(clippy::unwrap_used)]

use settee_revtree::{MergeKind, Rev, RevInfoStatus, RevPath, RevTree, Revisions};

fn path(start: u64, ids: &[&str]) -> RevPath {
    RevPath::new(start, ids.iter().copied()).unwrap()
}

fn rev(s: &str) -> Rev {
    s.parse().unwrap()
}

fn strs(revs: &[Rev]) -> Vec<String> {
    revs.iter().map(Rev::to_string).collect()
}

#[test]
fn live_leaf_beats_longer_deleted_leaf() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), false);
    t.merge(&path(1, &["a", "c", "d"]), true, 1000);
    assert_eq!(t.winner(), rev("2-b"));
    assert!(!t.is_deleted());
    assert!(t.conflicts().is_empty());
    assert_eq!(strs(&t.deleted_conflicts()), ["3-d"]);
}

#[test]
fn higher_position_then_greater_hash_wins() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), false);
    t.merge(&path(1, &["a", "c"]), false, 1000);
    assert_eq!(t.winner(), rev("2-c"));
    assert_eq!(strs(&t.conflicts()), ["2-b"]);
    t.merge(&path(1, &["a", "b", "e"]), false, 1000);
    assert_eq!(t.winner(), rev("3-e"));
    assert_eq!(strs(&t.conflicts()), ["2-c"]);
    assert!(t.has_conflicts());
}

#[test]
fn all_deleted_reads_as_deleted_with_best_tombstone_winning() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), true);
    t.merge(&path(1, &["a", "c"]), true, 1000);
    assert!(t.is_deleted());
    assert_eq!(t.winner(), rev("2-c"));
    assert_eq!(strs(&t.deleted_conflicts()), ["2-b"]);
}

#[test]
fn merge_kinds() {
    let mut t = RevTree::new(&path(1, &["a"]), false);
    assert_eq!(
        t.merge(&path(1, &["a", "b"]), false, 1000).kind,
        MergeKind::NewLeaf
    );
    assert_eq!(
        t.merge(&path(1, &["a", "c"]), false, 1000).kind,
        MergeKind::NewBranch
    );
    assert_eq!(
        t.merge(&path(2, &["b"]), false, 1000).kind,
        MergeKind::AlreadyKnown
    );
    assert_eq!(
        t.merge(&path(1, &["a"]), false, 1000).kind,
        MergeKind::AlreadyKnown
    );
    // A disjoint history: CouchDB calls it a new branch.
    assert_eq!(
        t.merge(&path(1, &["z"]), false, 1000).kind,
        MergeKind::NewBranch
    );
    assert_eq!(t.roots().len(), 2);
}

#[test]
fn longer_history_joins_a_stemmed_tree_instead_of_starting_a_root() {
    let mut t = RevTree::new(&path(1, &["a", "b", "c", "d", "e"]), false);
    t.stem(3);
    assert_eq!(strs(&t.roots()), ["3-c"]);
    // A replica sends 6-f with its whole history back to 1-a.
    let out = t.merge(&path(1, &["a", "b", "c", "d", "e", "f"]), false, 3);
    assert_eq!(out.kind, MergeKind::NewLeaf);
    assert_eq!(strs(&t.roots()), ["4-d"]);
    assert_eq!(
        t.paths(),
        vec![(4, vec!["d".into(), "e".into(), "f".into()])]
    );
    // And a path that starts inside the stemmed tree joins it too.
    let out = t.merge(&path(5, &["e", "g"]), false, 3);
    assert_eq!(out.kind, MergeKind::NewBranch);
    assert_eq!(t.roots().len(), 1);
    assert_eq!(t.winner(), rev("6-g"));
    assert_eq!(strs(&t.conflicts()), ["6-f"]);
}

#[test]
fn stemming_splits_branches_cut_at_different_depths() {
    // a-b-c-d and a-b-x, limit 2: PouchDB keeps the newest 2 of each path, so the branches
    // become separate roots, c-d and b-x.
    let mut t = RevTree::new(&path(1, &["a", "b", "c", "d"]), false);
    t.merge(&path(1, &["a", "b", "x"]), false, 1000);
    let gone = t.stem(2);
    assert_eq!(strs(&gone), ["1-a"]);
    assert_eq!(strs(&t.roots()), ["2-b", "3-c"]);
    assert_eq!(t.winner(), rev("4-d"));
    assert_eq!(strs(&t.conflicts()), ["3-x"]);
}

#[test]
fn stemmed_revs_are_reported_once_gone_everywhere() {
    let mut t = RevTree::new(&path(1, &["a", "b", "c"]), false);
    let out = t.merge(&path(1, &["a", "b", "c", "d"]), false, 2);
    assert_eq!(strs(&out.stemmed), ["1-a", "2-b"]);
    assert!(!t.contains(&rev("1-a")));
}

#[test]
fn ancestry_revisions_and_revs_info() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), false);
    t.merge(&path(1, &["a", "b", "c"]), true, 1000);
    assert_eq!(
        t.revisions(&rev("3-c")).unwrap(),
        Revisions {
            start: 3,
            ids: vec!["c".into(), "b".into(), "a".into()]
        }
    );
    let info = t.revs_info(&rev("3-c")).unwrap();
    assert_eq!(
        info.iter()
            .map(|(r, s)| (r.to_string(), s.as_str()))
            .collect::<Vec<_>>(),
        [
            ("3-c".to_string(), "deleted"),
            ("2-b".into(), "available"),
            ("1-a".into(), "missing")
        ]
    );
    assert!(t.revisions(&rev("9-z")).is_none());
    t.set_missing(&rev("2-b"));
    assert_eq!(
        t.revs_info(&rev("3-c")).unwrap()[1].1,
        RevInfoStatus::Missing
    );
}

#[test]
fn latest_gives_descendant_leaves() {
    let mut t = RevTree::new(&path(1, &["a", "b", "c"]), false);
    t.merge(&path(1, &["a", "b", "d"]), false, 1000);
    t.merge(&path(1, &["a", "e"]), false, 1000);
    assert_eq!(strs(&t.latest(&rev("2-b"))), ["3-d", "3-c"]);
    assert_eq!(strs(&t.latest(&rev("2-e"))), ["2-e"]);
    assert_eq!(strs(&t.latest(&rev("1-a"))), ["3-d", "3-c", "2-e"]);
    assert!(t.latest(&rev("1-zz")).is_empty());
}

#[test]
fn revs_diff_reports_missing_and_possible_ancestors() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), false);
    t.merge(&path(1, &["a", "c", "d"]), false, 1000);
    let diff = t.revs_diff(&[rev("2-b"), rev("3-x"), rev("4-y"), rev("3-x")]);
    assert_eq!(strs(&diff.missing), ["3-x", "4-y"]);
    // Leaves below position 4: 3-d and 2-b.
    assert_eq!(strs(&diff.possible_ancestors), ["3-d", "2-b"]);
    let none = t.revs_diff(&[rev("1-a"), rev("3-d")]);
    assert!(none.missing.is_empty() && none.possible_ancestors.is_empty());
}

#[test]
fn compactable_lists_non_leaf_bodies() {
    let mut t = RevTree::new(&path(1, &["a"]), false);
    t.merge(&path(1, &["a", "b"]), false, 1000);
    // 1-a's body was stored when it was the leaf.
    assert_eq!(strs(&t.compactable()), ["1-a"]);
    t.set_missing(&rev("1-a"));
    assert!(t.compactable().is_empty());
}

/// Issue 10: Apache CouchDB stores revisions at position 0 and with any string as hash;
/// they merge, win and conflict like any other.
#[test]
fn position_zero_and_odd_hashes_merge_like_any_revision() {
    let mut t = RevTree::new(&path(0, &["", "xyz!"]), false);
    t.merge(&path(0, &["", "a b"]), false, 1000);
    t.merge(&path(0, &["", "xyz!", &"h".repeat(300)]), false, 1000);
    assert_eq!(t.winner().to_string(), format!("2-{}", "h".repeat(300)));
    assert_eq!(strs(&t.conflicts()), ["1-a b"]);
    assert!(t.contains(&rev("0-")));
}

#[test]
fn huge_positions_are_rejected_in_paths() {
    assert!(RevPath::new(settee_revtree::MAX_POS, ["a", "b"]).is_err());
    assert!(RevPath::new(1, Vec::<String>::new()).is_err());
    let huge = Revisions {
        start: u64::MAX,
        ids: vec!["a".into()],
    };
    assert!(huge.to_path().is_err());
}

#[test]
fn body_arriving_for_missing_ancestor_makes_it_available() {
    let mut t = RevTree::new(&path(1, &["a", "b"]), false);
    assert_eq!(
        t.status(&rev("1-a")),
        Some(settee_revtree::RevStatus::Missing)
    );
    t.merge(&path(1, &["a"]), false, 1000);
    assert_eq!(
        t.status(&rev("1-a")),
        Some(settee_revtree::RevStatus::Available)
    );
}
