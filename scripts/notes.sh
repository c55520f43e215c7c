#!/usr/bin/env bash
# Starts the notes app (examples/notes) syncing with a local server, and prints the page's
# address. Ctrl-C stops the app and the server.
#
# The server, in this order:
#   1. Apache CouchDB 3.5.0 from a release folder with couchdb.sh (SETTEE_COUCHDB_RELEASE, or
#      ../shared/couchdb beside the checkout);
#   2. pouchdb-server from the npm registry (scripts/test-server.sh), when Node.js is installed;
#   3. none: the app runs offline only (a server can still be set on the page).
# The app's store and the server's data live in NOTES_STATE (default .cache/notes), so notes
# survive between runs; the page is served on NOTES_LISTEN (default 127.0.0.1:8080).
# It prints how to reach the server (its address, user, and the file holding its password,
# NOTES_STATE/server.password, readable by you only). The app reads its password from that
# file (--password-file), never its command line, and again at every attempt to sync: when
# the server's password changes, write the new one there and the app signs in again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${NOTES_STATE:-$root/.cache/notes}
listen=${NOTES_LISTEN:-127.0.0.1:8080}
mkdir -p "$state"

release=${SETTEE_COUCHDB_RELEASE:-}
if [ -z "$release" ] && [ -f "$root/../shared/couchdb/couchdb.sh" ]; then
    release=$(cd "$root/../shared/couchdb" && pwd)
fi

remote=""
password=""
server=""
user=""
stop_server=""
password_file="$state/server.password"
cleanup() { if [ -n "$stop_server" ]; then eval "$stop_server" || true; fi; }
trap cleanup EXIT

if [ -n "$release" ]; then
    # One server per state folder, always on the port it first had: couchdb.sh cannot start a
    # data folder on another port. It prints "http://admin:PASSWORD@127.0.0.1:PORT PID".
    port=$(cat "$state/couchdb.port" 2>/dev/null ||
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    bash "$release/couchdb.sh" stop "$state/couchdb" 2>/dev/null || true
    started=$(bash "$release/couchdb.sh" start "$state/couchdb" "$port")
    echo "$port" > "$state/couchdb.port"
    stop_server="bash '$release/couchdb.sh' stop '$state/couchdb'"
    url=${started%% *}
    password=${url#http://admin:}
    password=${password%%@*}
    server="http://127.0.0.1:$port"
    user=admin
    remote="http://admin@127.0.0.1:$port/notes"
    echo "notes.sh: Apache CouchDB 3.5.0 at $server (Fauxton: $server/_utils)" >&2
elif command -v node >/dev/null; then
    url=$("$root/scripts/test-server.sh" start "$state/pouchdb")
    stop_server="'$root/scripts/test-server.sh' stop '$state/pouchdb'"
    password=$(cat "$state/pouchdb/password")
    server=$url
    user=$(cat "$state/pouchdb/user")
    remote="http://$user@${url#http://}/notes"
    echo "notes.sh: pouchdb-server at $server" >&2
else
    echo "notes.sh: no CouchDB release and no Node.js: the app runs offline only" >&2
fi

if [ -n "$server" ]; then
    # The password, for the app and for you: a file only its owner reads.
    (umask 077 && printf '%s\n' "$password" > "$password_file")
    echo "notes.sh: server   $server" >&2
    echo "notes.sh: database ${server}/notes" >&2
    echo "notes.sh: user     $user" >&2
    echo "notes.sh: password in $password_file (cat it; the app rereads it when sign-in fails)" >&2
fi

cargo build -q -p settee-notes
args=(--store "$state/store" --listen "$listen")
if [ -n "$remote" ]; then
    args+=(--remote "$remote" --password-file "$password_file")
    echo "notes.sh: syncing with $remote" >&2
fi
# The app prints "settee-notes: listening on http://ADDRESS/": open that page.
"$root/target/debug/settee-notes" "${args[@]}"
