//! Merge and winner on a document with 1,000 revisions and 100 conflicting branches.
#![allow(missing_docs)] // criterion_group! generates undocumented public items

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use settee_revtree::{RevPath, RevTree};

/// A 1,000-revision trunk with 100 one-revision conflict branches off its last 100 revisions.
fn big_tree() -> (RevTree, Vec<String>) {
    let trunk: Vec<String> = (0..1000).map(|i| format!("{i:032x}")).collect();
    let mut tree = RevTree::new(&RevPath::new(1, trunk.clone()).expect("valid path"), false);
    for b in 0..100 {
        let at = 899 + b;
        let mut hashes: Vec<String> = trunk[..=at].to_vec();
        hashes.push(format!("c{b:031x}"));
        tree.merge(&RevPath::new(1, hashes).expect("valid path"), false, 1000);
    }
    (tree, trunk)
}

fn bench(c: &mut Criterion) {
    let (tree, trunk) = big_tree();
    assert_eq!(tree.conflicts().len(), 100);

    let mut edit = trunk.clone();
    edit.push(format!("e{:031x}", 1));
    let edit = RevPath::new(1, edit).expect("valid path");
    c.bench_function(
        "merge new leaf (1000 revs, 100 conflicts, full history)",
        |b| {
            b.iter_batched(
                || tree.clone(),
                |mut t| black_box(t.merge(&edit, false, 1000)),
                BatchSize::SmallInput,
            )
        },
    );

    let short = RevPath::child_of(Some(&tree.winner()), "ffff").expect("valid path");
    c.bench_function("merge new_edits=true edit (2-rev path)", |b| {
        b.iter_batched(
            || tree.clone(),
            |mut t| black_box(t.merge(&short, false, 1000)),
            BatchSize::SmallInput,
        )
    });

    let known = tree.ancestry(&tree.winner()).expect("winner has ancestry");
    c.bench_function("merge already-known path (replication re-send)", |b| {
        b.iter_batched(
            || tree.clone(),
            |mut t| black_box(t.merge(&known, false, 1000)),
            BatchSize::SmallInput,
        )
    });

    c.bench_function("winner (1000 revs, 100 conflicts)", |b| {
        b.iter(|| black_box(tree.winner()))
    });
    c.bench_function("conflicts (1000 revs, 100 conflicts)", |b| {
        b.iter(|| black_box(tree.conflicts()))
    });
    c.bench_function("encode+decode (1000 revs, 100 conflicts)", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&tree).expect("encodes");
            black_box(serde_json::from_slice::<RevTree>(&bytes).expect("decodes"))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
