#!/usr/bin/env bash
# Installs the Node.js packages the tests and benchmarks use (tests/node/package-lock.json,
# pinned) into a cache folder, once per lockfile. Prints the node_modules path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SETTEE_CACHE:-$root/.cache}/node
mkdir -p "$cache"
stamp="$cache/.lock.sha256"
want=$(sha256sum "$root/tests/node/package-lock.json" "$root/tests/node/package.json" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$cache/node_modules" ]; then
    command -v node >/dev/null || { echo "node-deps: Node.js is not installed (needed for the test server)" >&2; exit 1; }
    cp "$root/tests/node/package.json" "$root/tests/node/package-lock.json" "$cache/"
    echo "node-deps: installing pinned npm packages into $cache" >&2
    # --ignore-scripts: nothing we use needs an install script (leveldown loads the prebuilt
    # binary it ships), and pouchdb-server's optional sqlite3 would otherwise compile from source.
    (cd "$cache" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
fi
echo "$cache/node_modules"
