// Differential-test oracle for Mango: runs PouchDB's own implementation (pouchdb 9 with the
// pouchdb-find plugin, leveldb adapter in a temporary directory) on the datasets the Rust
// test generates, and prints what it answers.
//
// stdin: one dataset per line: {"docs": [...], "indexes": [<_index bodies>], "queries": [<_find bodies>]}
// stdout: one line per dataset: {"results": [{"ids": [...]} | {"error": "..."}]}
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-find'));

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'settee-find-oracle-'));
let n = 0;

async function run(dataset) {
  const db = new PouchDB(path.join(root, 'db' + (n++)));
  try {
    const written = await db.bulkDocs(dataset.docs);
    for (const w of written) {
      if (w.error) throw new Error('bulkDocs: ' + JSON.stringify(w));
    }
    for (const idx of dataset.indexes) await db.createIndex(idx);
    const results = [];
    for (const q of dataset.queries) {
      try {
        const res = await db.find(q);
        results.push({ ids: res.docs.map((d) => d._id) });
      } catch (e) {
        results.push({ error: String((e && (e.error || e.message)) || e) });
      }
    }
    return { results };
  } finally {
    await db.destroy();
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const out = await run(JSON.parse(line));
    process.stdout.write(JSON.stringify(out) + '\n');
  }
  fs.rmSync(root, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
