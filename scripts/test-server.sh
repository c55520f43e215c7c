#!/usr/bin/env bash
# Starts or stops the CouchDB-compatible test server (pouchdb-server from the npm registry,
# pinned in tests/node/package-lock.json) on a free 127.0.0.1 port.
#
#   scripts/test-server.sh start DIR   # prints the server URL; state (pid, url, data, log) in DIR
#   scripts/test-server.sh stop DIR    # stops it by its PID
#
# The server gets an admin user (DIR/user = settee_admin, a random password in DIR/password) so
# that tests can check authentication; the URL printed carries no credentials.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: test-server.sh start|stop DIR}
dir=${2:?usage: test-server.sh start|stop DIR}
case "$cmd" in
start)
    modules=$("$root/scripts/node-deps.sh")
    mkdir -p "$dir/data"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # The server's config (admins, log file) lives in its data folder. It is started as a direct
    # child (not inside a subshell) so that $! is node's own PID, which `stop` kills, and with
    # every standard stream redirected so that `url=$(test-server.sh start DIR)` returns.
    cd "$dir/data"
    # tests/node/keep-alive.js keeps one bad request from ending the server (see there).
    nohup node --require "$root/tests/node/keep-alive.js" "$modules/pouchdb-server/bin/pouchdb-server" \
        --host 127.0.0.1 --port "$port" --dir "$dir/data" \
        --config "$dir/data/config.json" < /dev/null > "$dir/log" 2>&1 &
    echo $! > "$dir/pid"
    cd "$root"
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 300); do
        if curl -sf "$url/" >/dev/null 2>&1; then
            # Leave "admin party": create the admin, so that a wrong password gets a real 401.
            # Caution: pouchdb-server 4.2.0 crashes (TypeError in express-pouchdb routes/db.js)
            # when anyone but an admin asks it to create a database, so every client that
            # creates databases must send these credentials (settee-testkit hands them out).
            python3 -c 'import secrets; print(secrets.token_urlsafe(18))' > "$dir/password"
            chmod 600 "$dir/password"
            curl -sf -X PUT "$url/_config/admins/settee_admin" \
                --data-binary "\"$(cat "$dir/password")\"" >/dev/null || {
                echo "test-server: could not create the admin user; its log:" >&2; cat "$dir/log" >&2
                kill "$(cat "$dir/pid")" 2>/dev/null || true; exit 1; }
            # CouchDB's default max_document_size (8 MB). pouchdb-server applies it to every
            # JSON request body and answers 413 too_large beyond it, which the tests rely on.
            curl -sf -X PUT "$url/_config/couchdb/max_document_size" \
                -u "settee_admin:$(cat "$dir/password")" --data-binary '"8000000"' >/dev/null
            echo "settee_admin" > "$dir/user"
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
