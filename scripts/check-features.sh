#!/usr/bin/env bash
# The library alone (`settee = { default-features = false }`) embeds no HTTP server and no
# JavaScript engine: checks its dependency tree, then builds and lints it without features.
# Run by .ci/run; reuses the build cache (the library's crates are the suite's too).
set -euo pipefail
cd "$(dirname "$0")/.."

# Crates that only the `server` feature may bring. hyper itself is allowed: reqwest (the
# CouchDB client) uses it as an HTTP client.
forbidden=(axum rquickjs rquickjs-sys settee-server settee-js)

tree=$(cargo tree -p settee --no-default-features -e normal --prefix none --format '{p}')
found=0
for name in "${forbidden[@]}"; do
    if grep -q -E "^${name} v" <<<"$tree"; then
        echo "check-features: settee --no-default-features depends on ${name}:" >&2
        cargo tree -p settee --no-default-features -e normal -i "$name" >&2 || true
        found=1
    fi
done
if [ "$found" -ne 0 ]; then
    echo "check-features: put it behind the \`server\` feature (Cargo.toml, README \"Features\")" >&2
    exit 1
fi
echo "check-features: settee without default features has none of: ${forbidden[*]}"

cargo build -p settee --no-default-features --lib
cargo clippy -p settee --no-default-features --lib -- -D warnings
