// Settee Notes: the page's behaviour. Talks to the app's JSON API (see api.rs) and follows
// its server-sent events: `changes` (notes written here, pulled or deleted), `sync` (the
// global state and changed badges) and `resync` (reload everything). No framework, no build.
'use strict';

const PAGE = 100;
const AUTOSAVE_MS = 600; // typing saves by itself this long after the last keystroke // notes per list request; "Show more" asks for the next page
const MAX_PAGE = 1000; // the most the API returns at once
const $ = (sel) => document.querySelector(sel);

const state = {
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
const perf = (window.__notesPerf = {});

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
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

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtTime(ms) {
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
function badgeFor(id, fallback) {
  if (state.badges === null || !state.sync) return fallback;
  return state.badges[id] || { kind: state.sync.remote ? 'synced' : 'local_only' };
}

function renderAllBadges() {
  for (const li of document.querySelectorAll('#note-list li')) {
    const n = state.notes.find((x) => x.id === li.dataset.id);
    renderBadge(li.querySelector('.badge'), badgeFor(li.dataset.id, n ? n.state : { kind: 'local_only' }));
  }
  renderEditorBadge();
}

function renderBadge(node, s) {
  node.className = 'badge ' + s.kind;
  node.dataset.state = s.kind;
  node.textContent = badgeText(s);
  node.title = badgeText(s);
}

// Which column a small screen shows (style.css shows one at a time below 700 px; wide
// screens show all three and ignore it).
function setView(view) {
  document.body.dataset.view = view;
}

function message(text) {
  $('#editor-message').textContent = text || '';
}

// ---- the list ----

let listRequest = 0;

function listUrl(limit, bookmark) {
  const p = new URLSearchParams();
  if (state.filter.notebook) p.set('notebook', state.filter.notebook);
  if (state.filter.tag) p.set('tag', state.filter.tag);
  if (state.filter.q) p.set('q', state.filter.q);
  p.set('limit', String(limit));
  if (bookmark) p.set('bookmark', bookmark);
  return '/api/notes?' + p;
}

// The next page, after the rows shown.
async function loadMore() {
  if (!state.bookmark) return;
  const mine = ++listRequest;
  const data = await api('GET', listUrl(PAGE, state.bookmark));
  if (mine !== listRequest) return;
  state.notes = state.notes.concat(data.notes);
  state.limit = Math.max(PAGE, state.notes.length);
  state.more = data.more;
  state.bookmark = data.bookmark;
  renderList();
}

async function loadList() {
  const mine = ++listRequest;
  const t0 = performance.now();
  const data = await api('GET', listUrl(Math.min(state.limit, MAX_PAGE)));
  if (mine !== listRequest) return; // a newer request is on its way
  const t1 = performance.now();
  state.notes = data.notes;
  state.more = data.more;
  state.bookmark = data.bookmark;
  renderList();
  if (perf.firstListPaint === undefined) {
    perf.firstListPaint = null;
    // After the next frame is painted.
    requestAnimationFrame(() => setTimeout(() => {
      perf.listFetchMs = t1 - t0;
      perf.listRenderMs = performance.now() - t1;
      perf.firstListPaint = performance.now();
      perf.rows = data.notes.length;
    }, 0));
  }
}

function noteItem(n) {
  const li = el('li', 'note');
  li.dataset.id = n.id;
  if (state.selected && state.selected.note.id === n.id) li.classList.add('selected');
  const badge = el('span');
  renderBadge(badge, badgeFor(n.id, n.state));
  const tags = n.tags.length ? ' · #' + n.tags.join(' #') : '';
  li.append(
    el('div', 'title', n.title || 'Untitled'),
    badge,
    el('div', 'meta', n.notebook + ' · ' + fmtTime(n.updated_at) + tags),
    el('div', 'excerpt', n.excerpt),
  );
  li.addEventListener('click', () => openNote(n.id));
  return li;
}

function renderList() {
  const list = $('#note-list');
  const frag = document.createDocumentFragment();
  for (const n of state.notes) frag.append(noteItem(n));
  list.replaceChildren(frag);
  renderCount();
  $('#more').hidden = !state.more;
}

// How many notes the list has: the side bar's count of the notebook or tag shown (or of
// all notes), or for a search, the rows found ("100+" while more follow).
function renderCount() {
  const f = state.filter;
  let total = null;
  if (!f.q && state.side) {
    const from = f.notebook ? state.side.notebooks : f.tag ? state.side.tags : null;
    const name = f.notebook || f.tag;
    total = from
      ? (from.find((x) => x.name === name) || { count: 0 }).count
      : state.side.notebooks.reduce((a, b) => a + b.count, 0);
  }
  const count = $('#list-count');
  if (total === null) {
    const n = state.notes.length;
    count.textContent = state.more ? n + '+ notes' : n === 1 ? '1 note' : n + ' notes';
  } else {
    count.textContent = total === 1 ? '1 note' : total + ' notes';
  }
  count.dataset.total = String(total === null ? state.notes.length : total);
}

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadList().catch(showError);
    loadSide().catch(showError);
  }, 100);
}

// ---- notebooks and tags ----

async function loadSide() {
  const data = await api('GET', '/api/notebooks');
  state.side = data;
  renderCount();
  const books = $('#notebooks');
  const items = [sideItem('All notes', null, null, data.notebooks.reduce((a, b) => a + b.count, 0))];
  for (const b of data.notebooks) items.push(sideItem(b.name, 'notebook', b.name, b.count));
  books.replaceChildren(...items);
  $('#tags').replaceChildren(...data.tags.map((t) => sideItem('#' + t.name, 'tag', t.name, t.count)));
  $('#notebook-names').replaceChildren(...data.notebooks.map((b) => {
    const o = el('option');
    o.value = b.name;
    return o;
  }));
}

function sideItem(label, kind, value, count) {
  const li = el('li');
  if (kind) li.dataset[kind] = value;
  const active = kind === null
    ? !state.filter.notebook && !state.filter.tag
    : state.filter[kind] === value;
  if (active) li.classList.add('active');
  li.append(el('span', 'name', label), el('span', 'count', String(count)));
  li.addEventListener('click', () => {
    state.filter.notebook = kind === 'notebook' ? value : null;
    state.filter.tag = kind === 'tag' ? value : null;
    state.limit = PAGE;
    setView('list');
    loadList().catch(showError);
    loadSide().catch(showError);
  });
  return li;
}

// ---- one note ----

async function openNote(id, show = true) {
  // Unsaved edits are saved first; if that is refused, the note stays open with its text.
  if (state.dirty && !(await save())) return;
  try {
    state.selected = await api('GET', '/api/notes/' + encodeURIComponent(id));
  } catch (e) {
    if (e.status === 404) {
      state.selected = null;
      message('That note was deleted.');
    } else throw e;
  }
  state.dirty = false;
  message('');
  renderEditor();
  if (show) setView('editor');
  for (const li of document.querySelectorAll('#note-list li')) {
    li.classList.toggle('selected', !!state.selected && li.dataset.id === state.selected.note.id);
  }
}

function renderEditor() {
  const s = state.selected;
  $('#empty').hidden = !!s;
  $('#editor').hidden = !s || s.versions.length > 1;
  $('#conflict').hidden = !s || s.versions.length <= 1;
  if (!s) return;
  if (s.versions.length > 1) return renderConflict(s);
  $('#editor').dataset.id = s.note.id;
  $('#title').value = s.note.title;
  $('#notebook').value = s.note.notebook;
  $('#tags-input').value = s.note.tags.join(', ');
  $('#body').value = s.note.body;
  renderEditorBadge();
  $('#editor-updated').textContent = s.note.id ? 'edited ' + fmtTime(s.note.updated_at) : 'new note: saved once you type';
  renderTitleLimit();
}

// The open note's badge, and "Use the server's version" while the server refuses it.
function renderEditorBadge() {
  const s = state.selected;
  if (!s || !s.note.id) {
    $('#editor-badge').hidden = true;
    $('#revert').hidden = true;
    return;
  }
  const b = badgeFor(s.note.id, s.state);
  $('#editor-badge').hidden = false;
  renderBadge($('#editor-badge'), b);
  $('#revert').hidden = b.kind !== 'rejected';
}

// The title stops at the app's limit (the input's maxlength); say so when it is reached.
function renderTitleLimit() {
  const t = $('#title');
  $('#title-limit').textContent = t.value.length >= t.maxLength
    ? 'The title is at its limit of ' + t.maxLength + ' characters.' : '';
}

function editedContent() {
  return {
    title: $('#title').value,
    body: $('#body').value,
    notebook: $('#notebook').value,
    tags: $('#tags-input').value.split(',').map((t) => t.trim()).filter(Boolean),
  };
}

// Saves are one at a time (autosave, the Save button and opening another note may ask
// together): each waits for the one before, so a new note is created once.
let saving = Promise.resolve(true);
let autosaveTimer = null;

// Saves the open note; says whether it worked.
function save() {
  clearTimeout(autosaveTimer);
  saving = saving.then(saveNow, saveNow);
  return saving;
}

function isBlank(c) {
  return !c.title.trim() && !c.body.trim() && c.tags.length === 0;
}

async function saveNow() {
  const s = state.selected;
  if (!s || !state.dirty) return true;
  const content = editedContent();
  // A new note is written only once something is typed in it.
  if (!s.note.id && isBlank(content)) {
    state.dirty = false;
    return true;
  }
  state.dirty = false;
  message('Saving…');
  try {
    const data = s.note.id
      ? await api('PUT', '/api/notes/' + encodeURIComponent(s.note.id), { ...content, rev: s.note.rev })
      : await api('POST', '/api/notes', content);
    if (state.selected !== s) return true; // another note was opened meanwhile
    s.note = data.note;
    s.state = data.state;
    s.versions = [];
    // Typing meanwhile stays in the editor (and is saved next); otherwise show the note.
    if (!state.dirty) {
      message('Saved.');
      renderEditor();
    } else {
      renderEditorBadge();
    }
    return true;
  } catch (e) {
    if (e.status === 409) {
      // The text stays in the editor to be copied; opening a note no longer tries to save it.
      message('This note was changed elsewhere since you opened it. Copy your text, then open the note again.');
    } else {
      state.dirty = true;
      message('Not saved: ' + e.message);
    }
    return false;
  }
}

function scheduleAutosave() {
  clearTimeout(autosaveTimer);
  autosaveTimer = setTimeout(() => save(), AUTOSAVE_MS);
}

// "+ New note": an empty editor; nothing is written (here or on the server) until
// something is typed.
async function createNote() {
  if (state.dirty && !(await save())) return;
  state.selected = {
    note: {
      id: null, rev: null, title: '', body: '',
      notebook: state.filter.notebook || 'Inbox',
      tags: state.filter.tag ? [state.filter.tag] : [],
      updated_at: null,
    },
    state: { kind: 'local_only' },
    versions: [],
  };
  state.dirty = false;
  message('');
  renderEditor();
  setView('editor');
  $('#title').focus();
}

// Delete at once, with "Undo" (a new revision on top of the deletion, with the content
// the note had).
async function deleteNote() {
  const s = state.selected;
  if (!s) return;
  clearTimeout(autosaveTimer);
  if (!s.note.id) {
    state.selected = null;
    state.dirty = false;
    renderEditor();
    return;
  }
  try {
    const data = await api('DELETE', '/api/notes/' + encodeURIComponent(s.note.id) + '?rev=' + encodeURIComponent(s.note.rev));
    state.selected = null;
    state.dirty = false;
    renderEditor();
    const undo = el('button', 'secondary', 'Undo');
    undo.type = 'button';
    undo.id = 'undo-delete';
    undo.addEventListener('click', async () => {
      try {
        const back = await api('POST', '/api/notes/' + encodeURIComponent(s.note.id) + '/undelete',
          { rev: data.rev, from: s.note.rev });
        state.selected = { note: back.note, state: back.state, versions: [] };
        message('Brought back.');
        renderEditor();
      } catch (e) {
        message(e.message);
      }
    });
    $('#editor-message').replaceChildren(document.createTextNode('Deleted “' + (s.note.title || 'Untitled') + '”. '), undo);
  } catch (e) {
    message(e.message);
  }
}

// The server refused this note's edit: take the server's version instead.
async function revertToServer() {
  const s = state.selected;
  if (!s || !s.note.id) return;
  try {
    const data = await api('POST', '/api/notes/' + encodeURIComponent(s.note.id) + '/revert');
    state.selected = { note: data.note, state: data.state, versions: [] };
    state.dirty = false;
    message("Back to the server's version.");
    renderEditor();
  } catch (e) {
    message(e.message);
  }
}

// The selected note changed in the store (an edit pulled from another device, a
// conflict arriving, a resolution made elsewhere, or this page's own save).
async function refreshSelected() {
  const s = state.selected;
  if (!s || !s.note.id) return;
  let now;
  try {
    now = await api('GET', '/api/notes/' + encodeURIComponent(s.note.id));
  } catch (e) {
    if (e.status !== 404) throw e;
    now = null;
  }
  if (state.selected !== s) return; // another note was opened meanwhile
  const same = now && now.note.rev === s.note.rev && now.versions.length === s.versions.length;
  if (same) {
    s.state = now.state;
    renderEditorBadge();
    return;
  }
  if (state.dirty) {
    message('This note was changed elsewhere while you edit it; saving will be refused. Copy your text, then open it again.');
    return;
  }
  state.selected = now;
  message(now ? '' : 'This note was deleted elsewhere.');
  renderEditor();
}

// ---- conflicts ----

// Which side a version is: this device, or the device that edited it.
function sideOf(v, s) {
  if (v.device && v.device === s.device) return 'This device';
  return v.device ? 'Device ' + v.device : 'Another device';
}

function renderConflict(s) {
  $('#conflict').dataset.id = s.note.id;
  const boxes = s.versions.map((v, i) => {
    const box = el('div', 'version');
    box.dataset.rev = v.rev;
    const keep = el('button', 'keep', 'Keep this version');
    keep.type = 'button';
    keep.addEventListener('click', () => resolve({ keep: v.rev }));
    box.append(
      el('div', 'v-label', sideOf(v, s) + ' · edited ' + fmtTime(v.updated_at) +
        (i === 0 ? ' (shown in the list until resolved)' : '')),
      el('div', 'v-title', v.title || 'Untitled'),
      el('div', 'v-meta', v.notebook + ' · edited ' + fmtTime(v.updated_at) +
        (v.tags.length ? ' · #' + v.tags.join(' #') : '')),
      el('pre', 'v-body', v.body),
      keep,
    );
    return box;
  });
  $('#versions').replaceChildren(...boxes);
  $('#merge-title').value = s.versions[0].title;
  // The app's line merge: shared lines once, the differences marked with their sides.
  $('#merge-body').value = s.suggested_body || '';
}

async function resolve(choice) {
  const s = state.selected;
  const revs = s.versions.map((v) => v.rev);
  const body = { revs };
  if (choice.keep) body.keep = choice.keep;
  else {
    const tags = [];
    for (const v of s.versions) for (const t of v.tags) if (!tags.includes(t)) tags.push(t);
    body.merged = {
      title: $('#merge-title').value,
      body: $('#merge-body').value,
      notebook: s.versions[0].notebook,
      tags,
    };
  }
  try {
    const data = await api('POST', '/api/notes/' + encodeURIComponent(s.note.id) + '/resolve', body);
    state.selected = { note: data.note, state: data.state, versions: [] };
    message('Conflict resolved.');
    renderEditor();
  } catch (e) {
    message(e.message);
    if (e.status === 409) await openNote(s.note.id);
  }
}

// ---- sync state ----

const LABELS = {
  local_only: 'Local only',
  connecting: 'Connecting…',
  syncing: 'Syncing…',
  synced: 'Synced',
  offline: 'Offline',
  error: 'Sync error',
};

// The header's word for the state: never "Synced" while a note is refused or in conflict.
function syncLabel(v) {
  if (v.state === 'synced' || v.state === 'local_only') {
    const parts = [];
    if (v.rejected) parts.push(v.rejected + ' rejected');
    if (v.conflicts) parts.push(v.conflicts + ' in conflict');
    if (parts.length) return parts.join(', ');
  }
  return LABELS[v.state] || v.state;
}

function renderSync(v) {
  state.sync = v;
  state.retryAt = v.retry_in_ms != null ? Date.now() + v.retry_in_ms : null;
  $('#sync').dataset.state = v.state;
  $('#sync').dataset.attention = String(!!(v.rejected || v.conflicts));
  $('#sync').title = v.message || (v.remote ? 'Syncing with ' + v.remote : 'No server set');
  $('#sync-state').textContent = syncLabel(v);
  // Why it does not sync, in the page itself.
  const failing = v.state === 'offline' || v.state === 'error';
  $('#sync-reason').textContent = failing && v.message ? v.message : '';
  $('#last-synced').textContent = v.remote
    ? (v.last_synced_at ? 'last synced ' + fmtTime(v.last_synced_at) : 'not synced yet')
    : '';
  let counts = '';
  if (v.remote) counts = v.unsynced === 0 ? 'all notes uploaded' : v.unsynced + ' unsynced';
  if (v.conflicts) counts += (counts ? ' · ' : '') + v.conflicts + ' in conflict';
  $('#unsynced-count').textContent = counts;
  $('#unsynced-count').dataset.unsynced = String(v.unsynced);
  // "Sync now" helps only while a sync waits (offline, or stopped by an error).
  $('#sync-now').hidden = !(v.remote && failing);
  renderSettingsState(v);
  tickRetry();
}

// The sync settings' view of the current server: where, as whom, and the last error.
function renderSettingsState(v) {
  $('#remote-shown').textContent = v && v.remote ? 'Syncing with ' + v.remote : 'Not syncing: notes stay on this device.';
  $('#settings-user').textContent = v && v.remote ? (v.user ? 'as ' + v.user : 'without signing in') : '';
  $('#settings-last-error').textContent = v && v.last_error
    ? 'Last error (' + fmtTime(v.last_error_at) + '): ' + v.last_error
    : '';
}

async function syncNow() {
  // The new state arrives as a live update.
  await api('POST', '/api/sync/now');
}

function tickRetry() {
  const v = state.sync;
  const detail = $('#sync-detail');
  if (!v || (v.state !== 'offline' && v.state !== 'error') || state.retryAt == null) {
    detail.textContent = '';
    return;
  }
  const secs = Math.ceil((state.retryAt - Date.now()) / 1000);
  detail.textContent = secs > 0 ? 'retrying in ' + secs + ' s' : 'retrying now';
}

function applyBadges(badges, full) {
  if (full || state.badges === null) state.badges = {};
  for (const [id, badge] of Object.entries(badges)) {
    if (badge.kind === 'synced' || badge.kind === 'local_only') delete state.badges[id];
    else state.badges[id] = badge;
  }
  renderAllBadges();
}

async function loadSync() {
  renderSync(await api('GET', '/api/sync'));
}

// ---- settings ----

function openSettings() {
  const v = state.sync;
  renderSettingsState(v);
  if (v && v.remote && !$('#remote-url').value) $('#remote-url').value = v.remote;
  if (v && v.user && !$('#remote-user').value) $('#remote-user').value = v.user;
  $('#settings-error').textContent = '';
  $('#settings').showModal();
}

async function connect(ev) {
  ev.preventDefault();
  try {
    // The new state arrives as a live update.
    await api('PUT', '/api/sync', {
      url: $('#remote-url').value,
      user: $('#remote-user').value || undefined,
      password: $('#remote-password').value || undefined,
    });
    $('#remote-password').value = '';
    $('#settings').close();
    scheduleRefresh();
  } catch (e) {
    $('#settings-error').textContent = e.message;
  }
}

async function disconnect() {
  try {
    await api('DELETE', '/api/sync');
    $('#settings').close();
    scheduleRefresh();
  } catch (e) {
    $('#settings-error').textContent = e.message;
  }
}

// ---- start ----

function showError(e) {
  message(e.message);
}

async function refreshAll() {
  // The sync state comes with the event stream; ask for it only if the stream has not
  // given it (an answer to a request could be older than an event already shown).
  await Promise.all([loadList(), loadSide(), state.sync ? null : loadSync()]);
  if (state.selected && state.selected.note.id && !state.dirty) await openNote(state.selected.note.id, false);
}

function follow() {
  const events = new EventSource('/api/events');
  let loaded = false;
  // Load (and reload after a reconnection) once the stream is open, so no update between
  // the load and the subscription is missed.
  events.onopen = () => {
    loaded = true;
    refreshAll().catch(showError);
  };
  setTimeout(() => {
    if (!loaded) refreshAll().catch(showError);
  }, 2000);
  events.addEventListener('changes', (e) => {
    const { ids } = JSON.parse(e.data);
    scheduleRefresh();
    if (state.selected && ids.includes(state.selected.note.id)) refreshSelected().catch(showError);
  });
  events.addEventListener('sync', (e) => {
    const u = JSON.parse(e.data);
    renderSync(u.sync);
    applyBadges(u.badges, u.full);
  });
  // This page fell behind: start over with a new stream (which begins with every badge).
  events.addEventListener('resync', () => {
    events.close();
    state.badges = null;
    follow();
  });
}

document.addEventListener('DOMContentLoaded', () => {
  $('#new-note').addEventListener('click', () => createNote().catch(showError));
  $('#new-note-narrow').addEventListener('click', () => createNote().catch(showError));
  $('#show-side').addEventListener('click', () => setView('side'));
  $('#back').addEventListener('click', async () => {
    if (state.dirty) await save();
    setView('list');
  });
  $('#editor').addEventListener('submit', (e) => {
    e.preventDefault();
    save();
  });
  $('#editor').addEventListener('input', () => {
    state.dirty = true;
    renderTitleLimit();
    scheduleAutosave();
  });
  // A reload or a closed tab with text not saved yet: the browser asks first (and the save
  // already under way finishes on the server's side).
  window.addEventListener('beforeunload', (e) => {
    if (state.dirty) {
      save();
      e.preventDefault();
      e.returnValue = '';
    }
  });
  $('#delete').addEventListener('click', () => deleteNote());
  $('#revert').addEventListener('click', () => revertToServer());
  $('#save-merge').addEventListener('click', () => resolve({ merged: true }));
  $('#more').addEventListener('click', () => loadMore().catch(showError));
  let searchTimer = null;
  $('#search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.filter.q = $('#search').value.trim();
      state.limit = PAGE;
      loadList().catch(showError);
    }, 150);
  });
  $('#settings-btn').addEventListener('click', openSettings);
  $('#sync-now').addEventListener('click', () => syncNow().catch(showError));
  $('#settings-close').addEventListener('click', () => $('#settings').close());
  $('#settings-form').addEventListener('submit', connect);
  $('#disconnect').addEventListener('click', disconnect);
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 's') {
      e.preventDefault();
      save();
    }
  });
  setInterval(tickRetry, 250);
  follow();
});
