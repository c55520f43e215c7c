// Settee Notes: the sync state in the header (never "Synced" while a note is refused or in
// conflict, and why a sync fails in the page itself), the retry countdown, the per-note
// badges from the event stream, and the sync settings dialog.

import { $, api, fmtTime, state } from './core.js';
import { renderAllBadges, scheduleRefresh } from './list.js';

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

export function renderSync(v) {
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

export async function syncNow() {
  // The new state arrives as a live update.
  await api('POST', '/api/sync/now');
}

export function tickRetry() {
  const v = state.sync;
  const detail = $('#sync-detail');
  if (!v || (v.state !== 'offline' && v.state !== 'error') || state.retryAt == null) {
    detail.textContent = '';
    return;
  }
  const secs = Math.ceil((state.retryAt - Date.now()) / 1000);
  detail.textContent = secs > 0 ? 'retrying in ' + secs + ' s' : 'retrying now';
}

export function applyBadges(badges, full) {
  if (full || state.badges === null) state.badges = {};
  for (const [id, badge] of Object.entries(badges)) {
    if (badge.kind === 'synced' || badge.kind === 'local_only') delete state.badges[id];
    else state.badges[id] = badge;
  }
  renderAllBadges();
}

export async function loadSync() {
  renderSync(await api('GET', '/api/sync'));
}

// ---- settings ----

export function openSettings() {
  const v = state.sync;
  renderSettingsState(v);
  if (v && v.remote && !$('#remote-url').value) $('#remote-url').value = v.remote;
  if (v && v.user && !$('#remote-user').value) $('#remote-user').value = v.user;
  $('#settings-error').textContent = '';
  $('#settings').showModal();
}

export async function connect(ev) {
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

export async function disconnect() {
  try {
    await api('DELETE', '/api/sync');
    $('#settings').close();
    scheduleRefresh();
  } catch (e) {
    $('#settings-error').textContent = e.message;
  }
}
