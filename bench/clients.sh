#!/usr/bin/env bash
# Benchmark of issue 24: a thousand clients against one `settee serve` and against Apache
# CouchDB 3.5.0, in one run on the same machine. Each client (bench/clients-workload, one
# connection per client) follows one database live (`_changes?feed=longpoll`, since carried
# over, as PouchDB's live sync; BENCH_FEED=continuous for one continuous feed each) while
# BENCH_WRITERS of them write 1 KB notes at BENCH_RATE writes/s in total for BENCH_SECONDS.
# Measured per write: the time until the LAST client's feed has it (p50, p99, max); the
# writes/s the server sustained; every client error; the server's RSS idle, with every
# client connected and at its peak (per client = (connected - idle) / clients); and the
# server's CPU over the writing. Prints a markdown table on stdout; raw JSON in BENCH_OUT
# (bench-out/clients).
#
#   bench/clients.sh                                  # 1,000 clients, 20 writes/s, 30 s
#   BENCH_CLIENTS=200 BENCH_SECONDS=10 bench/clients.sh
#
# Needs: the CouchDB release of ../shared (SETTEE_COUCHDB_RELEASE, default
# /work/shared/couchdb when present), a settee binary (SETTEE_BIN, default a release build
# into target/bench), and the load generator (built here into CARGO_TARGET_DIR, default
# target/bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
clients=${BENCH_CLIENTS:-1000}
writers=${BENCH_WRITERS:-20}
rate=${BENCH_RATE:-20}
seconds=${BENCH_SECONDS:-30}
feed=${BENCH_FEED:-longpoll}
out=${BENCH_OUT:-$root/bench-out/clients}
couch_release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
log() { echo "clients.sh: $*" >&2; }

# Every client holds a socket at the server and one here (and each writer another): raise
# the open-files limit of this shell, which both servers and the load generator inherit.
want=$((2 * clients + 2 * writers + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$want" ] ||
    log "warning: open files limited to $(ulimit -n), $clients clients need about $want"

log "building the load generator (release)"
cargo build --release --quiet --manifest-path "$root/bench/clients-workload/Cargo.toml"
workload=$CARGO_TARGET_DIR/release/settee-clients-workload
settee_bin=${SETTEE_BIN:-}
if [ -z "$settee_bin" ]; then
    log "building the settee CLI (release)"
    cargo build --release --quiet --bin settee
    settee_bin=$CARGO_TARGET_DIR/release/settee
fi
rm -rf "$out"; mkdir -p "$out"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT

# start_<server>: sets url (with credentials) and pid (the process whose memory counts).
start_settee() {
    local dir port pw
    dir=$(mktemp -d "${TMPDIR:-/tmp}/clients-bench.XXXXXX"); port=$(free_port)
    pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # The defaults hold 1,000 clients: at most 2,048 connections (`--max-connections`),
    # and live feeds are not limited apart from that (docs/security.md).
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
    dir=$(mktemp -d "${TMPDIR:-/tmp}/couch-clients.XXXXXX")
    o=$(bash "$couch_release/couchdb.sh" start "$dir")
    url=${o%% *}; pid=${o##* }
    cleanup+=("bash $couch_release/couchdb.sh stop $dir; rm -rf $dir")
    # CouchDB's limits, read back so the raw output shows them: `[chttpd] server_options`
    # (3.5's default has `{max, 65536}` connections), `[couchdb] max_dbs_open` (one
    # database here). Neither stops 1,000 clients, so neither is changed.
    for key in chttpd/server_options couchdb/max_dbs_open; do
        echo "$key = $(curl -s "$url/_node/_local/_config/$key")" >>"$out/couchdb-limits.txt"
    done
    curl -s -X PUT "$url/_node/_local/_config/chttpd_auth_lockout/mode" -d '"off"' >/dev/null
}

echo "| server | feed | clients | write → last client p50 (ms) | p99 (ms) | max (ms) | writes/s (of $rate) | errors | RSS idle (MB) | RSS with clients (MB) | per client (KB) | peak RSS (MB) | server CPU (s, % of a core) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for server in settee couchdb; do
    log "$server: starting"
    "start_$server" || { echo "| $server | failed to start | | | | | | | | | | | |"; continue; }
    curl -fs -X PUT "$url/team" >/dev/null
    log "$server: $clients clients, $writers writers, $rate writes/s for $seconds s ($feed)"
    "$workload" --url "$url/team" --clients "$clients" --writers "$writers" --rate "$rate" \
        --duration "$seconds" --feed "$feed" --pid "$pid" --label "$server" \
        >"$out/$server.json" 2>"$out/$server.log" || log "$server: the load generator failed (see $out/$server.log)"
    python3 - "$out/$server.json" "$server" "$feed" <<'PY' || echo "| $server | no result (see the log) | | | | | | | | | | | |"
import json, sys
d = json.load(open(sys.argv[1]))
s, l = d["server"], d["last_client_ms"]
errors = sum(d["errors"].values())
def f(v, fmt="%.0f"):
    return "" if v is None else fmt % v
print("| %s | %s | %d | %s | %s | %s | %s | %d%s | %s | %s | %s | %s | %s (%s) |" % (
    sys.argv[2], sys.argv[3], d["clients"], f(l["p50"]), f(l["p99"]), f(l["max"]),
    f(d["writes_per_s"], "%.1f"), errors,
    "" if not errors else " (" + ", ".join("%s: %d" % kv for kv in d["errors"].items()) + ")",
    f(s["rss_idle_mb"]), f(s["rss_connected_mb"]), f(s["per_client_kb"], "%.1f"),
    f(s["rss_peak_mb"]), f(s["cpu_s"], "%.1f"), f(s["cpu_pct"])))
PY
    eval "${cleanup[-1]}"; unset 'cleanup[-1]'
done
