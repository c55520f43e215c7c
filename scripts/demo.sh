#!/usr/bin/env bash
# The main job: an offline-first notes app syncing with a CouchDB server, through the
# `settee` command. Starts the CouchDB-compatible test server (or uses COUCHDB_URL, with the
# password in SETTEE_PASSWORD and the user in the URL), writes notes to a local store while
# "offline", syncs, edits one note on both sides, syncs again and shows the conflict, which
# both sides now agree on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "== building settee" >&2
cargo build --release --quiet --bin settee
settee="$root/target/release/settee"
work=$(mktemp -d "${TMPDIR:-/tmp}/settee-demo.XXXXXX")
if [ -z "${COUCHDB_URL:-}" ]; then
    echo "== starting the CouchDB-compatible test server (pouchdb-server from npm)" >&2
    trap '"$root/scripts/test-server.sh" stop "$work/server"; rm -rf "$work"' EXIT
    mkdir -p "$work/server"
    url=$("$root/scripts/test-server.sh" start "$work/server")
    export SETTEE_PASSWORD=$(cat "$work/server/password")
    server="${url/http:\/\//http://$(cat "$work/server/user")@}"
else
    trap 'rm -rf "$work"' EXIT
    server=$COUCHDB_URL
fi
remote="$server/settee-demo-$(date +%s)"
local="$work/notes.settee"
rev_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["_rev"])'; }
step() { printf '\n== %s\n' "$*"; }

step "offline: three notes written to the local store $local"
"$settee" put "$local" '{"_id":"note:groceries","title":"Groceries","body":"milk, eggs"}'
"$settee" put "$local" '{"_id":"note:ideas","title":"Ideas","body":"a sync engine in Rust"}'
"$settee" put "$local" '{"_id":"note:todo","title":"To do","body":"write the demo"}'

step "what is not synced yet, document by document (no network needed)"
"$settee" status --docs "$local" "$remote"

step "back online: sync both ways (creating the remote database)"
"$settee" sync "$local" "$remote" --create-target

step "the server has the notes, and nothing is left to sync either way"
"$settee" all-docs "$remote"
"$settee" status "$local" "$remote"

step "the laptop and the server edit the same note while apart"
rev=$("$settee" get "$local" note:groceries | rev_of)
"$settee" put "$local" "{\"_id\":\"note:groceries\",\"_rev\":\"$rev\",\"title\":\"Groceries\",\"body\":\"milk, eggs, bread\"}"
"$settee" put "$remote" "{\"_id\":\"note:groceries\",\"_rev\":\"$rev\",\"title\":\"Groceries\",\"body\":\"milk, eggs, coffee\"}"

step "sync again: both edits are kept"
"$settee" sync "$local" "$remote"

step "the conflict, as the local store sees it"
"$settee" conflicts "$local"
step "and as the server sees it (the same winner and the same losing branch)"
"$settee" conflicts "$remote"
"$settee" get "$remote" note:groceries --conflicts
