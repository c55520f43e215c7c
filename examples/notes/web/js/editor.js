// Settee Notes: one note in the editor: opening it, showing it, saving (by itself while
// typing, one save at a time), a new note, delete with undo, going back to the server's
// version, and following changes made elsewhere to the note open.

import { $, AUTOSAVE_MS, api, badgeFor, el, fmtTime, message, renderBadge, setView, state } from './core.js';
import { renderConflict } from './conflicts.js';
import { renderImages } from './images.js';

export async function openNote(id, show = true) {
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

export function renderEditor() {
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
  renderImages();
  renderEditorBadge();
  $('#editor-updated').textContent = s.note.id ? 'edited ' + fmtTime(s.note.updated_at) : 'new note: saved once you type';
  renderTitleLimit();
}

// The open note's badge, and "Use the server's version" while the server refuses it.
export function renderEditorBadge() {
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
export function renderTitleLimit() {
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
export function save() {
  clearTimeout(autosaveTimer);
  saving = saving.then(saveNow, saveNow);
  return saving;
}

function isBlank(c) {
  return !c.title.trim() && !c.body.trim() && c.tags.length === 0;
}

// Writes on their way to the store (a save; adding or removing an image, which writes two
// revisions): a change read meanwhile may be one of their own revisions seen before their
// answer, so reading it waits for that answer (`refreshSelected`).
let writesInFlight = 0;
let refreshAfterWrites = false;

// Runs `write` (a write of the open note) with changes read meanwhile put off until it ends.
export async function writing(write) {
  writesInFlight += 1;
  try {
    return await write();
  } finally {
    writesInFlight -= 1;
    if (writesInFlight === 0 && refreshAfterWrites) {
      refreshAfterWrites = false;
      refreshSelected().catch(() => {});
    }
  }
}

function saveNow() {
  return writing(saveNowInner);
}

async function saveNowInner() {
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

// The open note written now, a new one even if nothing is typed yet (an image is content):
// says whether it is in the store.
export async function ensureSaved() {
  const s = state.selected;
  if (!s) return false;
  if (state.dirty && !(await save())) return false;
  saving = saving.then(async () => {
    if (s.note.id) return true;
    try {
      const data = await api('POST', '/api/notes', editedContent());
      s.note = data.note;
      s.state = data.state;
      if (state.selected === s && !state.dirty) renderEditor();
      return true;
    } catch (e) {
      message('Not saved: ' + e.message);
      return false;
    }
  });
  return (await saving) && state.selected === s;
}

export function scheduleAutosave() {
  clearTimeout(autosaveTimer);
  autosaveTimer = setTimeout(() => save(), AUTOSAVE_MS);
}

// "+ New note": an empty editor; nothing is written (here or on the server) until
// something is typed.
export async function createNote() {
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
export async function deleteNote() {
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
export async function revertToServer() {
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
export async function refreshSelected() {
  const s = state.selected;
  if (!s || !s.note.id) return;
  if (writesInFlight > 0) {
    refreshAfterWrites = true;
    return;
  }
  let now;
  try {
    now = await api('GET', '/api/notes/' + encodeURIComponent(s.note.id));
  } catch (e) {
    if (e.status !== 404) throw e;
    now = null;
  }
  if (state.selected !== s) return; // another note was opened meanwhile
  // A read that started before this page's own later write (adding an image writes two
  // revisions) is older than what the page holds: the page keeps the newer one.
  const generation = (rev) => parseInt(String(rev).split('-')[0], 10) || 0;
  if (now && now.note.id === s.note.id && generation(now.note.rev) < generation(s.note.rev)) return;
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
