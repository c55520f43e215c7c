// Settee Notes: a note's images. Pasted, dropped or picked images are uploaded one at a
// time, each as its own request of raw bytes (`PUT /api/notes/{id}/images/{name}`, which
// the app streams into the store), and shown under the note's text: a gallery rather than
// markers in the text, because the editor is a plain text area (a marker shows as code
// there, and one typed over by mistake would orphan its image); images.rs says more. The
// list's thumbnail is the first image, scaled by CSS: no second copy is made or synced,
// and the browser keeps each image (its URL names its digest, so it never changes).

import { $, api, el, message, state } from './core.js';
import { ensureSaved, renderEditorBadge, writing } from './editor.js';

// The app's limit (MAX_IMAGE_BYTES in images.rs); checked here first so that a too large
// file is refused before it is sent.
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

// The URL of an image: the current version's, or `rev`'s (a side of a conflict).
export function imageUrl(id, image, rev) {
  const p = new URLSearchParams();
  if (rev) p.set('rev', rev);
  if (image.digest) p.set('d', image.digest);
  return '/api/notes/' + encodeURIComponent(id) + '/images/' + encodeURIComponent(image.name) + '?' + p;
}

// A list row's thumbnail: the note's first image.
export function thumbnail(n) {
  const img = el('img', 'thumb');
  img.alt = '';
  img.loading = 'lazy';
  img.src = imageUrl(n.id, n.image);
  return img;
}

// The open note's images, under its text, each with "Remove".
export function renderImages() {
  const s = state.selected;
  const box = $('#images');
  if (!s || !s.note.id || !s.note.images || !s.note.images.length) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(...s.note.images.map((image) => {
    const fig = el('figure', 'image');
    fig.dataset.name = image.name;
    const img = el('img');
    img.alt = image.name;
    img.src = imageUrl(s.note.id, image);
    const remove = el('button', 'secondary remove-image', 'Remove');
    remove.type = 'button';
    remove.title = 'Remove ' + image.name;
    remove.addEventListener('click', () => removeImage(image.name));
    fig.append(img, el('figcaption', null, image.name), remove);
    return fig;
  }));
}

// The images of `files` (a FileList or an array), added to the open note one at a time.
export async function addImages(files) {
  const list = [...files];
  const images = list.filter((f) => f.type.startsWith('image/'));
  if (!images.length) {
    if (list.length) message('Only images can be added to a note.');
    return;
  }
  for (const file of images) {
    if (file.size > MAX_IMAGE_BYTES) {
      message('“' + file.name + '” is larger than ' + MAX_IMAGE_BYTES / (1024 * 1024) + ' MB, the most a note takes.');
      continue;
    }
    // A new note is written first (an image is content); typed text is saved first.
    if (!(await ensureSaved())) return;
    const s = state.selected;
    message('Adding ' + (file.name || 'the image') + '…');
    try {
      const name = file.name || 'pasted.' + (file.type.split('/')[1] || 'png').replace(/[^a-z0-9]/gi, '');
      const data = await writing(() => api('PUT', '/api/notes/' + encodeURIComponent(s.note.id) + '/images/' +
        encodeURIComponent(name) + '?rev=' + encodeURIComponent(s.note.rev), undefined, file));
      if (state.selected !== s) return;
      took(s, data);
      message('Image added.');
    } catch (e) {
      message('Image not added: ' + e.message);
      return;
    }
  }
}

async function removeImage(name) {
  if (!(await ensureSaved())) return;
  const s = state.selected;
  try {
    const data = await writing(() => api('DELETE', '/api/notes/' + encodeURIComponent(s.note.id) + '/images/' +
      encodeURIComponent(name) + '?rev=' + encodeURIComponent(s.note.rev)));
    if (state.selected !== s) return;
    took(s, data);
    message('Image removed.');
  } catch (e) {
    message('Image not removed: ' + e.message);
  }
}

// The note after an image was added or removed: its new revision and images (text typed
// meanwhile stays in the editor, to be saved on top of the new revision).
function took(s, data) {
  s.note.rev = data.note.rev;
  s.note.images = data.note.images;
  s.note.updated_at = data.note.updated_at;
  s.state = data.state;
  renderImages();
  renderEditorBadge();
}

// Paste (an image on the clipboard), drop (files dragged onto the editor) and pick (the
// "Add image" button's file input).
export function wireImageInputs() {
  $('#image-input').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    addImages(files);
  });
  $('#add-image').addEventListener('click', () => $('#image-input').click());
  $('#editor').addEventListener('paste', (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (!files.some((f) => f.type.startsWith('image/'))) return; // text pastes as text
    e.preventDefault();
    addImages(files);
  });
  const pane = $('#editor');
  pane.addEventListener('dragover', (e) => {
    if (!e.dataTransfer || ![...e.dataTransfer.types].includes('Files')) return;
    e.preventDefault();
    pane.classList.add('dropping');
  });
  pane.addEventListener('dragleave', () => pane.classList.remove('dropping'));
  pane.addEventListener('drop', (e) => {
    pane.classList.remove('dropping');
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    e.preventDefault();
    addImages(e.dataTransfer.files);
  });
}
