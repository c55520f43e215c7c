// Settee Notes: what every part of the page shares: the page's state, the JSON API call,
// small DOM helpers, and how a sync badge reads. No framework, no build: ES modules served
// by the app (web.rs).

export const PAGE = 100; // notes per list request; "Show more" asks for the next page
export const MAX_PAGE = 1000; // the most the API returns at once
export const AUTOSAVE_MS = 600; // typing saves by itself this long after the last keystroke
export const $ = (sel) => document.querySelector(sel);

export const state = {
  filter: { notebook: null, tag: null, q: '' },
  limit: PAGE, // how many rows a reload of the list asks for (the rows shown)
  notes: [],
  more: false, // more notes match than shown
  bookmark: null, // where the next page starts
  side: null, // notebooks and tags with their counts (GET /api/notebooks)
  selected: null, // {note, state, versions} from GET /api/notes/{id}
  dirty: false,
  sync: null,
  retryAt: null,
  // Badges of the notes that are not synced, from the event stream alone (a full set when
  // it opens, then changes in order), so a list fetched meanwhile never shows an older one.
  badges: null,
};

// Timings of the first list, read by the browser test (docs/benchmarks.md).
export const perf = (window.__notesPerf = {});

// A request to the app's API: JSON in (or `raw`, a body sent as it is with its own type),
// JSON out; an error reply throws an Error with the server's reason, status and name.
export async function api(method, path, body, raw) {
  const opts = { method, headers: {} };
  if (raw) {
    opts.headers['content-type'] = raw.type;
    opts.body = raw;
  } else if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data.reason || res.statusText);
    err.status = res.status;
    err.name = data.error || 'error';
    throw err;
  }
  return data;
}

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function fmtTime(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString(undefined, {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

function badgeText(s) {
  switch (s.kind) {
    case 'synced': return 'synced';
    case 'unpushed': return 'waiting to upload';
    case 'rejected': return 'rejected: ' + s.reason;
    case 'conflict': return 'conflict';
    default: return 'local only';
  }
}

// A note's badge: from the event stream once it has spoken, else what `fallback` (a list
// row's or the note's own `state`) says.
export function badgeFor(id, fallback) {
  if (state.badges === null || !state.sync) return fallback;
  return state.badges[id] || { kind: state.sync.remote ? 'synced' : 'local_only' };
}

export function renderBadge(node, s) {
  node.className = 'badge ' + s.kind;
  node.dataset.state = s.kind;
  node.textContent = badgeText(s);
  node.title = badgeText(s);
}

// Which column a small screen shows (style.css shows one at a time below 700 px; wide
// screens show all three and ignore it).
export function setView(view) {
  document.body.dataset.view = view;
}

export function message(text) {
  $('#editor-message').textContent = text || '';
}

export function showError(e) {
  message(e.message);
}
