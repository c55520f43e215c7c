#!/usr/bin/env bash
# Coming back after a long outage (issue 19): a live sync with Apache CouchDB through a TCP
# proxy; the proxy refuses connections for OUTAGE seconds (default 300, once both directions'
# backoff has grown past 5 s), then lets them through again. Prints the time from the
# server's return to each direction's next written batch (the replicator probes the server
# about once a second while it waits after a connection failure, so this should stay under
# 2 s however long the outage). Not part of CI; record results in docs/benchmarks.md. A debug
# build: the time measured is waiting and one round trip, not CPU.
#
#   source /work/servers/env.sh   # or any SETTEE_TEST_COUCHDB_URL/_USER/_PASSWORD
#   bench/coming-back.sh [OUTAGE_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SETTEE_TEST_COUCHDB_URL:?set SETTEE_TEST_COUCHDB_URL (and _USER, _PASSWORD) to an Apache CouchDB}"
export SETTEE_COMING_BACK_OUTAGE_SECS="${1:-300}"
cargo test --test coming_back -- --nocapture --exact \
    issue_19_live_sync_comes_back_by_probe_not_by_backoff 2>&1 | grep -E '^coming-back:|test result'
