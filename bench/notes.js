'use strict';
// The benchmark's "note" documents: about 1 KB of JSON each (title, body text, tags,
// timestamps), generated deterministically from their index. Mirrors bench/notes.rs exactly
// (same word lists, same xorshift32, same fields), so PouchDB, the server loader, Settee and
// RouchDB all write the same documents.

const WORDS = [
  'meeting', 'project', 'idea', 'draft', 'review', 'garden', 'recipe', 'travel', 'budget',
  'invoice', 'call', 'email', 'follow', 'up', 'with', 'the', 'team', 'about', 'next', 'week',
  'remember', 'to', 'buy', 'milk', 'bread', 'and', 'coffee', 'before', 'friday', 'plan',
  'sprint', 'release', 'notes', 'check', 'server', 'logs', 'fix', 'bug', 'in', 'sync', 'code',
  'write', 'tests', 'for', 'offline', 'mode', 'book', 'flight', 'hotel', 'train', 'ticket',
  'read', 'chapter', 'three', 'of', 'that', 'novel', 'call', 'mom', 'on', 'sunday', 'pay',
  'rent', 'today',
];
const TAGS = [
  'work', 'home', 'todo', 'ideas', 'travel', 'shopping', 'health', 'finance', 'reading',
  'family', 'urgent', 'someday',
];
const BASE_MS = 1767225600000; // 2026-01-01T00:00:00Z

class Rng {
  constructor(seed) {
    this.x = ((Math.imul(seed >>> 0, 2654435761) + 1) | 1) >>> 0;
  }
  next() {
    let x = this.x;
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    this.x = x;
    return x;
  }
  below(n) {
    return this.next() % n;
  }
}

function noteId(prefix, i) {
  return prefix + String(i).padStart(8, '0');
}

function words(rng, minChars) {
  let s = '';
  while (s.length < minChars) {
    if (s.length) s += ' ';
    s += WORDS[rng.below(WORDS.length)];
  }
  return s;
}

function note(prefix, i) {
  const rng = new Rng(i);
  const title = words(rng, 24);
  const body = words(rng, 760);
  const ntags = 1 + rng.below(3);
  const tags = [];
  for (let k = 0; k < ntags; k++) tags.push(TAGS[rng.below(TAGS.length)]);
  const created = BASE_MS + i * 37000;
  const updated = created + rng.below(86400000);
  return {
    _id: noteId(prefix, i),
    type: 'note',
    title,
    body,
    tags,
    pinned: rng.below(10) === 0,
    created_at: new Date(created).toISOString(),
    updated_at: new Date(updated).toISOString(),
  };
}

function readOrder(n, count) {
  const rng = new Rng(0xC0FFEE);
  const out = new Array(count);
  for (let k = 0; k < count; k++) out[k] = rng.next() % n;
  return out;
}

module.exports = { note, noteId, readOrder, Rng };
