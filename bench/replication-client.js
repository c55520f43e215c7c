'use strict';
// Node side of bench/replication.sh. One job per process, so /usr/bin/time measures it alone:
//
//   load URL/DB N          create DB and write notes 0..N-1 with _bulk_docs (batches of 1,000)
//   raw URL/SRC URL/DST    the server's limit: read SRC as fast as a client can (_changes
//                          pages + _bulk_get?revs=true, BENCH_RAW_INFLIGHT requests in
//                          flight), then write it all to DST with _bulk_docs new_edits=false
//   pouchdb SOURCE TARGET  PouchDB.replicate (leveldb adapter for paths, http for URLs)
//   count URL/DB           print the doc_count
//
// Credentials, when the server needs them, come in the URLs (user:password@host); fetch
// gets them as a Basic Authorization header. Prints one JSON line per job on stdout.

const { note } = require('./notes.js');

const BATCH = Number(process.env.BENCH_RAW_BATCH || 1000);
const INFLIGHT = Number(process.env.BENCH_RAW_INFLIGHT || 2);

function split(url) {
  const u = new URL(url);
  // Uncompressed responses unless BENCH_RAW_GZIP=1: on a loopback connection gzip only costs
  // both ends CPU (the settee client does not ask for it from a loopback server either).
  const headers = {
    'content-type': 'application/json',
    'accept-encoding': process.env.BENCH_RAW_GZIP === '1' ? 'gzip' : 'identity',
  };
  if (u.username) {
    const cred = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
    headers.authorization = 'Basic ' + Buffer.from(cred).toString('base64');
    u.username = '';
    u.password = '';
  }
  return { base: u.toString().replace(/\/$/, ''), headers };
}

// A string body is sent as it is (already JSON).
async function call(db, method, path, body) {
  const text_ = body === undefined || typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(db.base + path, { method, headers: db.headers, body: text_ });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

async function ensureDb(db) {
  const res = await fetch(db.base, { method: 'PUT', headers: db.headers });
  if (!res.ok && res.status !== 412) throw new Error(`PUT db: ${res.status} ${await res.text()}`);
}

function checkWrites(results) {
  for (const r of results) if (r.error) throw new Error(`write of ${r.id} failed: ${r.error} ${r.reason}`);
}

// Runs async jobs from an iterator with at most `limit` in flight.
async function pool(limit, jobs) {
  const it = jobs[Symbol.iterator]();
  const workers = Array.from({ length: limit }, async () => {
    for (let j = it.next(); !j.done; j = it.next()) await j.value();
  });
  await Promise.all(workers);
}

async function load(url, n) {
  const db = split(url);
  await ensureDb(db);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let k = i; k < Math.min(i + 1000, n); k++) docs.push(note('note-', k));
    checkWrites(await call(db, 'POST', '/_bulk_docs', { docs }));
  }
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { job: 'load', docs: n, seconds };
}

async function raw(srcUrl, dstUrl) {
  const src = split(srcUrl);
  const dst = split(dstUrl);
  await ensureDb(dst);
  // Read: the change pages are sequential (each needs the previous last_seq); each page's
  // _bulk_get starts as soon as the page arrives, with at most INFLIGHT of them running.
  let t = process.hrtime.bigint();
  // Each page's documents are kept as one JSON text (a million parsed notes would not fit
  // in Node's heap), and written back as one _bulk_docs body.
  const pages = [];
  let read = 0;
  const running = [];
  const fetchPage = async (rows) => {
    const docsReq = [];
    for (const r of rows) for (const c of r.changes) docsReq.push({ id: r.id, rev: c.rev });
    const res = await call(src, 'POST', '/_bulk_get?revs=true&latest=true', { docs: docsReq });
    const docs = [];
    for (const r of res.results) for (const d of r.docs) if (d.ok) docs.push(d.ok);
    read += docs.length;
    pages.push(`{"new_edits":false,"docs":${JSON.stringify(docs)}}`);
  };
  let since = 0;
  for (;;) {
    const ch = await call(src, 'GET', `/_changes?style=all_docs&limit=${BATCH}&since=${encodeURIComponent(JSON.stringify(since))}`);
    if (ch.results.length > 0) {
      if (running.length >= INFLIGHT) await running.shift();
      running.push(fetchPage(ch.results));
    }
    since = ch.last_seq;
    if (ch.results.length < BATCH) break;
  }
  await Promise.all(running);
  const readSeconds = Number(process.hrtime.bigint() - t) / 1e9;
  // Write: everything read, with new_edits=false (how a replicator writes), INFLIGHT at a time.
  t = process.hrtime.bigint();
  await pool(INFLIGHT, pages.map((body) => async () => {
    checkWrites(await call(dst, 'POST', '/_bulk_docs', body));
  }));
  const writeSeconds = Number(process.hrtime.bigint() - t) / 1e9;
  return {
    job: 'raw', docs: read, batch: BATCH, inflight: INFLIGHT,
    read_seconds: readSeconds, write_seconds: writeSeconds,
  };
}

async function pouchdb(source, target) {
  const PouchDB = require('pouchdb');
  const open = (s) => (/^https?:/.test(s) ? new PouchDB(s, { skip_setup: false }) : new PouchDB(s));
  const opts = {};
  if (process.env.REPL_BATCH_SIZE) opts.batch_size = Number(process.env.REPL_BATCH_SIZE);
  const src = open(source);
  const dst = open(target);
  const t = process.hrtime.bigint();
  const r = await PouchDB.replicate(src, dst, opts);
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  await src.close();
  await dst.close();
  if (!r.ok) throw new Error(`replication failed: ${JSON.stringify(r.errors)}`);
  return {
    job: 'pouchdb', seconds, docs_read: r.docs_read, docs_written: r.docs_written,
    doc_write_failures: r.doc_write_failures, last_seq: r.last_seq,
  };
}

async function count(url) {
  const info = await call(split(url), 'GET', '');
  return { job: 'count', doc_count: info.doc_count };
}

async function main() {
  const [job, a, b] = process.argv.slice(2);
  let r;
  if (job === 'load') r = await load(a, Number(b));
  else if (job === 'raw') r = await raw(a, b);
  else if (job === 'pouchdb') r = await pouchdb(a, b);
  else if (job === 'count') r = await count(a);
  else throw new Error('usage: replication-client.js load|raw|pouchdb|count ...');
  console.log(JSON.stringify(r));
}

main().catch((e) => { console.error(`replication-client: ${e.stack || e}`); process.exit(1); });
