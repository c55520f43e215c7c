//! The revision-tree part of the `fuzz/` crate's `rev_seq` target: revision ids, `_revisions`
//! objects and sequences as peers send them, then a tree built from what parsed. It panics
//! only on a bug. Compiled for tests (which replay the committed corpus on stable) and under
//! the `fuzzing` feature; not part of the public API.

use crate::{Rev, RevPath, RevTree, Revisions, Seq};

/// Each line of the input is tried as a revision id, a `_revisions` object and a sequence.
pub fn rev_seq(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tree: Option<RevTree> = None;
    let mut revs: Vec<Rev> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Ok(rev) = line.parse::<Rev>() {
            // The text form round-trips, and position 0 < hash ordering holds.
            let printed = rev.to_string();
            assert_eq!(printed.parse::<Rev>().ok().as_ref(), Some(&rev), "{line:?}");
            let path = RevPath::from_rev(&rev);
            assert_eq!(path.leaf(), rev);
            let child = RevPath::child_of(Some(&rev), "x");
            if let Ok(child) = &child {
                assert_eq!(child.leaf().pos(), rev.pos() + 1);
            }
            merge(&mut tree, &path, i % 3 == 0);
            if let Ok(child) = child {
                merge(&mut tree, &child, false);
            }
            revs.push(rev);
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            seq(&value);
            if let Ok(revisions) = serde_json::from_value::<Revisions>(value.clone()) {
                if let Ok(path) = revisions.to_path() {
                    assert_eq!(path.to_revisions().to_path().ok().as_ref(), Some(&path));
                    merge(&mut tree, &path, i % 2 == 0);
                }
            }
            if let Ok(rev) = serde_json::from_value::<Rev>(value) {
                revs.push(rev);
            }
        }
    }
    revs.sort();
    if let Some(tree) = tree {
        let winner = tree.winner();
        assert!(tree.is_leaf(&winner));
        let _ = tree.revs_diff(revs.iter());
        for rev in &revs {
            let _ = tree.latest(rev);
            let _ = tree.revs_info(rev);
        }
        let json = serde_json::to_string(&tree).expect("a tree encodes");
        let back: RevTree = serde_json::from_str(&json).expect("an encoded tree decodes");
        assert_eq!(back, tree);
    }
}

fn merge(tree: &mut Option<RevTree>, path: &RevPath, deleted: bool) {
    match tree {
        Some(t) => {
            t.merge(path, deleted, 20);
        }
        None => *tree = Some(RevTree::new(path, deleted)),
    }
}

/// A sequence as a peer gives it: opaque, but its query form, zero test and local number
/// must answer.
fn seq(value: &serde_json::Value) {
    let seq = Seq::from_json(value.clone());
    let _ = seq.to_query();
    let _ = seq.is_zero();
    if let Some(n) = seq.as_local() {
        assert_eq!(Seq::from(n).as_local(), Some(n));
    }
    let again: Seq = serde_json::from_str(&seq.to_string()).expect("a seq's text is JSON");
    assert_eq!(&again, &seq);
}

#[cfg(test)]
mod tests {
    /// Every committed input of `fuzz/corpus/rev_seq`, replayed on stable.
    #[test]
    fn rev_seq_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut n = 0;
        for dir in [root.join("corpus/rev_seq")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("{}", path.display());
                super::rev_seq(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "no rev_seq corpus under {}", root.display());
    }
}
