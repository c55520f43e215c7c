'use strict';
// Node side of bench/attachments.sh. One job per process, so /usr/bin/time measures it alone:
//
//   load URL/DB N KB       create DB and write notes 0..N-1, each with one KB-kilobyte image of
//                          random bytes (image/png, so no server compresses it), 10 per
//                          _bulk_docs request
//   pouchdb SOURCE TARGET  PouchDB.replicate (leveldb adapter for paths, http for URLs)
//   digests URL/DB         print {id: digest of its image} for every document, as one JSON line
//
// Credentials come in the URLs (user:password@host) and go as a Basic Authorization header.
// Prints one JSON line per job on stdout.

const crypto = require('crypto');

function split(url) {
  const u = new URL(url);
  const headers = { 'content-type': 'application/json', 'accept-encoding': 'identity' };
  if (u.username) {
    const cred = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
    headers.authorization = 'Basic ' + Buffer.from(cred).toString('base64');
    u.username = '';
    u.password = '';
  }
  return { base: u.toString().replace(/\/$/, ''), headers };
}

async function call(db, method, path, body) {
  const res = await fetch(db.base + path, {
    method,
    headers: db.headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok && !(method === 'PUT' && path === '' && res.status === 412)) {
    throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 200)}`);
  }
  return JSON.parse(text);
}

async function load(url, n, kb) {
  const db = split(url);
  await call(db, 'PUT', '');
  const started = process.hrtime.bigint();
  const per = 10;
  for (let i = 0; i < n; i += per) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + per); j++) {
      docs.push({
        _id: `note-${String(j).padStart(6, '0')}`,
        title: `Note ${j}`,
        body: `A note with an image, number ${j}.`,
        _attachments: {
          'image.png': {
            content_type: 'image/png',
            data: crypto.randomBytes(kb * 1024).toString('base64'),
          },
        },
      });
    }
    const results = await call(db, 'POST', '/_bulk_docs', { docs });
    const bad = results.filter((r) => r.error);
    if (bad.length) throw new Error(`_bulk_docs refused ${bad.length}: ${JSON.stringify(bad[0])}`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, docs: n, kb };
}

async function pouchdb(source, target) {
  const PouchDB = require('pouchdb');
  const open = (s) => (/^https?:/.test(s) ? new PouchDB(s, { skip_setup: false }) : new PouchDB(s));
  const started = process.hrtime.bigint();
  const result = await PouchDB.replicate(open(source), open(target), {});
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.doc_write_failures) throw new Error(`PouchDB: ${result.doc_write_failures} write failures`);
  return { seconds, docs_written: result.docs_written };
}

async function digests(url) {
  const db = split(url);
  const out = {};
  const all = await call(db, 'GET', '/_all_docs?include_docs=true');
  for (const row of all.rows) {
    const att = row.doc._attachments && row.doc._attachments['image.png'];
    out[row.id] = att ? `${att.digest} ${att.length}` : null;
  }
  return out;
}

async function main() {
  const [job, a, b, c] = process.argv.slice(2);
  let r;
  if (job === 'load') r = await load(a, Number(b), Number(c));
  else if (job === 'pouchdb') r = await pouchdb(a, b);
  else if (job === 'digests') r = await digests(a);
  else throw new Error('usage: attachments-client.js load|pouchdb|digests ...');
  console.log(JSON.stringify(r));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
