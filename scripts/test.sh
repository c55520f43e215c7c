#!/usr/bin/env bash
# Runs every test: installs the pinned npm packages, starts the CouchDB-compatible test server
# (unless SETTEE_TEST_COUCHDB_URL points at a server already, e.g. Apache CouchDB from
# docker-compose.yml), runs the whole workspace's tests against it, and stops the server.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SETTEE_NODE_MODULES=$("$root/scripts/node-deps.sh")
if [ -z "${SETTEE_TEST_COUCHDB_URL:-}" ]; then
    state=$(mktemp -d "${TMPDIR:-/tmp}/settee-test-server.XXXXXX")
    trap '"$root/scripts/test-server.sh" stop "$state"; rm -rf "$state"' EXIT
    SETTEE_TEST_COUCHDB_URL=$("$root/scripts/test-server.sh" start "$state")
    export SETTEE_TEST_COUCHDB_URL
    export SETTEE_TEST_SERVER_DIR=$state
    SETTEE_TEST_COUCHDB_USER=$(cat "$state/user")
    SETTEE_TEST_COUCHDB_PASSWORD=$(cat "$state/password")
    export SETTEE_TEST_COUCHDB_USER SETTEE_TEST_COUCHDB_PASSWORD
    echo "test.sh: test server at $SETTEE_TEST_COUCHDB_URL" >&2
fi
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
