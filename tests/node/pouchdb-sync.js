// PouchDB 9 (node, in-memory adapter) replicating with a CouchDB-compatible server: the
// `settee serve` test drives it and compares what PouchDB ends up with to what the server
// has, revision by revision.
//
// argv[2]: JSON {"url": "http://user:pw@host:port", "push": db, "pull": db, "live": db}
// stdout: JSON {"push": dump, "pull": dump, "live": dump, "events": {...}} where a dump is
//   {id: [leaf...]}, every leaf of every document (deleted ones too) as PouchDB's
//   get(id, {open_revs: "all", revs: true, attachments: true}) gives it.
'use strict';
const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));

const cfg = JSON.parse(process.argv[2]);
const remote = (name) => new PouchDB(`${cfg.url}/${name}`);
const local = (name) => new PouchDB(`${name}-${process.pid}`, { adapter: 'memory' });

const b64 = (s) => Buffer.from(s).toString('base64');

// Every kind of document replication has to carry: plain, edited, deleted, conflicted
// (with a deleted branch), with text and binary attachments.
async function seed(db, prefix) {
  const docs = [];
  for (let i = 0; i < 30; i++) docs.push({ _id: `${prefix}-${String(i).padStart(2, '0')}`, n: i, tags: ['a', i] });
  await db.bulkDocs(docs);
  const edited = await db.put({ _id: `${prefix}-edited`, v: 1 });
  await db.put({ _id: `${prefix}-edited`, _rev: edited.rev, v: 2 });
  const gone = await db.put({ _id: `${prefix}-deleted`, v: 1 });
  await db.remove(`${prefix}-deleted`, gone.rev);
  await db.put({
    _id: `${prefix}-att`,
    _attachments: {
      'note.txt': { content_type: 'text/plain', data: b64('hello from ' + prefix) },
      'bytes.bin': { content_type: 'application/octet-stream', data: Buffer.from([0, 1, 2, 250, 255]).toString('base64') },
    },
  });
  await db.bulkDocs([
    { _id: `${prefix}-conflict`, _rev: '2-bbb', _revisions: { start: 2, ids: ['bbb', 'aaa'] }, side: 'b' },
    { _id: `${prefix}-conflict`, _rev: '2-ccc', _revisions: { start: 2, ids: ['ccc', 'aaa'] }, side: 'c' },
    { _id: `${prefix}-conflict`, _rev: '3-ddd', _revisions: { start: 3, ids: ['ddd', 'bbb', 'aaa'] }, _deleted: true },
  ], { new_edits: false });
}

async function dump(db) {
  const out = {};
  const changes = await db.changes({ style: 'all_docs' });
  for (const row of changes.results) {
    const leaves = await db.get(row.id, { open_revs: 'all', revs: true, attachments: true });
    out[row.id] = leaves.map((l) => l.ok).filter(Boolean);
  }
  return out;
}

async function waitFor(what, cond, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exists = (db, id) => db.get(id).then(() => true, () => false);

async function main() {
  const report = { events: {} };

  // One-shot push: a local database to the server.
  const src = local('push');
  await seed(src, 'pushed');
  const push = await PouchDB.replicate(src, remote(cfg.push));
  report.events.push = { ok: push.ok, docs_written: push.docs_written, doc_write_failures: push.doc_write_failures };
  report.push = await dump(src);

  // One-shot pull: what the test seeded on the server, into a new local database.
  const dst = local('pull');
  const pull = await PouchDB.replicate(remote(cfg.pull), dst);
  report.events.pull = { ok: pull.ok, docs_written: pull.docs_written, doc_write_failures: pull.doc_write_failures };
  report.pull = await dump(dst);

  // Live sync both ways: a write on either side reaches the other.
  const mine = local('live');
  const theirs = remote(cfg.live);
  await seed(mine, 'live');
  const sync = PouchDB.sync(mine, theirs, { live: true, retry: true });
  let syncError = null;
  sync.on('error', (e) => { syncError = e; });
  await waitFor('the seeded documents on the server', () => exists(theirs, 'live-att'));
  await mine.put({ _id: 'from-pouchdb', at: 'local' });
  await theirs.put({ _id: 'from-server', at: 'remote', _attachments: { 'a.txt': { content_type: 'text/plain', data: b64('live attachment') } } });
  await waitFor('from-pouchdb on the server', () => exists(theirs, 'from-pouchdb'));
  await waitFor('from-server in PouchDB', () => exists(mine, 'from-server'));
  // A conflict made while both sides are live: both branches end up on both sides.
  const base = await mine.get('live-edited');
  await mine.bulkDocs([{ ...base, _rev: `${Number(base._rev.split('-')[0]) + 1}-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`, _revisions: { start: Number(base._rev.split('-')[0]) + 1, ids: ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', base._rev.split('-')[1]] }, side: 'pouchdb' }], { new_edits: false });
  await theirs.bulkDocs([{ ...base, _rev: `${Number(base._rev.split('-')[0]) + 1}-ffffffffffffffffffffffffffffffff`, _revisions: { start: Number(base._rev.split('-')[0]) + 1, ids: ['ffffffffffffffffffffffffffffffff', base._rev.split('-')[1]] }, side: 'server' }], { new_edits: false });
  const bothLeaves = async (db) => (await db.get('live-edited', { open_revs: 'all' })).length === 2;
  await waitFor('the live conflict on both sides', async () => (await bothLeaves(mine)) && (await bothLeaves(theirs)));
  sync.cancel();
  if (syncError) throw syncError;
  report.live = await dump(mine);

  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
