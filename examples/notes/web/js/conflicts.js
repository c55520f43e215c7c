// Settee Notes: a note in conflict: its versions side by side (each naming its side),
// the suggested merge, and resolving (keep one version, or save the merge). Each side's
// images are shown with a "keep" box, all ticked: the merge keeps the union by default.

import { $, api, el, fmtTime, message, state } from './core.js';
import { openNote, renderEditor } from './editor.js';
import { imageUrl } from './images.js';

// Which side a version is: this device, or the device that edited it.
function sideOf(v, s) {
  if (v.device && v.device === s.device) return 'This device';
  return v.device ? 'Device ' + v.device : 'Another device';
}

export function renderConflict(s) {
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
      versionImages(s, v),
      keep,
    );
    return box;
  });
  $('#versions').replaceChildren(...boxes);
  $('#merge-title').value = s.versions[0].title;
  // The app's line merge: shared lines once, the differences marked with their sides.
  $('#merge-body').value = s.suggested_body || '';
}

// A version's images, each with "keep in the merge" (ticked).
function versionImages(s, v) {
  const box = el('div', 'v-images');
  for (const image of v.images || []) {
    const fig = el('figure', 'image');
    fig.dataset.name = image.name;
    const img = el('img');
    img.alt = image.name;
    img.src = imageUrl(s.note.id, image, v.rev);
    const label = el('label', 'keep-image');
    const tick = el('input');
    tick.type = 'checkbox';
    tick.checked = true;
    tick.dataset.rev = v.rev;
    tick.dataset.name = image.name;
    label.append(tick, document.createTextNode(' keep ' + image.name));
    fig.append(img, label);
    box.append(fig);
  }
  return box;
}

export async function resolve(choice) {
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
    body.images = [...document.querySelectorAll('#versions .keep-image input:checked')]
      .map((t) => ({ rev: t.dataset.rev, name: t.dataset.name }));
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
