// Settee Notes: the page's start: it wires the controls to the other modules (core.js,
// list.js, editor.js, images.js, conflicts.js, sync-status.js) and follows the app's server-sent
// events: `changes` (notes written here, pulled or deleted), `sync` (the global state and
// changed badges) and `resync` (reload everything).

import { $, PAGE, state, setView, showError } from './core.js';
import { loadList, loadMore, loadSide, scheduleRefresh } from './list.js';
import {
  createNote, deleteNote, openNote, refreshSelected, renderTitleLimit, revertToServer, save,
  scheduleAutosave,
} from './editor.js';
import { resolve } from './conflicts.js';
import { wireImageInputs } from './images.js';
import {
  applyBadges, connect, disconnect, loadSync, openSettings, renderSync, syncNow, tickRetry,
} from './sync-status.js';

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
  wireImageInputs();
  setInterval(tickRetry, 250);
  follow();
});
