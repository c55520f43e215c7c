#!/usr/bin/env bash
# Mango benchmark of issue 12: the note workload with notebooks on Settee (settee-store,
# bench/find-workload) and PouchDB 9 with pouchdb-find (leveldb, bench/pouchdb-find-workload.js),
# BENCH_RUNS rounds (default 3), then a markdown table of the medians (min-max in brackets).
#
#   bench/find.sh                          # 100,000 notes (BENCH_DOCS), 2,000 Settee queries
#   BENCH_DOCS=20000 BENCH_RUNS=1 bench/find.sh       # a quick run
#
# BENCH_QUERIES (2,000) is Settee's query count, BENCH_POUCHDB_QUERIES (100) PouchDB's: each
# of its queries reads a whole notebook. Builds go to CARGO_TARGET_DIR (default target/bench);
# data and raw output to BENCH_OUT (default bench-out/find, git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export BENCH_DOCS=${BENCH_DOCS:-100000} BENCH_QUERIES=${BENCH_QUERIES:-2000}
export BENCH_POUCHDB_QUERIES=${BENCH_POUCHDB_QUERIES:-100}
runs=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
out=${BENCH_OUT:-$root/bench-out/find}

echo "find.sh: building bench/find-workload (release) into $CARGO_TARGET_DIR" >&2
cargo build --release --quiet --manifest-path "$root/bench/find-workload/Cargo.toml"
export NODE_PATH=$("$root/scripts/node-deps.sh")

rm -rf "$out"
mkdir -p "$out"
for round in $(seq 1 "$runs"); do
    echo "find.sh: round $round/$runs: settee ($BENCH_DOCS docs)" >&2
    "$CARGO_TARGET_DIR/release/settee-find-workload" "$out/settee-data" > "$out/settee.$round.jsonl"
    rm -rf "$out/settee-data"
    echo "find.sh: round $round/$runs: pouchdb ($BENCH_DOCS docs)" >&2
    node "$root/bench/pouchdb-find-workload.js" "$out/pouchdb-data" > "$out/pouchdb.$round.jsonl"
    rm -rf "$out/pouchdb-data"
done

python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for impl in ("settee", "pouchdb"):
    for r in range(1, runs + 1):
        for line in open(f"{out}/{impl}.{r}.jsonl"):
            d = json.loads(line)
            key = (impl, d["op"], d.get("indexes"))
            rows.setdefault(key, []).append(d)

def med(key, field):
    vals = [d[field] for d in rows.get(key, []) if field in d]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None

def fmt(m, unit, digits=0):
    if m is None:
        return "-"
    return f"{m[0]:,.{digits}f}{unit} [{m[1]:,.{digits}f}-{m[2]:,.{digits}f}]"

plain = med(("settee", "bulk_docs", 0), "ops_per_sec")
two = med(("settee", "bulk_docs", 2), "ops_per_sec")
plain_cpu = med(("settee", "bulk_docs", 0), "cpu_seconds")
two_cpu = med(("settee", "bulk_docs", 2), "cpu_seconds")
build = med(("settee", "build_index", None), "seconds")
pbuild = med(("pouchdb", "build_index", None), "seconds")
p50 = med(("settee", "find", None), "p50_ms")
pp50 = med(("pouchdb", "find", None), "p50_ms")
print(f"Median of {runs} round(s), [min-max] of the rounds.\n")
print("| measure | Settee | PouchDB 9 + pouchdb-find (leveldb) |")
print("|---|---|---|")
print(f"| `bulk_docs`, batches of 1,000, no index | {fmt(plain, '/s')} | {fmt(med(('pouchdb', 'bulk_docs', 0), 'ops_per_sec'), '/s')} |")
print(f"| `bulk_docs`, batches of 1,000, two indexes | {fmt(two, '/s')} | - |")
print(f"| CPU time of those loads (no index / two) | {fmt(plain_cpu, ' s', 2)} / {fmt(two_cpu, ' s', 2)} | - |")
print(f"| build `[notebook, updated_at]` | {fmt(build, ' s', 2)} | {fmt(pbuild, ' s', 2)} |")
for f in ("p50_ms", "p90_ms", "p99_ms"):
    print(f"| `find` notebook = X, sort `updated_at` desc, limit 20: {f[:3]} | {fmt(med(('settee', 'find', None), f), ' ms', 3)} | {fmt(med(('pouchdb', 'find', None), f), ' ms', 1)} |")
print()
print("| target | result | met? |")
print("|---|---|---|")
print(f"| `find` p50 < 1 ms | {p50[0]:.3f} ms | {'yes' if p50[0] < 1 else 'no'} |")
print(f"| `find` at least 20x pouchdb-find | {pp50[0] / p50[0]:,.0f}x (p50) | {'yes' if pp50[0] / p50[0] >= 20 else 'no'} |")
print(f"| build over {json.loads(open(f'{out}/settee.1.jsonl').readline())['count']:,} notes < 3 s | {build[0]:.2f} s | {'yes' if build[0] < 3 else 'no'} |")
print(f"| bulk writes with two indexes >= 70% of without | {100 * two[0] / plain[0]:.0f}% (by CPU time {100 * plain_cpu[0] / two_cpu[0]:.0f}%) | {'yes' if two[0] / plain[0] >= 0.7 else 'no'} |")
PY
