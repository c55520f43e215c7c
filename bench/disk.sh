#!/usr/bin/env bash
# Disk benchmark of issue 24: the size on disk of BENCH_DOCS (default 100,000) 1 KB notes
# (bench/notes.js's) in a Settee store, in CouchDB's own database file and in PouchDB's
# leveldb, then a markdown table on stdout.
#
#   source /work/servers/env.sh && bench/disk.sh          # against a running CouchDB
#   BENCH_DOCS=10000 bench/disk.sh                         # a quick run
#
# CouchDB: SETTEE_TEST_COUCHDB_URL / _USER / _PASSWORD (the test server's variables); the
# notes go into a database of their own (deleted at the end), loaded with _bulk_docs in
# batches of 1,000; its size is `GET /db` `sizes.file` (and `sizes.active`), after the load
# and after `POST /db/_compact`. PouchDB 9 (leveldb) pulls that database
# (`PouchDB.replicate`); its size is its directory's. Settee: with SETTEE_BIN (a `settee`
# CLI), `settee replicate` pulls the same database into a store; always, the release program
# `settee-store-disk` writes the same bodies with `bulk_docs` into another store. Each store
# is measured after the load and after `Database::compact`, with the live bytes of each key
# family (key + value) beside it. Without a CouchDB only the `bulk_docs` store is measured.
# Data and raw output go to BENCH_OUT (default bench-out/disk, git-ignored), deleted at the
# end unless BENCH_KEEP=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${BENCH_DOCS:-100000}
export BENCH_DOCS=$n
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
out=${BENCH_OUT:-$root/bench-out/disk}
log() { echo "disk.sh: $*" >&2; }

log "building settee-store-disk (release) into $CARGO_TARGET_DIR"
cargo build --release --quiet --manifest-path "$root/bench/store-workload/Cargo.toml" --bin disk
rm -rf "$out"
mkdir -p "$out"

log "settee (bulk_docs): $n notes"
"$CARGO_TARGET_DIR/release/disk" "$out/settee-bulk" > "$out/settee-bulk.jsonl"

url=${SETTEE_TEST_COUCHDB_URL:-}
if [ -n "$url" ]; then
    export NODE_PATH=$("$root/scripts/node-deps.sh")
    client="$root/bench/replication-client.js"
    auth_url=$url
    if [ -n "${SETTEE_TEST_COUCHDB_USER:-}" ]; then
        auth_url=$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(netloc=u.quote(sys.argv[2], safe="") + ":" + u.quote(sys.argv[3], safe="") + "@" + p.netloc).geturl())' \
            "$url" "$SETTEE_TEST_COUCHDB_USER" "${SETTEE_TEST_COUCHDB_PASSWORD:-}")
    fi
    db="disk_bench_$$_$n"
    curl_db() { curl -sf -u "${SETTEE_TEST_COUCHDB_USER:-}:${SETTEE_TEST_COUCHDB_PASSWORD:-}" "$@"; }
    trap 'curl_db -X DELETE "$url/$db" >/dev/null || true' EXIT
    log "couchdb: loading $n notes into $url/$db"
    node "$client" load "$auth_url/$db" "$n" > "$out/couchdb-load.out"
    curl_db "$url/$db" > "$out/couchdb-after-load.json"
    curl_db -X POST -H 'Content-Type: application/json' "$url/$db/_compact" > /dev/null
    # Compaction runs in the background; wait for it (a generous deadline, not a timing).
    for _ in $(seq 1 600); do
        curl_db "$url/$db" > "$out/couchdb-after-compact.json"
        python3 -c 'import json,sys; sys.exit(0 if not json.load(open(sys.argv[1]))["compact_running"] else 1)' \
            "$out/couchdb-after-compact.json" && break
        sleep 1
    done
    log "pouchdb: pulling $db into leveldb"
    node "$client" pouchdb "$auth_url/$db" "$out/pouchdb-leveldb" > "$out/pouchdb.out"
    du -sb "$out/pouchdb-leveldb" | cut -f1 > "$out/pouchdb.bytes"
    if [ -n "${SETTEE_BIN:-}" ]; then
        log "settee (replicate): pulling $db"
        settee_url=$url
        [ -z "${SETTEE_TEST_COUCHDB_USER:-}" ] || settee_url=${url/:\/\//://$SETTEE_TEST_COUCHDB_USER@}
        SETTEE_PASSWORD=${SETTEE_TEST_COUCHDB_PASSWORD:-} "$SETTEE_BIN" replicate --quiet \
            "$settee_url/$db" "$out/settee-pull" > "$out/settee-pull.out"
        DISK_ONLY_MEASURE=1 "$CARGO_TARGET_DIR/release/disk" "$out/settee-pull" > "$out/settee-pull.jsonl"
    fi
else
    log "SETTEE_TEST_COUCHDB_URL is not set: CouchDB and PouchDB are skipped"
fi

python3 - "$out" "$n" <<'PY'
import json, os, sys
out, n = sys.argv[1], int(sys.argv[2])
mb = lambda b: "n/a" if b is None else f"{b / 1e6:.1f} MB"
def store(name):
    p = os.path.join(out, f"{name}.jsonl")
    if not os.path.exists(p):
        return None
    rows = [json.loads(l) for l in open(p) if l.startswith("{")]
    one = lambda op: next((r for r in rows if r["op"] == op), None)
    fam = {r["kind"]: r for r in rows if r["op"] == "family"}
    return one("json"), one("after_load")["bytes"], one("after_compact")["bytes"], fam
def couch(which):
    p = os.path.join(out, f"couchdb-{which}.json")
    return json.load(open(p))["sizes"] if os.path.exists(p) else None
bulk, pull = store("settee-bulk"), store("settee-pull")
load, compacted = couch("after-load"), couch("after-compact")
pouch = os.path.join(out, "pouchdb.bytes")
pouch = int(open(pouch).read()) if os.path.exists(pouch) else None
print(f"{n:,} notes" + (f" ({mb(bulk[0]['bytes'])} of JSON as the store's bulk load serializes them)" if bulk and bulk[0] else "") + ".\n")
print("| database | after the load | after compaction | live data |")
print("|---|---|---|---|")
for label, s in (("Settee, `bulk_docs`", bulk), ("Settee, `settee replicate` from CouchDB", pull)):
    if s:
        live = sum(f["key_bytes"] + f["value_bytes"] for f in s[3].values())
        print(f"| {label} | {mb(s[1])} | {mb(s[2])} | {mb(live)} (keys + values) |")
if load:
    print(f"| CouchDB 3.5.0 (`sizes.file`) | {mb(load['file'])} | {mb(compacted['file'] if compacted else None)} | {mb(load.get('active'))} (`sizes.active`) |")
if pouch is not None:
    print(f"| PouchDB 9 (leveldb, pulled from CouchDB) | {mb(pouch)} | | |")
for label, s in (("bulk_docs", bulk), ("replicate", pull)):
    if s:
        print(f"\nSettee ({label}), live bytes per key family:\n")
        print("| family | keys | key bytes | value bytes | per key |")
        print("|---|---|---|---|---|")
        for k, f in sorted(s[3].items()):
            per = (f["key_bytes"] + f["value_bytes"]) / f["count"]
            print(f"| `{k}` | {f['count']:,} | {f['key_bytes']:,} | {f['value_bytes']:,} | {per:,.0f} B |")
PY
[ "${BENCH_KEEP:-}" = 1 ] || rm -rf "$out"/settee-bulk "$out"/settee-pull "$out"/pouchdb-leveldb
