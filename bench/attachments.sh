#!/usr/bin/env bash
# Attachments benchmark of issue 23, against Apache CouchDB 3.5.0 (SETTEE_COUCHDB_RELEASE,
# default ../shared/couchdb), every client a separate process under /usr/bin/time -v (wall
# time, client CPU, peak RSS):
#
# 1. One big attachment (BENCH_BIG_MB, default 200 MB of random bytes): `curl` PUTs it and
#    GETs it (the bytes moved as fast as a plain HTTP client moves them), then `settee
#    replicate` pushes a local store holding it to a new database and pulls that database
#    into a new store. Both copies are checked byte for byte (md5 of what `settee
#    get-attachment` gives, and CouchDB's digest).
# 2. BENCH_NOTES notes (default 1,000) with a BENCH_NOTE_KB image each (default 1,024 KB,
#    random bytes, image/png): pulled into a new local database and pushed to a new server
#    database by `settee replicate` and by PouchDB 9 (Node, leveldb), in the same run. Every
#    pushed database's digests are checked against the source's.
#
# Prints markdown tables on stdout.
#
#   bench/attachments.sh
#   BENCH_BIG_MB=50 BENCH_NOTES=100 bench/attachments.sh   # a quick run
#
# Knobs: SETTEE_BIN (a settee binary instead of a release build), BENCH_OUT (data and raw
# output: bench-out/attachments, git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
big_mb=${BENCH_BIG_MB:-200}
notes=${BENCH_NOTES:-1000}
note_kb=${BENCH_NOTE_KB:-1024}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/bench}
out=${BENCH_OUT:-$root/bench-out/attachments}
[ -x /usr/bin/time ] || { echo "attachments.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
log() { echo "attachments.sh: $*" >&2; }

export NODE_PATH=$("$root/scripts/node-deps.sh")
client="$root/bench/attachments-client.js"

settee_bin=${SETTEE_BIN:-}
if [ -z "$settee_bin" ]; then
    log "building the settee CLI (release)"
    cargo build --release --quiet --bin settee
    settee_bin=$CARGO_TARGET_DIR/release/settee
fi

rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d "${TMPDIR:-/tmp}/settee-bench-server.XXXXXX")
release=${SETTEE_COUCHDB_RELEASE:-$root/../shared/couchdb}
trap 'bash "$release/couchdb.sh" stop "$state" >/dev/null 2>&1; rm -rf "$state"' EXIT
started=$(bash "$release/couchdb.sh" start "$state")
auth_url=${started%% *}
creds=${auth_url#http://}
creds=${creds%%@*}
user=${creds%%:*}
export SETTEE_PASSWORD=${creds#*:}
url="http://${auth_url#*@}"
# The CLI takes the user in the URL and the password from SETTEE_PASSWORD (never argv).
settee_url=${url/:\/\//://$user@}
log "Apache CouchDB at $url"

# run NAME CMD...: CMD under time -v; stdout to NAME.out, time -v to NAME.time.
run() {
    local name=$1
    shift
    if ! /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err"; then
        log "$name failed:"
        tail -20 "$out/$name.err" >&2
        return 1
    fi
}
couch() { curl -sS -u "$user:$SETTEE_PASSWORD" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d" + sys.argv[1]))' "$1"; }

# 1. One big attachment.
log "writing $big_mb MB of random bytes"
head -c $((big_mb * 1048576)) /dev/urandom > "$out/big.bin"
want=$(md5sum < "$out/big.bin" | cut -d' ' -f1)
couch -X PUT "$url/curl_big" > /dev/null
rev=$(couch -X PUT "$url/curl_big/doc" -d '{}' | field '["rev"]')
log "curl: PUT and GET the attachment"
run curl-push curl -sS -f -u "$user:$SETTEE_PASSWORD" -T "$out/big.bin" \
    -H 'Content-Type: application/octet-stream' "$url/curl_big/doc/big.bin?rev=$rev"
# Into a file, as the replicator writes into its store (the store also syncs it).
run curl-pull curl -sS -f -u "$user:$SETTEE_PASSWORD" -o "$out/curl-pulled.bin" "$url/curl_big/doc/big.bin"
rm -f "$out/curl-pulled.bin"
curl_digest=$(couch "$url/curl_big/doc" | field '["_attachments"]["big.bin"]["digest"]')

log "settee: a local store with the attachment"
run settee-attach "$settee_bin" attach --quiet "$out/big-local" doc big.bin "$out/big.bin" \
    --type application/octet-stream
log "settee: push"
run settee-push "$settee_bin" replicate --quiet --create-target "$out/big-local" "$settee_url/settee_big"
pushed_digest=$(couch "$url/settee_big/doc" | field '["_attachments"]["big.bin"]["digest"]')
[ "$pushed_digest" = "$curl_digest" ] || { log "the pushed digest $pushed_digest is not curl's $curl_digest"; exit 1; }
log "settee: pull"
run settee-pull "$settee_bin" replicate --quiet "$settee_url/settee_big" "$out/big-pulled"
got=$("$settee_bin" get-attachment --quiet "$out/big-pulled" doc big.bin - | md5sum | cut -d' ' -f1)
[ "$got" = "$want" ] || { log "the pulled attachment's md5 is $got, the file's $want"; exit 1; }
rm -rf "$out/big-local" "$out/big-pulled" "$out/big.bin"

# 2. Many notes with an image each (BENCH_NOTES=0 skips it).
if [ "$notes" -gt 0 ]; then
log "loading $notes notes with a $note_kb KB image each into $url/src"
run load node "$client" load "$auth_url/src" "$notes" "$note_kb"
node "$client" digests "$auth_url/src" > "$out/src.digests"
check() { # name db: db's digests are src's
    node "$client" digests "$auth_url/$2" > "$out/$1.digests"
    cmp -s "$out/src.digests" "$out/$1.digests" || { log "$1: $2's images differ from src's"; echo differ > "$out/$1.short"; }
}
log "settee: pull, push"
run notes-settee-pull "$settee_bin" replicate --quiet "$settee_url/src" "$out/settee-local"
run notes-settee-push "$settee_bin" replicate --quiet --create-target "$out/settee-local" "$settee_url/push_settee"
check notes-settee-push push_settee
log "PouchDB: pull, push"
run notes-pouchdb-pull node "$client" pouchdb "$auth_url/src" "$out/pouchdb-local"
run notes-pouchdb-push node "$client" pouchdb "$out/pouchdb-local" "$auth_url/push_pouchdb"
check notes-pouchdb-push push_pouchdb
du -sh "$out"/*-local >&2 || true
rm -rf "$out"/*-local
fi

python3 - "$out" "$big_mb" "$notes" "$note_kb" <<'PY'
import json, os, re, sys
out, big_mb, notes, note_kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def timev(name):
    s = open(os.path.join(out, name + ".time")).read()
    g = lambda pat: re.search(pat, s).group(1)
    w = g(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)").split(":")
    return {
        "wall": sum(float(x) * 60 ** i for i, x in enumerate(reversed(w))),
        "cpu": float(g(r"User time \(seconds\): ([\d.]+)")) + float(g(r"System time \(seconds\): ([\d.]+)")),
        "rss": int(g(r"Maximum resident set size \(kbytes\): (\d+)")) / 1024,
    }
print(f"One attachment of {big_mb} MB (random bytes, application/octet-stream); both copies checked byte for byte.\n")
print("| client | direction | wall | MB/s | vs curl | client CPU (user+sys) | peak RSS |")
print("|---|---|---|---|---|---|---|")
for d in ("push", "pull"):
    c, s = timev(f"curl-{d}"), timev(f"settee-{d}")
    for name, t in (("curl", c), ("Settee (`settee replicate`)", s)):
        ratio = "" if t is c else f"{t['wall'] / c['wall']:.2f}x"
        print(f"| {name} | {d} | {t['wall']:.2f} s | {big_mb / t['wall']:,.0f} | {ratio} | {t['cpu']:.2f} s | {t['rss']:.0f} MB |")
if notes == 0:
    sys.exit(0)
load = json.load(open(os.path.join(out, "load.out")))
total = notes * note_kb / 1024
print(f"\n{notes:,} notes with a {note_kb:,} KB image each ({total:,.0f} MB), loaded with `_bulk_docs` in {load['seconds']:.1f} s; every pushed copy's digests checked against the source's.\n")
print("| client | direction | wall | MB/s | vs PouchDB | client CPU (user+sys) | peak RSS |")
print("|---|---|---|---|---|---|---|")
for d in ("pull", "push"):
    p = timev(f"notes-pouchdb-{d}")
    for name, key in (("Settee (`settee replicate`)", "settee"), ("PouchDB 9 (leveldb)", "pouchdb")):
        t = timev(f"notes-{key}-{d}")
        short = os.path.exists(os.path.join(out, f"notes-{key}-{d}.short"))
        ratio = "" if key == "pouchdb" else f"{p['wall'] / t['wall']:.2f}x"
        print(f"| {name} | {d} | {t['wall']:.1f} s{' (copy differs!)' if short else ''} | {total / t['wall']:,.0f} | {ratio} | {t['cpu']:.1f} s | {t['rss']:.0f} MB |")
PY
