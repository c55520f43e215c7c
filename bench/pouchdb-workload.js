'use strict';
// The store workload of issue 3 on PouchDB 9 (Node, leveldb adapter), printed as the same
// JSON lines as bench/store-workload: {impl, op, durability, count, seconds, ops_per_sec}.
// Same notes (bench/notes.js), same phases, same counts (BENCH_* env).
//
// Durability: PouchDB's leveldb adapter writes with LevelDB's default sync: false (no fsync;
// data is in the OS page cache when a call returns), so its lines say "no fsync".
//
// Usage: NODE_PATH=$(scripts/node-deps.sh) node bench/pouchdb-workload.js DIR

const path = require('path');
const PouchDB = require('pouchdb');
const { note, noteId, readOrder } = require('./notes.js');

function env(name, dflt) {
  const v = process.env[name];
  return v === undefined ? dflt : Number(v);
}

function report(op, durability, count, ns) {
  const seconds = Number(ns) / 1e9;
  console.log(JSON.stringify({
    impl: 'pouchdb', op, durability, count, seconds, ops_per_sec: count / seconds,
  }));
}

async function main() {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: pouchdb-workload.js DIR');
  const docs = env('BENCH_DOCS', 100000);
  const batch = env('BENCH_BATCH', 1000);
  const puts = env('BENCH_PUTS', 10000);
  const gets = env('BENCH_GETS', 100000);
  require('fs').mkdirSync(dir, { recursive: true });
  const db = new PouchDB(path.join(dir, 'main'));
  if (db.adapter !== 'leveldb') throw new Error(`expected the leveldb adapter, got ${db.adapter}`);

  let t = process.hrtime.bigint();
  for (let i = 0; i < docs; i += batch) {
    const b = [];
    for (let k = i; k < Math.min(i + batch, docs); k++) b.push(note('note-', k));
    const res = await db.bulkDocs(b);
    for (const r of res) if (!r.ok) throw new Error(`bulkDocs: ${r.id} failed: ${r.error}`);
  }
  report('bulk_docs', 'no fsync', docs, process.hrtime.bigint() - t);
  console.log(JSON.stringify({ impl: 'pouchdb', op: 'peak_rss_after_bulk', kib: process.resourceUsage().maxRSS }));

  t = process.hrtime.bigint();
  for (let k = 0; k < puts; k++) await db.put(note('put-', k));
  report('put', 'no fsync', puts, process.hrtime.bigint() - t);

  const order = readOrder(docs, gets);
  t = process.hrtime.bigint();
  for (const k of order) await db.get(noteId('note-', k));
  report('get', '-', gets, process.hrtime.bigint() - t);

  t = process.hrtime.bigint();
  const ch = await db.changes({ since: 0 });
  const rows = ch.results.length;
  if (rows !== docs + puts) throw new Error(`changes: ${rows} rows, expected ${docs + puts}`);
  report('changes', '-', rows, process.hrtime.bigint() - t);
  console.log(JSON.stringify({ impl: 'pouchdb', op: 'peak_rss', kib: process.resourceUsage().maxRSS }));
  await db.close();
}

main().catch((e) => { console.error(`pouchdb-workload: ${e.stack || e}`); process.exit(1); });
