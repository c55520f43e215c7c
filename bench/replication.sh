#!/usr/bin/env bash
# Replication benchmark of issue 5: pull and push of N 1 KB notes between a local database and
# the CouchDB-compatible test server (pouchdb-server), for the settee CLI, PouchDB 9 (Node,
# leveldb adapter) and RouchDB (crates.io rouchdb, redb), on the same server in one run, next
# to the server's own limit (the fastest raw _changes + _bulk_get read and _bulk_docs write a
# client can do). Every client run is its own process under /usr/bin/time -v (wall time,
# client CPU, peak RSS), followed by a no-op re-run of the same replication (nothing changed).
# Prints a markdown table on stdout.
#
#   bench/replication.sh                   # N=100,000 (BENCH_DOCS)
#   BENCH_DOCS=5000 bench/replication.sh   # a quick run
#   BENCH_SERVER=couchdb bench/replication.sh   # against Apache CouchDB 3.5.0 from
#                                           # SETTEE_COUCHDB_RELEASE (default ../shared/couchdb)
#   BENCH_SERVER=cluster bench/replication.sh   # against a 3-node cluster of it (couchdb.sh
#                                           # cluster): every client talks to node 1; the
#                                           # server CPU is the three nodes'
#   BENCH_CLIENTS="settee" BENCH_DOCS=1000000 ... # only these clients (settee pouchdb rouchdb)
#
# After the table, a second one gives the disk use of each client's local copy after its pull
# (and Settee's after `settee compact`) beside the server's own file for the same documents
# (`sizes.file` of `src`: one copy of each shard).
#
# Knobs: REPL_BATCH_SIZE (default: each client's own default batch size), BENCH_RAW_BATCH and
# BENCH_RAW_INFLIGHT (the raw client: 1,000 per request, 2 requests in flight), SETTEE_BIN (a
# settee binary to use instead of building one), CARGO_TARGET_DIR (RouchDB's client: default
# target/bench), BENCH_OUT (data and raw output: bench-out/replication, git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# From the repository root, so cargo reads .cargo/config.toml (the allocator settings).
cd "$root"
n=${BENCH_DOCS:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
out=${BENCH_OUT:-$root/bench-out/replication}
[ -x /usr/bin/time ] || { echo "replication.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
log() { echo "replication.sh: $*" >&2; }

export NODE_PATH=$("$root/scripts/node-deps.sh")
client="$root/bench/replication-client.js"

log "building RouchDB's client (release) into $CARGO_TARGET_DIR"
rouchdb_bin=
if cargo build --release --quiet --manifest-path "$root/bench/rouchdb-workload/Cargo.toml" --bin rouchdb-replicate; then
    rouchdb_bin=$CARGO_TARGET_DIR/release/rouchdb-replicate
else
    log "rouchdb-replicate does not build: RouchDB is skipped"
fi

# The settee CLI: SETTEE_BIN, or a release build of the workspace's `settee` binary into the
# same CARGO_TARGET_DIR. Skipped, with the reason in the table, if it does not build or has no
# `replicate` command.
settee_bin=${SETTEE_BIN:-}
settee_skip=
if [ -z "$settee_bin" ]; then
    log "building the settee CLI (release)"
    if (cd "$root" && cargo build --release --quiet --bin settee); then
        settee_bin=$CARGO_TARGET_DIR/release/settee
    else
        settee_skip="the settee CLI does not build"
    fi
fi
if [ -z "$settee_skip" ] && ! "$settee_bin" replicate --help >/dev/null 2>&1; then
    settee_skip="$settee_bin has no \`replicate\` command yet"
fi
[ -z "$settee_skip" ] || log "$settee_skip: Settee's line is skipped"

rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-server.XXXXXX")
server_kind=${BENCH_SERVER:-pouchdb-server}
case "$server_kind" in
couchdb)
    # Apache CouchDB 3.5.0 from the release folder (see scripts/test.sh).
    release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
    trap 'bash "$release/couchdb.sh" stop "$state"; rm -rf "$state"' EXIT
    started=$(bash "$release/couchdb.sh" start "$state")
    auth_url=${started%% *}
    server_pid=${started##* }
    creds=${auth_url#http://}
    creds=${creds%%@*}
    user=${creds%%:*}
    export SETTEE_PASSWORD=${creds#*:}
    url="http://${auth_url#*@}"
    ;;
pouchdb-server)
    trap '"$root/scripts/test-server.sh" stop "$state"; rm -rf "$state"' EXIT
    url=$("$root/scripts/test-server.sh" start "$state")
    server_pid=$(cat "$state/pid")
    # pouchdb-server crashes when a non-admin creates a database (scripts/test-server.sh), so
    # every client gets the admin's credentials when the server has an admin.
    auth_url=$url
    user=
    if [ -f "$state/password" ]; then
        user=$(cat "$state/user" 2>/dev/null || echo settee_admin)
        export SETTEE_PASSWORD=$(cat "$state/password")
        auth_url=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=u.quote(sys.argv[2], safe="") + ":" + u.quote(sys.argv[3], safe="") + "@" + p.netloc).geturl())' "$url" "$user" "$SETTEE_PASSWORD")
    fi
    ;;
cluster)
    # A 3-node Apache CouchDB cluster (3 copies of every document, 8 shards); the clients talk
    # to node 1, which asks the others for what it does not hold.
    release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
    trap 'bash "$release/couchdb.sh" stop "$state"; rm -rf "$state"' EXIT
    started=$(bash "$release/couchdb.sh" cluster "$state")
    auth_url=$(echo "$started" | head -1 | cut -d' ' -f1)
    server_pid=$(echo "$started" | cut -d' ' -f2 | tr '\n' ' ')
    creds=${auth_url#http://}
    creds=${creds%%@*}
    user=${creds%%:*}
    export SETTEE_PASSWORD=${creds#*:}
    url="http://${auth_url#*@}"
    ;;
*) echo "replication.sh: BENCH_SERVER is couchdb, cluster or pouchdb-server, not $server_kind" >&2; exit 2 ;;
esac
log "$server_kind at $url (admin: ${user:-none})"

clients=" ${BENCH_CLIENTS:-settee pouchdb rouchdb} "
wanted() { [[ $clients == *" $1 "* ]]; }
# The server's CPU ticks (user + system), summed over its processes (a cluster has three).
cpu_ticks() { local p t=0; for p in $server_pid; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo $t; }
# run NAME CMD...: runs CMD under time -v; stdout to NAME.out, time -v to NAME.time, and the
# server's CPU ticks used meanwhile to NAME.server.
run() {
    local name=$1 before
    shift
    before=$(cpu_ticks)
    if ! /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err"; then
        log "$name failed:"
        tail -20 "$out/$name.err" >&2
        echo $(( $(cpu_ticks) - before )) > "$out/$name.server"
        return 1
    fi
    echo $(( $(cpu_ticks) - before )) > "$out/$name.server"
}
count() { node "$client" count "$auth_url/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["doc_count"])'; }
check() { # name db: the db must hold n docs
    local c
    c=$(count "$2")
    if [ "$c" != "$n" ]; then log "$1: $2 holds $c docs, expected $n"; echo "$c" > "$out/$1.short"; fi
}

log "loading $n notes into $url/src with _bulk_docs (batches of 1,000)"
run load node "$client" load "$auth_url/src" "$n"
check load src

log "server limit: raw _changes + _bulk_get read of src, raw _bulk_docs new_edits=false write"
run raw node "$client" raw "$auth_url/src" "$auth_url/raw_write"
check raw raw_write
# Each written copy is dropped once checked: a million notes are ~1 GB per copy on the server.
drop() { curl -sf -X DELETE -u "$user:${SETTEE_PASSWORD:-}" "$url/$1" >/dev/null || true; }
drop raw_write

# client NAME PULL-CMD PUSH-CMD-PREFIX: pull src into a fresh local db, pull again (no-op),
# then push the local db into a fresh server db push_NAME and push again (no-op).
replicate_pair() {
    local name=$1 local_db=$2
    shift 2
    log "$name: pull"
    run "$name-pull" "$@" "$auth_url/src" "$local_db" || return 0
    du -sb "$local_db" | cut -f1 > "$out/$name.disk"
    log "$name: no-op pull"
    run "$name-repull" "$@" "$auth_url/src" "$local_db" || true
    log "$name: push"
    run "$name-push" "$@" "$local_db" "$auth_url/push_$name" || return 0
    check "$name-push" "push_$name"
    log "$name: no-op push"
    run "$name-repush" "$@" "$local_db" "$auth_url/push_$name" || true
    drop "push_$name"
}

if ! wanted settee; then
    echo "not in BENCH_CLIENTS" > "$out/settee.skip"
elif [ -z "$settee_skip" ]; then
    # The CLI takes the user in the URL and the password from SETTEE_PASSWORD (never argv).
    settee_url=$url
    [ -z "$user" ] || settee_url=${url/:\/\//://$user@}
    settee_replicate() { "$settee_bin" replicate --quiet --create-target \
        ${REPL_BATCH_SIZE:+--batch-size "$REPL_BATCH_SIZE"} "${1/$auth_url/$settee_url}" "${2/$auth_url/$settee_url}"; }
    export -f settee_replicate
    export settee_bin auth_url settee_url REPL_BATCH_SIZE
    replicate_pair settee "$out/settee-local" bash -c 'settee_replicate "$1" "$2"' settee_replicate
    if [ -d "$out/settee-local" ]; then
        log "settee: compact"
        run settee-compact "$settee_bin" compact --quiet "$out/settee-local" || true
        du -sb "$out/settee-local" | cut -f1 > "$out/settee.disk-compacted"
    fi
else
    echo "$settee_skip" > "$out/settee.skip"
fi
if wanted pouchdb; then
    replicate_pair pouchdb "$out/pouchdb-local" node "$client" pouchdb
else
    echo "not in BENCH_CLIENTS" > "$out/pouchdb.skip"
fi
if ! wanted rouchdb; then
    echo "not in BENCH_CLIENTS" > "$out/rouchdb.skip"
elif [ -n "$rouchdb_bin" ]; then
    curl -sf -X PUT -u "$user:${SETTEE_PASSWORD:-}" "$url/push_rouchdb" >/dev/null || true
    replicate_pair rouchdb "$out/rouchdb-local.redb" "$rouchdb_bin"
else
    echo "rouchdb-replicate does not build" > "$out/rouchdb.skip"
fi

# The server's own file for the same documents (one copy of each shard), for the disk table.
curl -sf -u "$user:${SETTEE_PASSWORD:-}" "$url/src" > "$out/src.info" || echo '{}' > "$out/src.info"
rm -rf "$out"/*-local*

python3 - "$out" "$n" "$(getconf CLK_TCK)" <<'PY'
import json, os, re, sys
out, n, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def timev(name):
    p = os.path.join(out, name + ".time")
    if not os.path.exists(p) or not os.path.exists(os.path.join(out, name + ".server")):
        return None
    s = open(p).read()
    if "Exit status: 0" not in s and "Command exited with non-zero status" in s:
        return None
    g = lambda pat: re.search(pat, s).group(1)
    w = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)").split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    server = int(open(os.path.join(out, name + ".server")).read()) / tck
    short = os.path.join(out, name + ".short")
    return {
        "wall": wall, "cpu": float(g(r"User time \(seconds\): ([\d.]+)")) + float(g(r"System time \(seconds\): ([\d.]+)")),
        "rss": int(g(r"Maximum resident set size \(kbytes\): (\d+)")) / 1024, "server": server,
        "short": open(short).read().strip() if os.path.exists(short) else None,
    }
raw = json.load(open(os.path.join(out, "raw.out")))
limit = {"pull": n / raw["read_seconds"], "push": n / raw["write_seconds"]}
load = json.load(open(os.path.join(out, "load.out")))
print(f"Server: {os.environ.get('BENCH_SERVER', 'pouchdb-server')}. "
      f"Source: {n:,} notes (~1 KB) in `src`, loaded with `_bulk_docs` (batches of 1,000, new_edits=true) "
      f"in {load['seconds']:.1f} s ({n / load['seconds']:,.0f} docs/s).\n")
print("| client | direction | wall | docs/s | of the server limit | vs PouchDB | client CPU (user+sys) | CPU vs PouchDB | peak RSS | server CPU | no-op re-run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| server limit (raw `_changes` + `_bulk_get`, {raw['batch']:,}/request, {raw['inflight']} in flight) | read | {raw['read_seconds']:.1f} s | {limit['pull']:,.0f} | 100% | | | | | | |")
print(f"| server limit (raw `_bulk_docs` new_edits=false, {raw['batch']:,}/request, {raw['inflight']} in flight) | write | {raw['write_seconds']:.1f} s | {limit['push']:,.0f} | 100% | | | | | | |")
rt = timev("raw")
rows = {}
for c in ("settee", "pouchdb", "rouchdb"):
    for d in ("pull", "push"):
        rows[(c, d)] = (timev(f"{c}-{d}"), timev(f"{c}-re{d}"))
names = {"settee": "Settee (`settee replicate`)", "pouchdb": "PouchDB 9 (leveldb)", "rouchdb": "RouchDB 0.5.1 (redb)"}
for c in ("settee", "pouchdb", "rouchdb"):
    skip = os.path.join(out, c + ".skip")
    if os.path.exists(skip):
        print(f"| {names[c]} | pull, push | not measured: {open(skip).read().strip()} | | | | | | | | |")
        continue
    for d in ("pull", "push"):
        r, again = rows[(c, d)]
        if r is None:
            print(f"| {names[c]} | {d} | failed (see {c}-{d}.err) | | | | | | | | |")
            continue
        p = rows[("pouchdb", d)][0]
        rate = n / r["wall"]
        vs = f"{rate / (n / p['wall']):.2f}x" if p and c != "pouchdb" else ""
        cpuvs = f"{r['cpu'] / p['cpu']:.2f}" if p and c != "pouchdb" and p["cpu"] else ""
        short = f" (target has {r['short']} docs!)" if r["short"] else ""
        re_ = f"{again['wall']:.2f} s" if again else "failed"
        print(f"| {names[c]} | {d} | {r['wall']:.1f} s{short} | {rate:,.0f} | {rate / limit[d]:.0%} | {vs} | {r['cpu']:.1f} s | {cpuvs} | {r['rss']:.0f} MB | {r['server']:.1f} s | {re_} |")

def size(name):
    p = os.path.join(out, name)
    return int(open(p).read().strip()) if os.path.exists(p) else None
info = json.load(open(os.path.join(out, "src.info")))
server_file = info.get("sizes", {}).get("file")
mb = lambda b: f"{b / 1e6:,.0f} MB"
print()
print("| copy of the same documents | on disk | vs the server's file |")
print("|---|---|---|")
if server_file:
    print(f"| server's `src` (`sizes.file`; `sizes.external` {mb(info['sizes'].get('external', 0))}) | {mb(server_file)} | 1.00 |")
for c, label in (("settee", "Settee store after the pull"), ("settee", "Settee store after `settee compact`"), ("pouchdb", "PouchDB 9 leveldb after the pull"), ("rouchdb", "RouchDB redb file after the pull")):
    b = size(f"{c}.disk-compacted" if "compact" in label else f"{c}.disk")
    if b is not None:
        print(f"| {label} | {mb(b)} | {b / server_file:.2f} |" if server_file else f"| {label} | {mb(b)} | |")
PY
