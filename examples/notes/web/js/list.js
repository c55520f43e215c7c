// Settee Notes: the list of notes (a page at a time, filtered by notebook, tag or search),
// and the side bar of notebooks and tags with their counts.

import { $, MAX_PAGE, PAGE, api, badgeFor, el, fmtTime, perf, renderBadge, setView, showError, state } from './core.js';
import { openNote, renderEditorBadge } from './editor.js';
import { thumbnail } from './images.js';

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
export async function loadMore() {
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

export async function loadList() {
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
  if (n.image) {
    li.classList.add('has-thumb');
    li.append(thumbnail(n));
  }
  li.addEventListener('click', () => openNote(n.id));
  return li;
}

export function renderList() {
  const list = $('#note-list');
  const frag = document.createDocumentFragment();
  for (const n of state.notes) frag.append(noteItem(n));
  list.replaceChildren(frag);
  renderCount();
  $('#more').hidden = !state.more;
}

export function renderAllBadges() {
  for (const li of document.querySelectorAll('#note-list li')) {
    const n = state.notes.find((x) => x.id === li.dataset.id);
    renderBadge(li.querySelector('.badge'), badgeFor(li.dataset.id, n ? n.state : { kind: 'local_only' }));
  }
  renderEditorBadge();
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
export function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadList().catch(showError);
    loadSide().catch(showError);
  }, 100);
}

// ---- notebooks and tags ----

export async function loadSide() {
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
