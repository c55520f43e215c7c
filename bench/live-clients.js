'use strict';
// Live clients of issue 14's benchmark: N PouchDB clients (http adapter) follow one
// database's changes live; a writer puts a document, and we measure when each client sees
// it. A warm-up write (every client must see it) comes first, so that every feed is open.
//
//   node live-clients.js URL/DB [CLIENTS=100] [ROUNDS=10]
// Prints one JSON line: clients, rounds, per-round latency of the slowest client (ms),
// and whether every client saw every write within 1 s.
const PouchDB = require('pouchdb');

async function main() {
  const [url, clientsArg, roundsArg] = process.argv.slice(2);
  const clients = Number(clientsArg || 100);
  const rounds = Number(roundsArg || 10);
  const writer = new PouchDB(url);
  await writer.info();
  const seen = new Map(); // id -> array of receive times (ms)
  const waiters = [];
  const feeds = [];
  for (let i = 0; i < clients; i++) {
    const db = new PouchDB(url);
    const feed = db.changes({ live: true, since: 'now' });
    feed.on('change', (c) => {
      const t = performance.now();
      if (!seen.has(c.id)) seen.set(c.id, []);
      seen.get(c.id).push(t);
      for (const w of waiters) w();
    });
    feeds.push(feed);
  }
  const allSaw = (id, deadlineMs) => new Promise((resolve, reject) => {
    const start = performance.now();
    const check = () => {
      if ((seen.get(id) || []).length >= clients) { resolve(); return true; }
      if (performance.now() - start > deadlineMs) { reject(new Error(`only ${(seen.get(id) || []).length} of ${clients} clients saw ${id}`)); return true; }
      return false;
    };
    if (check()) return;
    const w = () => { if (check()) waiters.splice(waiters.indexOf(w), 1); };
    waiters.push(w);
    const timer = setInterval(() => { if (check()) { clearInterval(timer); } }, 100);
  });
  // Warm-up: repeated until every feed delivers (feeds connect at their own pace).
  for (let i = 0; ; i++) {
    const id = `warmup-${i}`;
    await writer.put({ _id: id });
    try { await allSaw(id, 5000); break; } catch (e) { if (i > 10) throw e; }
  }
  const latencies = [];
  for (let r = 0; r < rounds; r++) {
    const id = `probe-${r}`;
    const t0 = performance.now();
    await writer.put({ _id: id, at: Date.now() });
    await allSaw(id, 10000);
    latencies.push(Math.max(...seen.get(id)) - t0);
  }
  for (const f of feeds) f.cancel();
  latencies.sort((a, b) => a - b);
  console.log(JSON.stringify({
    clients, rounds,
    slowest_client_ms: { min: latencies[0], median: latencies[Math.floor(rounds / 2)], max: latencies[rounds - 1] },
    all_within_1s: latencies[rounds - 1] < 1000,
  }));
}

main().catch((e) => { console.error(`live-clients: ${e.stack || e}`); process.exit(1); });
