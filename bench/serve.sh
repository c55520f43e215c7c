#!/usr/bin/env bash
# Benchmark of issue 14: PouchDB 9 (node, leveldb) pulling and pushing N 1 KB notes with
# `settee serve`, Apache CouchDB 3.5.0 and pouchdb-server 4.2.0, in one run on the same
# machine; then CLIENTS live PouchDB clients following one database, each of which must see
# a write within 1 s; and each server's peak memory (VmHWM) and CPU time over the run.
# Prints a markdown table on stdout; raw output in BENCH_OUT (bench-out/serve).
#
#   bench/serve.sh                        # N=100,000 (BENCH_DOCS), 100 live clients
#   BENCH_DOCS=5000 BENCH_CLIENTS=20 bench/serve.sh
#
# Needs: node (scripts/node-deps.sh), /usr/bin/time, the CouchDB release of ../shared
# (SETTEE_COUCHDB_RELEASE, default /work/shared/couchdb when present), a settee binary
# (SETTEE_BIN, default a release build into target/bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${BENCH_DOCS:-100000}
clients=${BENCH_CLIENTS:-100}
out=${BENCH_OUT:-$root/bench-out/serve}
couch_release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
log() { echo "serve.sh: $*" >&2; }
export NODE_PATH=$("$root/scripts/node-deps.sh")
client="$root/bench/replication-client.js"
settee_bin=${SETTEE_BIN:-}
if [ -z "$settee_bin" ]; then
    log "building the settee CLI (release)"
    CARGO_TARGET_DIR=$root/target/bench cargo build --release --quiet --bin settee
    settee_bin=$root/target/bench/release/settee
fi
rm -rf "$out"; mkdir -p "$out"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT

# start_<server>: sets url (with credentials) and pid.
start_settee() {
    local dir port pw
    dir=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX"); port=$(free_port)
    pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    SETTEE_PASSWORD=$pw "$settee_bin" serve --data-dir "$dir/data" --bind "127.0.0.1:$port" --admin admin \
        >"$out/settee-server.log" 2>&1 &
    pid=$!
    cleanup+=("kill $pid; rm -rf $dir")
    url="http://admin:$pw@127.0.0.1:$port"
    for _ in $(seq 1 100); do curl -fs "$url/_up" >/dev/null 2>&1 && return 0; sleep 0.1; done
    log "settee serve did not start"; return 1
}
start_couchdb() {
    local dir o
    dir=$(mktemp -d "${TMPDIR:-/tmp}/couch-bench.XXXXXX")
    o=$(bash "$couch_release/couchdb.sh" start "$dir")
    url=${o%% *}; pid=${o##* }
    cleanup+=("bash $couch_release/couchdb.sh stop $dir; rm -rf $dir")
    curl -s -X PUT "$url/_node/_local/_config/chttpd_auth_lockout/mode" -d '"off"' >/dev/null
}
start_pouchdb_server() {
    local state
    state=$(mktemp -d "${TMPDIR:-/tmp}/pouch-bench.XXXXXX")
    url=$("$root/scripts/test-server.sh" start "$state")
    pid=$(cat "$state/pid")
    cleanup+=("$root/scripts/test-server.sh stop $state; rm -rf $state")
    if [ -f "$state/password" ]; then
        url=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=u.quote(sys.argv[2], safe="") + ":" + u.quote(sys.argv[3], safe="") + "@" + p.netloc).geturl())' "$url" "$(cat "$state/user" 2>/dev/null || echo settee_admin)" "$(cat "$state/password")")
    fi
}
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
hwm_mb() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
seconds() { python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["seconds"])' "$1"; }

echo "| server | PouchDB pull of $n notes (s) | PouchDB push (s) | $clients live clients: slowest of 10 writes (ms, median / max) | all within 1 s | server CPU (s) | server peak RSS (MB) |"
echo "|---|---|---|---|---|---|---|"
for server in settee couchdb pouchdb_server; do
    log "$server: starting"
    "start_$server" || { echo "| $server | failed to start | | | | | |"; continue; }
    log "$server: loading $n notes"
    node "$client" load "$url/src" "$n" >"$out/$server-load.json"
    log "$server: PouchDB pull"
    node "$client" pouchdb "$url/src" "$out/$server-local" >"$out/$server-pull.json"
    log "$server: PouchDB push"
    node "$client" pouchdb "$out/$server-local" "$url/push" >"$out/$server-push.json"
    log "$server: $clients live clients"
    curl -fs -X PUT "$url/live" >/dev/null
    live=$(node "$root/bench/live-clients.js" "$url/live" "$clients" 10 | tee "$out/$server-live.json")
    lat=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); s=d["slowest_client_ms"]; print("%.0f / %.0f | %s" % (s["median"], s["max"], "yes" if d["all_within_1s"] else "no"))' "$live")
    echo "| $server | $(seconds "$out/$server-pull.json") | $(seconds "$out/$server-push.json") | $lat | $(cpu_s "$pid") | $(hwm_mb "$pid") |"
    eval "${cleanup[-1]}"; unset 'cleanup[-1]'
done
