#!/usr/bin/env bash
# Benchmark of issue 20: how long `settee serve` takes to build a view (map every
# document) over N documents, run ROUNDS times (a write between rounds makes each query
# build the view again). Prints one line per round and the median, in seconds.
#
#   bench/view-build.sh                          # N=10,000 (BENCH_DOCS), 5 rounds
#   SETTEE_BIN=target/release/settee bench/view-build.sh
#
# Needs curl and python3, and a settee binary (SETTEE_BIN, default target/debug/settee).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${BENCH_DOCS:-10000}
rounds=${BENCH_ROUNDS:-5}
bin=${SETTEE_BIN:-$root/target/debug/settee}
dir=$(mktemp -d "${TMPDIR:-/tmp}/view-bench.XXXXXX")
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SETTEE_PASSWORD=bench "$bin" serve --data-dir "$dir/data" --bind "127.0.0.1:$port" --admin admin >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
url="http://admin:bench@127.0.0.1:$port/bench"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/_up" >/dev/null && break; sleep 0.1; done
curl -sf -X PUT "$url" >/dev/null
python3 - "$n" >"$dir/docs.json" <<'PY'
import json, sys
n = int(sys.argv[1])
docs = [{"_id": "doc%06d" % i, "type": ["note", "task", "tag"][i % 3], "n": i,
         "title": "note number %d" % i, "body": "x" * 200, "tags": ["a", "b", str(i % 7)]}
        for i in range(n)]
print(json.dumps({"docs": docs}))
PY
curl -sf -X POST "$url/_bulk_docs" -H 'Content-Type: application/json' --data-binary @"$dir/docs.json" >/dev/null
curl -sf -X PUT "$url/_design/b" -H 'Content-Type: application/json' \
    -d '{"views":{"by_type":{"map":"function (doc) { if (doc.type) emit([doc.type, doc.n], doc.title.length + doc.tags.length); }"}}}' >/dev/null
times=()
for r in $(seq "$rounds"); do
    curl -sf -X PUT "$url/round$r" -d '{}' >/dev/null
    t=$(curl -sf -o "$dir/view.json" -w '%{time_total}' "$url/_design/b/_view/by_type?limit=1")
    rows=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["total_rows"])' "$dir/view.json")
    echo "round $r: ${t}s ($rows rows)"
    times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median: " a[int((NR+1)/2)] "s"}'
