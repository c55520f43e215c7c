#!/usr/bin/env bash
# Sync-state benchmark of issue 11: what keeping each document's sync state costs. Builds the
# settee CLI and the store workload twice, from BENCH_BASE (default 2e98465, the last commit
# before issue 11) and from this tree, then runs both in alternating order in the same run on
# the same machine and server: a pull of N 1 KB notes into a fresh store, a push of that store
# into a fresh server database, and the store workload (bulk loads, puts, gets). Then it times
# `settee status` on the pulled store (N notes) after 10 local edits, offline (the server
# stopped) and online. Prints a markdown table on stdout; the raw output stays in BENCH_OUT.
#
#   bench/sync-state.sh                                   # N=100,000 (BENCH_DOCS), 3 rounds
#   BENCH_DOCS=10000 BENCH_RUNS=1 bench/sync-state.sh     # a quick run
#
# Knobs: BENCH_BASE, BENCH_RUNS (rounds, default 3), BENCH_OUT (default bench-out/sync-state,
# git-ignored). Builds go to target/bench (this tree) and target/bench-base (the base).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
base=${BENCH_BASE:-2e98465}
n=${BENCH_DOCS:-100000}
runs=${BENCH_RUNS:-3}
out=${BENCH_OUT:-$root/bench-out/sync-state}
[ -x /usr/bin/time ] || { echo "sync-state.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
log() { echo "sync-state.sh: $*" >&2; }

# build NAME SRC TARGET: the CLI and the store workload of the tree at SRC.
build() {
    log "building $1 (release) into $3"
    (cd "$2" && CARGO_TARGET_DIR=$3 cargo build --release --quiet --bin settee)
    (cd "$2" && CARGO_TARGET_DIR=$3 cargo build --release --quiet \
        --manifest-path bench/store-workload/Cargo.toml)
}
src_base=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-base.XXXXXX")
git -C "$root" archive "$base" | tar -x -C "$src_base"
build "the base ($base)" "$src_base" "$root/target/bench-base"
rm -rf "$src_base"
build "this tree" "$root" "$root/target/bench"
declare -A bin=([base]=$root/target/bench-base/release/settee [new]=$root/target/bench/release/settee)
declare -A store=([base]=$root/target/bench-base/release/settee-store-workload [new]=$root/target/bench/release/settee-store-workload)

export NODE_PATH=$("$root/scripts/node-deps.sh")
client="$root/bench/replication-client.js"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-server.XXXXXX")
stop_server() { "$root/scripts/test-server.sh" stop "$state" >/dev/null 2>&1 || true; }
trap 'stop_server; rm -rf "$state"' EXIT
url=$("$root/scripts/test-server.sh" start "$state")
user=$(cat "$state/user" 2>/dev/null || echo settee_admin)
export SETTEE_PASSWORD=$(cat "$state/password")
auth_url=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=u.quote(sys.argv[2], safe="") + ":" + u.quote(sys.argv[3], safe="") + "@" + p.netloc).geturl())' "$url" "$user" "$SETTEE_PASSWORD")
cli_url=${url/:\/\//://$user@}
log "server at $url; loading $n notes into src"
node "$client" load "$auth_url/src" "$n" > "$out/load.out"

run() { # NAME CMD...: CMD under time -v, output in $out/NAME.*
    local name=$1
    shift
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err" \
        || { log "$name failed:"; tail -5 "$out/$name.err" >&2; return 1; }
}
for round in $(seq 1 "$runs"); do
    # Alternate which build goes first, so neither always runs on a warmer server.
    order="base new"
    [ $((round % 2)) = 0 ] && order="new base"
    for which in $order; do
        log "round $round/$runs: $which: pull, push, store workload"
        local_db=$out/$which-$round-local
        run "$which-pull-$round" "${bin[$which]}" replicate --quiet "$cli_url/src" "$local_db"
        run "$which-push-$round" "${bin[$which]}" replicate --quiet --create-target \
            "$local_db" "$cli_url/push_${which}_$round"
        [ "$round" = "$runs" ] || rm -rf "$local_db"
        rm -rf "$out/store-data"
        BENCH_DOCS=$n run "$which-store-$round" "${store[$which]}" "$out/store-data"
        rm -rf "$out/store-data"
    done
done

# `settee status` on the last round's pulled store (this tree's), 10 local edits later.
status_db=$out/new-$runs-local
for i in $(seq 1 10); do
    "${bin[new]}" put "$status_db" "{\"_id\": \"edited-offline-$i\"}" > /dev/null
done
time_status() { # NAME ARGS...: the median of 15 runs, in ms
    python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
name, args = sys.argv[1], sys.argv[2:]
times = []
for _ in range(15):
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    times.append((time.perf_counter() - t) * 1000)
print(f"{name} {statistics.median(times):.1f} {out.stdout.strip()}")
PY
}
time_status online "${bin[new]}" status "$status_db" "$cli_url/src" > "$out/status.out"
time_status online-docs "${bin[new]}" status --docs "$status_db" "$cli_url/src" | head -1 >> "$out/status.out"
stop_server
time_status offline "${bin[new]}" status "$status_db" "$cli_url/src" >> "$out/status.out"
du -sh "$status_db" >&2 || true
rm -rf "$out"/*-local

python3 - "$out" "$n" "$runs" <<'PY'
import json, os, re, statistics, sys
out, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def timev(name):
    s = open(os.path.join(out, name + ".time")).read()
    g = lambda pat: re.search(pat, s).group(1)
    w = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)").split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    cpu = float(g(r"User time \(seconds\): ([\d.]+)")) + float(g(r"System time \(seconds\): ([\d.]+)"))
    return wall, cpu
def med(xs):
    return statistics.median(xs), min(xs), max(xs)
print(f"{n:,} notes, {runs} rounds (median, min-max), base = the commit before issue 11, new = this tree.\n")
print("| operation | base | new | new / base |")
print("|---|---|---|---|")
for op in ("pull", "push"):
    for what, idx, unit in (("wall", 0, "s"), ("client CPU", 1, "s")):
        vals = {w: med([timev(f"{w}-{op}-{r}")[idx] for r in range(1, runs + 1)]) for w in ("base", "new")}
        b, nw = vals["base"], vals["new"]
        print(f"| {op}, {what} | {b[0]:.1f} {unit} ({b[1]:.1f}-{b[2]:.1f}) | {nw[0]:.1f} {unit} ({nw[1]:.1f}-{nw[2]:.1f}) | {nw[0] / b[0]:.2f} |")
def store_ops(which, r):
    ops = {}
    for line in open(os.path.join(out, f"{which}-store-{r}.out")):
        d = json.loads(line)
        if "ops_per_sec" in d:
            ops[(d["op"], d.get("durability", "-"))] = d["ops_per_sec"]
    return ops
keys = sorted(store_ops("base", 1).keys())
for k in keys:
    vals = {w: med([store_ops(w, r)[k] for r in range(1, runs + 1)]) for w in ("base", "new")}
    b, nw = vals["base"], vals["new"]
    print(f"| store {k[0]} ({k[1]}), per s | {b[0]:,.0f} ({b[1]:,.0f}-{b[2]:,.0f}) | {nw[0]:,.0f} ({nw[1]:,.0f}-{nw[2]:,.0f}) | {nw[0] / b[0]:.2f} |")
print()
for line in open(os.path.join(out, "status.out")):
    name, ms, rest = line.split(" ", 2)
    print(f"- `settee status` {name}: {ms} ms (median of 15, process start included): `{rest.strip()[:160]}`")
PY
