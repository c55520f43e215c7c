#!/usr/bin/env bash
# What issue 19's checks cost: a push's writes confirmed with `_revs_diff`, a `_revs_diff`
# that leaves out revisions asked again, an empty target's sync state reset, failed pulls and
# refusals offered again. Builds the settee CLI from BENCH_BASE (default 2e563e0, the commit
# before issue 19) and from this tree, starts Apache CouchDB 3.5.0 (SETTEE_COUCHDB_RELEASE,
# default ../shared/couchdb), loads N 1 KB notes, then runs both builds in alternating order,
# each round: a pull of the notes into a fresh store, a push of that store into a fresh
# database, a no-op push to it, and a push of 200 new documents to it (which asks `_revs_diff`).
# Prints a markdown table (median, min-max of wall time and client CPU) on stdout.
#
#   bench/trust.sh                                  # N=20,000 (BENCH_DOCS), 3 rounds
#   BENCH_DOCS=5000 BENCH_RUNS=1 bench/trust.sh     # a quick run
#
# Knobs: BENCH_BASE, BENCH_RUNS, BASE_BIN / NEW_BIN (binaries to use instead of building),
# BENCH_OUT (default bench-out/trust, git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
base=${BENCH_BASE:-2e563e0}
n=${BENCH_DOCS:-20000}
runs=${BENCH_RUNS:-3}
out=${BENCH_OUT:-$root/bench-out/trust}
[ -x /usr/bin/time ] || { echo "trust.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
log() { echo "trust.sh: $*" >&2; }

if [ -z "${BASE_BIN:-}" ]; then
    src_base=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-base.XXXXXX")
    git -C "$root" archive "$base" | tar -x -C "$src_base"
    log "building the base ($base, release)"
    (cd "$src_base" && CARGO_TARGET_DIR=$root/target/bench-base cargo build --release --quiet --bin settee)
    rm -rf "$src_base"
    BASE_BIN=$root/target/bench-base/release/settee
fi
if [ -z "${NEW_BIN:-}" ]; then
    log "building this tree (release)"
    CARGO_TARGET_DIR=$root/target/bench cargo build --release --quiet --bin settee
    NEW_BIN=$root/target/bench/release/settee
fi
declare -A bin=([base]=$BASE_BIN [new]=$NEW_BIN)

export NODE_PATH=$("$root/scripts/node-deps.sh")
client="$root/bench/replication-client.js"
rm -rf "$out"
mkdir -p "$out"
release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
state=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-couch.XXXXXX")
trap 'bash "$release/couchdb.sh" stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
started=$(bash "$release/couchdb.sh" start "$state")
auth_url=${started%% *}
creds=${auth_url#http://}
creds=${creds%%@*}
user=${creds%%:*}
export SETTEE_PASSWORD=${creds#*:}
url="http://${auth_url#*@}"
cli_url=${url/:\/\//://$user@}
log "CouchDB at $url; loading $n notes into src"
node "$client" load "$auth_url/src" "$n" > "$out/load.out"

run() { # NAME CMD...: CMD under time -v, output in $out/NAME.*
    local name=$1
    shift
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err" \
        || { log "$name failed:"; tail -5 "$out/$name.err" >&2; return 1; }
}
for round in $(seq 1 "$runs"); do
    order="base new"
    [ $((round % 2)) = 0 ] && order="new base"
    for which in $order; do
        log "round $round/$runs: $which"
        local_db=$out/$which-$round-local
        target="$cli_url/push_${which}_$round"
        run "$which-pull-$round" "${bin[$which]}" replicate --quiet "$cli_url/src" "$local_db"
        run "$which-push-$round" "${bin[$which]}" replicate --quiet --create-target "$local_db" "$target"
        run "$which-repush-$round" "${bin[$which]}" replicate --quiet "$local_db" "$target"
        # 200 new documents: a push to a database that is not empty asks `_revs_diff`.
        for i in $(seq 1 200); do
            "${bin[$which]}" put "$local_db" "{\"_id\": \"edit-$i\", \"n\": $i}" > /dev/null
        done
        run "$which-editpush-$round" "${bin[$which]}" replicate --quiet "$local_db" "$target"
        rm -rf "$local_db"
    done
done

python3 - "$out" "$n" "$runs" "$base" <<'PY'
import os, re, statistics, sys
out, n, runs, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def timev(name):
    s = open(os.path.join(out, name + ".time")).read()
    g = lambda pat: re.search(pat, s).group(1)
    w = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)").split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    cpu = float(g(r"User time \(seconds\): ([\d.]+)")) + float(g(r"System time \(seconds\): ([\d.]+)"))
    return wall, cpu
def med(xs):
    return statistics.median(xs), min(xs), max(xs)
print(f"Apache CouchDB 3.5.0, {n:,} notes, {runs} rounds (median, min-max); base = {base}, new = this tree.\n")
print("| operation | | base | new | new / base |")
print("|---|---|---|---|---|")
ops = (("pull", "pull"), ("push", "push to a new database"), ("repush", "no-op push"),
       ("editpush", "push of 200 new documents"))
for op, label in ops:
    for what, idx in (("wall", 0), ("client CPU", 1)):
        vals = {w: med([timev(f"{w}-{op}-{r}")[idx] for r in range(1, runs + 1)]) for w in ("base", "new")}
        b, nw = vals["base"], vals["new"]
        fmt = lambda v: f"{v[0]:.2f} s ({v[1]:.2f}-{v[2]:.2f})"
        print(f"| {label} | {what} | {fmt(b)} | {fmt(nw)} | {nw[0] / b[0]:.2f} |")
PY
