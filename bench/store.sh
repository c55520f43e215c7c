#!/usr/bin/env bash
# Store benchmark of issue 3: the same note workload on Settee (settee-store), PouchDB 9
# (Node, leveldb adapter) and RouchDB (crates.io rouchdb, redb), one after another on this
# machine, BENCH_RUNS rounds (default 3; each round runs the three in turn), then a markdown
# table on stdout: the median of the rounds (min-max in brackets), ratios of the medians, and
# peak memory (/usr/bin/time -v; the highest of the rounds).
#
#   bench/store.sh                      # 100,000 notes (BENCH_DOCS), 10,000 puts, 100,000 gets
#   BENCH_DOCS=10000 BENCH_GETS=10000 BENCH_RUNS=1 bench/store.sh   # a quick run
#
# Other knobs: BENCH_PUTS (10,000), BENCH_PUTS_IMMEDIATE (Settee's fsync-per-put run, 1,000),
# BENCH_BATCH (1,000). Builds go to CARGO_TARGET_DIR (default target/bench, apart from the
# workspace's); data and raw output to BENCH_OUT (default bench-out/store, git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# From the repository root, so cargo reads .cargo/config.toml (the allocator settings).
cd "$root"
export BENCH_DOCS=${BENCH_DOCS:-100000} BENCH_PUTS=${BENCH_PUTS:-10000}
export BENCH_PUTS_IMMEDIATE=${BENCH_PUTS_IMMEDIATE:-1000} BENCH_GETS=${BENCH_GETS:-100000}
export BENCH_BATCH=${BENCH_BATCH:-1000}
runs=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
out=${BENCH_OUT:-$root/bench-out/store}
[ -x /usr/bin/time ] || { echo "store.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }

echo "store.sh: building the Rust workloads (release) into $CARGO_TARGET_DIR" >&2
cargo build --release --quiet --manifest-path "$root/bench/store-workload/Cargo.toml"
rouchdb_built=yes
if ! cargo build --release --quiet --manifest-path "$root/bench/rouchdb-workload/Cargo.toml"; then
    echo "store.sh: rouchdb-workload does not build; RouchDB's column will be empty" >&2
    rouchdb_built=no
fi
export NODE_PATH=$("$root/scripts/node-deps.sh")

rm -rf "$out"
mkdir -p "$out"
run() { # name round command...: JSON lines to $out/name.round.jsonl, time -v to .time
    local name=$1 round=$2
    shift 2
    echo "store.sh: round $round/$runs: $name ($BENCH_DOCS docs)" >&2
    if ! /usr/bin/time -v -o "$out/$name.$round.time" "$@" "$out/$name-data" > "$out/$name.$round.jsonl"; then
        echo "store.sh: $name failed; its output:" >&2
        cat "$out/$name.$round.jsonl" >&2
        rm -f "$out/$name.$round.time"
        rm -rf "$out/$name-data"
        return 1
    fi
    rm -rf "$out/$name-data"
}
for round in $(seq 1 "$runs"); do
    run settee "$round" "$CARGO_TARGET_DIR/release/settee-store-workload"
    run pouchdb "$round" node "$root/bench/pouchdb-workload.js"
    if [ "$rouchdb_built" = yes ]; then
        run rouchdb "$round" "$CARGO_TARGET_DIR/release/rouchdb-workload" || true
    fi
done

python3 - "$out" "$runs" <<'PY'
import json, os, re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def load(name):
    """{(op, durability): [record per round]}, peak RSS after bulk, whole-run peak RSS, CPU."""
    rows, bulk_peak, peak, cpu = {}, [], [], []
    for k in range(1, runs + 1):
        p, t = os.path.join(out, f"{name}.{k}.jsonl"), os.path.join(out, f"{name}.{k}.time")
        if not (os.path.exists(p) and os.path.exists(t)):
            continue
        for line in open(p):
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "ops_per_sec" in r:
                rows.setdefault((r["op"], r["durability"]), []).append(r)
            elif r.get("op") == "peak_rss_after_bulk":
                bulk_peak.append(r["kib"] / 1024)
        s = open(t).read()
        peak.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1)) / 1024)
        cpu.append(float(re.search(r"User time \(seconds\): ([\d.]+)", s).group(1))
                   + float(re.search(r"System time \(seconds\): ([\d.]+)", s).group(1)))
    return rows, bulk_peak, peak, cpu
S, P, R = load("settee"), load("pouchdb"), load("rouchdb")
def pick(rows, key):
    rs = rows.get(key)
    if not rs:
        return None
    rates = [r["ops_per_sec"] for r in rs]
    return {"med": statistics.median(rates), "lo": min(rates), "hi": max(rates),
            "count": rs[0]["count"], "durability": rs[0]["durability"], "n": len(rs)}
def k(x):
    return f"{x / 1000:.0f}k" if x >= 10000 else f"{x / 1000:.1f}k"
def cell(r):
    if r is None:
        return "n/a"
    d = "" if r["durability"] == "-" else f" **{r['durability']}**"
    rng = f" [{k(r['lo'])}-{k(r['hi'])}]" if r["n"] > 1 else ""
    return f"{r['med']:,.0f}/s{rng}{d}, {r['count']:,} ops"
def ratio(a, b):
    return "n/a" if a is None or b is None else f"{a['med'] / b['med']:.2f}x"
lines = [
    ("`bulk_docs`, batches of 1,000", ("bulk_docs", "immediate"), ("bulk_docs", "no fsync"), ("bulk_docs", "immediate")),
    ("`bulk_docs`, batches of 1,000", ("bulk_docs", "relaxed"), ("bulk_docs", "no fsync"), ("bulk_docs", "immediate")),
    ("single `put`", ("put", "relaxed"), ("put", "no fsync"), ("put", "immediate")),
    ("single `put`", ("put", "immediate"), ("put", "no fsync"), ("put", "immediate")),
    ("`get` by id (random order)", ("get", "-"), ("get", "-"), ("get", "-")),
    ("full `_changes` scan (one call; rows/s)", ("changes", "-"), ("changes", "-"), ("changes", "-")),
]
print(f"Median of {runs} round(s), [min-max] of the rounds; durability in bold.\n")
print("| operation | Settee | PouchDB 9 (leveldb) | RouchDB 0.5.1 (redb) | Settee / PouchDB | Settee / RouchDB |")
print("|---|---|---|---|---|---|")
for label, ks, kp, kr in lines:
    s, p, r = pick(S[0], ks), pick(P[0], kp), pick(R[0], kr)
    print(f"| {label} | {cell(s)} | {cell(p)} | {cell(r)} | {ratio(s, p)} | {ratio(s, r)} |")
mb = lambda xs: "n/a" if not xs else f"{max(xs):.0f} MB"
sec = lambda xs: "n/a" if not xs else f"{statistics.median(xs):.1f} s"
print(f"| peak RSS right after the bulk load (VmHWM, highest round) | {mb(S[1])} | {mb(P[1])} | {mb(R[1])} | | |")
print(f"| peak RSS of the whole run (`/usr/bin/time -v`, highest round) | {mb(S[2])} | {mb(P[2])} | {mb(R[2])} | | |")
print(f"| CPU time of the whole run (user + sys, median) | {sec(S[3])} | {sec(P[3])} | {sec(R[3])} | | |")
PY
