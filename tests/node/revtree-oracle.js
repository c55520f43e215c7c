// Differential-test oracle: runs PouchDB's own merge algorithm (the npm package
// pouchdb-merge) on cases the Rust test generates, and prints what PouchDB computes.
//
// stdin: one JSON case per line: {"revs_limit": N, "ops": [{"start": pos, "ids": [oldest..newest], "deleted": bool}]}
// stdout: one JSON result per line: {"kinds": [...], "stemmed": [[...]...], "overlaps": [n...], "earlier": [bool...],
//   "paths": [[start, [[hash, available, deleted]...]]...], "winner": rev, "conflicts": [...],
//   "deleted_conflicts": [...], "deleted": bool, "leaves": [...]}
'use strict';
const readline = require('readline');
const merge = require('pouchdb-merge');

// A path in PouchDB's tree form: {pos, ids: [hash, opts, [child]]}; the leaf is available.
function toTreePath(op) {
  let node = null;
  for (let i = op.ids.length - 1; i >= 0; i--) {
    const leaf = i === op.ids.length - 1;
    const opts = leaf ? { status: 'available' } : { status: 'missing' };
    if (leaf && op.deleted) opts.deleted = true;
    node = [op.ids[i], opts, node ? [node] : []];
  }
  return { pos: op.start, ids: node };
}

// How many roots the path overlaps, by doMerge's own rule (same start and root hash, or the
// later root's hash found at the right depth of the earlier tree).
// Also tells whether the path starts before an overlapping root (then pouchdb-merge classifies
// the merge from the path's side: see tests/differential.rs).
function overlaps(tree, path) {
  let n = 0, earlier = false;
  for (const branch of tree) {
    if (branch.pos === path.pos && branch.ids[0] === path.ids[0]) { n++; continue; }
    const t1 = branch.pos < path.pos ? branch : path;
    const t2 = branch.pos < path.pos ? path : branch;
    const diff = t2.pos - t1.pos;
    const stack = [{ ids: t1.ids, diff }];
    let found = false;
    while (stack.length && !found) {
      const item = stack.pop();
      if (item.diff === 0) { found = item.ids[0] === t2.ids[0]; continue; }
      for (const c of item.ids[2]) stack.push({ ids: c, diff: item.diff - 1 });
    }
    if (found) { n++; if (path.pos < branch.pos) earlier = true; }
  }
  return { n, earlier };
}

function paths(tree) {
  return merge.rootToLeaf(tree).map((p) => [
    p.pos,
    p.ids.map((n) => [n.id, n.opts.status === 'available', !!n.opts.deleted]),
  ]);
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const c = JSON.parse(line);
  let tree = [];
  const kinds = [], stemmed = [], ov = [], earlier = [];
  for (const op of c.ops) {
    const path = toTreePath(op);
    const o = tree.length === 0 ? { n: -1, earlier: false } : overlaps(tree, path);
    ov.push(o.n);
    earlier.push(o.earlier);
    const res = merge.merge(tree, path, c.revs_limit);
    tree = res.tree;
    kinds.push(res.conflicts);
    stemmed.push(res.stemmedRevs.slice().sort());
  }
  const meta = { rev_tree: tree };
  const winner = merge.winningRev(meta);
  const leaves = merge.collectLeaves(tree);
  const out = {
    kinds,
    stemmed,
    overlaps: ov,
    earlier,
    paths: paths(tree),
    winner,
    conflicts: merge.collectConflicts(meta),
    deleted_conflicts: leaves.filter((l) => l.rev !== winner && l.opts.deleted).map((l) => l.rev),
    deleted: merge.isDeleted(meta),
    leaves: leaves.map((l) => l.rev),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
});
