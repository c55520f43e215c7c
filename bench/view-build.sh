#!/usr/bin/env bash
# Benchmark of issues 20 and 24: `settee serve`'s views over N documents. Loads N documents,
# times the first query of a view (which builds its on-disk index: every document mapped),
# then ROUNDS times writes one document and times the next query (which maps only that
# document, issue 24's "query after one write"), and finally times a query after a restart
# of the server (the index is read from disk, nothing is mapped). Prints one line per
# measurement and the median of the rounds, in seconds.
#
#   bench/view-build.sh                          # N=10,000 (BENCH_DOCS), 5 rounds
#   BENCH_DOCS=100000 BENCH_ROUNDS=9 SETTEE_BIN=target/release/settee bench/view-build.sh
#
# Needs curl and python3, and a settee binary (SETTEE_BIN, default target/debug/settee).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${BENCH_DOCS:-10000}
rounds=${BENCH_ROUNDS:-5}
bin=${SETTEE_BIN:-$root/target/debug/settee}
dir=$(mktemp -d "${TMPDIR:-/tmp}/view-bench.XXXXXX")
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
pid=
start_server() {
    SETTEE_PASSWORD=bench "$bin" serve --data-dir "$dir/data" --bind "127.0.0.1:$port" --admin admin >>"$dir/out" 2>>"$dir/err" &
    pid=$!
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/_up" >/dev/null && return; sleep 0.1; done
    echo "the server did not start: $(cat "$dir/err")" >&2
    exit 1
}
stop_server() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap 'stop_server; rm -rf "$dir"' EXIT
start_server
url="http://admin:bench@127.0.0.1:$port/bench"
curl -sf -X PUT "$url" >/dev/null
# Loaded in batches of 10,000 (a request body stays well under the server's limit).
for first in $(seq 0 10000 $((n - 1))); do
    python3 - "$first" "$n" >"$dir/docs.json" <<'PY'
import json, sys
first, n = int(sys.argv[1]), int(sys.argv[2])
docs = [{"_id": "doc%06d" % i, "type": ["note", "task", "tag"][i % 3], "n": i,
         "title": "note number %d" % i, "body": "x" * 200, "tags": ["a", "b", str(i % 7)]}
        for i in range(first, min(first + 10000, n))]
print(json.dumps({"docs": docs}))
PY
    curl -sf -X POST "$url/_bulk_docs" -H 'Content-Type: application/json' --data-binary @"$dir/docs.json" >/dev/null
done
curl -sf -X PUT "$url/_design/b" -H 'Content-Type: application/json' \
    -d '{"views":{"by_type":{"map":"function (doc) { if (doc.type) emit([doc.type, doc.n], doc.title.length + doc.tags.length); }"}}}' >/dev/null
query() {
    local t rows
    t=$(curl -sf -o "$dir/view.json" -w '%{time_total}' "$url/_design/b/_view/by_type?limit=1")
    rows=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["total_rows"])' "$dir/view.json")
    echo "$t $rows"
}
read -r t rows < <(query)
echo "first build: ${t}s ($rows rows)"
times=()
for r in $(seq "$rounds"); do
    curl -sf -X PUT "$url/round$r" -H 'Content-Type: application/json' \
        -d "{\"type\": \"note\", \"n\": -$r, \"title\": \"round\", \"tags\": []}" >/dev/null
    read -r t rows < <(query)
    echo "after one write, round $r: ${t}s ($rows rows)"
    times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "after one write, median: " a[int((NR+1)/2)] "s"}'
stop_server
start_server
read -r t rows < <(query)
echo "after a restart: ${t}s ($rows rows)"
