//! Generators shared by the property tests and the differential test: realistic edit
//! histories of one document on several replicas.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use settee_revtree::RevPath;

/// One revision in a generated universe of edits: its parent, position, hash, deletion flag.
#[derive(Debug, Clone)]
pub struct GenRev {
    pub parent: Option<usize>,
    pub pos: u64,
    pub hash: String,
    pub deleted: bool,
}

/// A generated case: paths to merge in order, and the revs_limit to stem with.
#[derive(Debug, Clone)]
pub struct Case {
    pub revs_limit: u64,
    pub ops: Vec<(RevPath, bool)>,
}

/// Builds a random revision universe: each new revision extends a random earlier one (mostly a
/// leaf, sometimes an interior node: a conflict). Hashes depend on the parent, as real ones
/// do, so one hash never has two parents.
pub fn universe(rng: &mut StdRng, size: usize, deep: bool) -> Vec<GenRev> {
    let mut revs = vec![GenRev {
        parent: None,
        pos: 1,
        hash: format!("{:08x}", rng.gen::<u32>()),
        deleted: false,
    }];
    let mut leaves = vec![0usize];
    while revs.len() < size {
        let parent = if rng.gen_bool(if deep { 0.9 } else { 0.7 }) {
            leaves[rng.gen_range(0..leaves.len())]
        } else {
            rng.gen_range(0..revs.len())
        };
        let deleted = rng.gen_bool(0.12);
        let p = &revs[parent];
        let hash = format!("{:x}", fxhash(&p.hash, revs.len() as u64));
        let idx = revs.len();
        revs.push(GenRev {
            parent: Some(parent),
            pos: p.pos + 1,
            hash,
            deleted,
        });
        leaves.retain(|&l| l != parent);
        leaves.push(idx);
    }
    revs
}

fn fxhash(s: &str, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ n;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// The ancestry of `idx` in the universe, oldest first, cut to at most `keep` revisions
/// (a sender that stemmed its history).
pub fn path_of(revs: &[GenRev], idx: usize, keep: usize) -> (RevPath, bool) {
    let mut chain = vec![idx];
    while let Some(p) = revs[*chain.last().unwrap()].parent {
        chain.push(p);
    }
    chain.truncate(keep.max(1));
    chain.reverse();
    let start = revs[chain[0]].pos;
    let hashes: Vec<String> = chain.iter().map(|&i| revs[i].hash.clone()).collect();
    (RevPath::new(start, hashes).unwrap(), revs[idx].deleted)
}

/// A random case: a universe, then paths to some of its revisions (mostly leaves, with full or
/// stemmed ancestry) in random order, some repeated.
pub fn case(seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let deep = rng.gen_bool(0.3);
    let size = if deep {
        rng.gen_range(20..120)
    } else {
        rng.gen_range(1..25)
    };
    let revs = universe(&mut rng, size, deep);
    let revs_limit = *[1u64, 2, 3, 4, 5, 8, 10, 20, 1000]
        .get(rng.gen_range(0..9))
        .unwrap();
    let n_ops = rng.gen_range(1..12);
    let mut ops = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        let idx = rng.gen_range(0..revs.len());
        let keep = if rng.gen_bool(0.5) {
            usize::MAX
        } else {
            rng.gen_range(1..12)
        };
        ops.push(path_of(&revs, idx, keep));
    }
    Case { revs_limit, ops }
}
