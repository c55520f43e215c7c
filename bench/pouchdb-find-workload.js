'use strict';
// The Mango workload of issue 12 on PouchDB 9 with pouchdb-find (Node, leveldb adapter),
// printed as the same JSON lines as bench/find-workload: {impl, op, count, seconds, ...}.
// Same notes (bench/notes.js plus the notebook below, as bench/find-workload computes it),
// same queries in the same order.
//
// Phases: bulk load (batches of 1,000; LevelDB's default, no fsync), createIndex
// [notebook, updated_at] (pouchdb-find builds it at once), then BENCH_POUCHDB_QUERIES (100:
// each reads a whole notebook, see docs/benchmarks.md) finds notebook = X sorted by
// updated_at descending, limit 20, after 10 warm-up queries, on the first notebooks of
// bench/find-workload's order.
//
// Usage: NODE_PATH=$(scripts/node-deps.sh) node bench/pouchdb-find-workload.js DIR

const path = require('path');
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-find'));
const { note, Rng } = require('./notes.js');

const NOTEBOOKS = 20;

// The notebook of note i: its own xorshift stream (bench/find-workload/src/main.rs).
function notebook(i) {
  const rng = new Rng((i ^ 0x5EED0B0C) >>> 0);
  return 'notebook-' + String(rng.below(NOTEBOOKS)).padStart(2, '0');
}

function env(name, dflt) {
  const v = process.env[name];
  return v === undefined ? dflt : Number(v);
}

function report(op, count, ns, extra) {
  const seconds = Number(ns) / 1e9;
  console.log(JSON.stringify(Object.assign({ impl: 'pouchdb', op, count, seconds, ops_per_sec: count / seconds }, extra)));
}

function percentile(sorted, p) {
  return sorted[Math.round((sorted.length - 1) * p)];
}

async function main() {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: pouchdb-find-workload.js DIR');
  const docs = env('BENCH_DOCS', 100000);
  const queries = env('BENCH_POUCHDB_QUERIES', 100);
  const warmup = 10;
  require('fs').mkdirSync(dir, { recursive: true });
  const db = new PouchDB(path.join(dir, 'find'));
  if (db.adapter !== 'leveldb') throw new Error(`expected the leveldb adapter, got ${db.adapter}`);

  let t = process.hrtime.bigint();
  for (let i = 0; i < docs; i += 1000) {
    const b = [];
    for (let k = i; k < Math.min(i + 1000, docs); k++) {
      const n = note('note-', k);
      n.notebook = notebook(k);
      b.push(n);
    }
    const res = await db.bulkDocs(b);
    for (const r of res) if (!r.ok) throw new Error(`bulkDocs: ${r.id} failed: ${r.error}`);
  }
  report('bulk_docs', docs, process.hrtime.bigint() - t, { indexes: 0 });

  t = process.hrtime.bigint();
  await db.createIndex({ index: { fields: ['notebook', 'updated_at'] }, ddoc: 'nb', name: 'nb' });
  report('build_index', docs, process.hrtime.bigint() - t, {});

  const rng = new Rng(0xF1ED);
  const times = [];
  t = process.hrtime.bigint();
  for (let q = 0; q < queries + warmup; q++) {
    const nb = 'notebook-' + String(rng.below(NOTEBOOKS)).padStart(2, '0');
    const s = process.hrtime.bigint();
    const res = await db.find({
      selector: { notebook: nb },
      sort: [{ notebook: 'desc' }, { updated_at: 'desc' }],
      limit: 20,
    });
    const e = process.hrtime.bigint() - s;
    if (res.docs.length !== 20 || res.warning) throw new Error(`unexpected answer: ${res.docs.length} docs, ${res.warning}`);
    if (q >= warmup) times.push(Number(e) / 1e6);
  }
  const total = process.hrtime.bigint() - t;
  times.sort((a, b) => a - b);
  report('find', queries, total, {
    p50_ms: percentile(times, 0.5), p90_ms: percentile(times, 0.9), p99_ms: percentile(times, 0.99),
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
