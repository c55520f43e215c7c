#!/usr/bin/env bash
# Runs PouchDB 9.0.0's own test suite (the shared pouchdb-suite runner: tests/integration and
# tests/find, the suites that use a server) against a `settee serve` it starts on a free
# loopback port with an admin, then stops the server.
#
#   scripts/pouchdb-suite.sh [GREP]
#
# Env: TEST_GROUPS (default "integration find", the groups of issue 14's goal; add
# mapreduce for the view tests), POUCHDB_SUITE (the runner's folder; default ../shared/pouchdb-suite
# beside the repository), SETTEE_BIN (default target/debug/settee, built if missing),
# SETTEE_SERVE_LOG (where the server's log goes), and the runner's own (NAME, GREP, ...).
# Results: the runner's summary.txt (its path is printed). Exit status: the runner's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
suite=${POUCHDB_SUITE:-}
if [ -z "$suite" ]; then
    for c in "$root/../shared/pouchdb-suite" "$root/../../shared/pouchdb-suite"; do
        [ -f "$c/run.sh" ] && suite=$(cd "$c" && pwd) && break
    done
fi
[ -n "$suite" ] && [ -f "$suite/run.sh" ] || { echo "pouchdb-suite: no runner found (set POUCHDB_SUITE)" >&2; exit 2; }
bin=${SETTEE_BIN:-$root/target/debug/settee}
if [ -z "${SETTEE_BIN:-}" ]; then
    (cd "$root" && cargo build --quiet --bin settee)
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/settee-suite.XXXXXX")
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
log=${SETTEE_SERVE_LOG:-$work/serve.log}
SETTEE_PASSWORD=$password "$bin" serve --data-dir "$work/data" --bind "127.0.0.1:$port" --admin admin >"$log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap stop EXIT
for _ in $(seq 1 100); do
    curl -fsS -m 2 "http://127.0.0.1:$port/_up" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "pouchdb-suite: settee serve did not start:" >&2; cat "$log" >&2; exit 2; }
    sleep 0.1
done
status=0
COUCH_HOST="http://admin:$password@127.0.0.1:$port" \
TEST_GROUPS=${TEST_GROUPS:-integration find} \
NAME=${NAME:-settee-$(date -u +%Y%m%dT%H%M%S)} \
    bash "$suite/run.sh" "$@" || status=$?
exit $status
