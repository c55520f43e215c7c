#!/usr/bin/env bash
# Two builds of the settee CLI, side by side on one server in one run: pull N notes from
# Apache CouchDB 3.5.0 into a new local store, then push that store to a new database, each
# timed as its own process, alternating the builds for REPS rounds. For a change that must
# not change speed (issue 21's redesign): docs/benchmarks.md records the result. Every push
# target must end with all N documents.
#
#   bench/before-after.sh BEFORE_BIN AFTER_BIN     # N=BENCH_DOCS (default 20,000), REPS (3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
before=${1:?usage: before-after.sh BEFORE_BIN AFTER_BIN}
after=${2:?usage: before-after.sh BEFORE_BIN AFTER_BIN}
n=${BENCH_DOCS:-20000}
reps=${REPS:-3}
release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
export NODE_PATH=$("$root/scripts/node-deps.sh")
state=$(mktemp -d "${TMPDIR:-/tmp}/settee-before-after.XXXXXX")
trap 'bash "$release/couchdb.sh" stop "$state/couch" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
started=$(bash "$release/couchdb.sh" start "$state/couch")
auth_url=${started%% *}
creds=${auth_url#http://}
creds=${creds%%@*}
export SETTEE_PASSWORD=${creds#*:}
url="http://${creds%%:*}@${auth_url#*@}"
node "$root/bench/replication-client.js" load "$auth_url/src" "$n" >/dev/null
echo "| round | build | pull wall | push wall |"
echo "|---|---|---|---|"
for r in $(seq 1 "$reps"); do
    for which in before after; do
        bin=$before
        [ "$which" = after ] && bin=$after
        store="$state/$which-$r"
        t0=$(date +%s.%N)
        "$bin" replicate "$url/src" "$store" >/dev/null 2>&1
        t1=$(date +%s.%N)
        "$bin" replicate "$store" "$url/push-$which-$r" --create-target >/dev/null 2>&1
        t2=$(date +%s.%N)
        pushed=$(curl -fsS "$auth_url/push-$which-$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["doc_count"])')
        [ "$pushed" = "$n" ] || { echo "before-after.sh: $which pushed $pushed of $n documents" >&2; exit 1; }
        printf '| %s | %s | %.2f s | %.2f s |\n' "$r" "$which" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
    done
done
