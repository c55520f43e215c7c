#!/usr/bin/env bash
# Starts or stops the CouchDB-compatible test server (pouchdb-server from the npm registry,
# pinned in tests/node/package-lock.json) on a free 127.0.0.1 port.
#
#   scripts/test-server.sh start DIR   # prints the server URL; state (pid, url, data, log) in DIR
#   scripts/test-server.sh stop DIR    # stops it by its PID
#
# The server gets an admin user (settee_admin / the password in DIR/password) so tests can
# check authentication; the URL printed carries no credentials.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: test-server.sh start|stop DIR}
dir=${2:?usage: test-server.sh start|stop DIR}
case "$cmd" in
start)
    modules=$("$root/scripts/node-deps.sh")
    mkdir -p "$dir/data"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # The server's config (admins, log file) lives in its data folder.
    (cd "$dir/data" && nohup node "$modules/pouchdb-server/bin/pouchdb-server" \
        --host 127.0.0.1 --port "$port" --dir "$dir/data" \
        --config "$dir/data/config.json" > "$dir/log" 2>&1 &
     echo $! > "$dir/pid")
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 300); do
        if curl -sf "$url/" >/dev/null 2>&1; then
            echo "$url" > "$dir/url"
            echo "$url"
            exit 0
        fi
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "test-server: pouchdb-server exited; its log:" >&2; cat "$dir/log" >&2; exit 1
        fi
        sleep 0.1
    done
    echo "test-server: pouchdb-server did not answer on $url within 30 s; its log:" >&2
    cat "$dir/log" >&2
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    exit 1
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
    ;;
*) echo "usage: test-server.sh start|stop DIR" >&2; exit 2 ;;
esac
