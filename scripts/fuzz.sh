#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (see docs/fuzzing.md).
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   run each for SECONDS (default 60), seeded with
#                                            fuzz/corpus/TARGET; what it finds goes to
#                                            fuzz/corpus-new/TARGET (not committed)
#   scripts/fuzz.sh --cmin [TARGET|all]      merge corpus-new into fuzz/corpus/TARGET and
#                                            minimise it (cargo fuzz cmin)
#   scripts/fuzz.sh --list                   the target names
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Exits
# non-zero when a target crashes; libFuzzer's log names the input it saved under
# fuzz/artifacts/TARGET. Logs go to fuzz/logs/TARGET.log (FUZZ_LOGS=dir: elsewhere).
# FUZZ_JOBS=2 runs two targets at once. FUZZ_SANITIZER=none builds without AddressSanitizer
# (faster to build and run; CI uses it: Settee forbids unsafe code, ASan guards the C and
# unsafe code of dependencies such as QuickJS and sled). FUZZ_DEV=1 builds unoptimised
# (half the build time, slower runs; CI uses it for its few seconds per target).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

targets=(http multipart json_members rev_seq store_records mango)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

pick() {
    case "${1:-all}" in
    all) echo "${targets[@]}" ;;
    *)
        for t in "${targets[@]}"; do
            if [ "$t" = "$1" ]; then
                echo "$t"
                return
            fi
        done
        echo "fuzz.sh: no target $1 (targets: ${targets[*]})" >&2
        exit 2
        ;;
    esac
}

# Options per target: a dictionary where one helps; larger inputs for whole requests.
flags() {
    local t=$1 f=(-timeout=60 -rss_limit_mb=4096 -print_final_stats=1)
    [ -f "dict/$t.dict" ] && f+=("-dict=dict/$t.dict")
    case "$t" in
    http | multipart) f+=(-max_len=16384) ;;
    esac
    echo "${f[@]}"
}

case "${1:-}" in
--list)
    echo "${targets[@]}"
    exit 0
    ;;
--cmin)
    for t in $(pick "${2:-all}"); do
        if [ -d "corpus-new/$t" ]; then
            cp -n corpus-new/"$t"/* "corpus/$t/" 2>/dev/null || true
        fi
        # Edges only (no hit counts): the smallest corpus that reaches every branch reached.
        nice -n 10 cargo +nightly fuzz cmin -s "${FUZZ_SANITIZER:-address}" "$t" "corpus/$t" -- \
            -use_counters=0 $(flags "$t")
        rm -rf "corpus-new/$t"
    done
    exit 0
    ;;
esac

selected=$(pick "${1:-all}")
seconds=${2:-60}
jobs=${FUZZ_JOBS:-1}
sanitizer=${FUZZ_SANITIZER:-address}
build=(-s "$sanitizer")
[ "${FUZZ_DEV:-0}" = 1 ] && build+=(--dev)
cargo +nightly fuzz build "${build[@]}" >/dev/null
logs=${FUZZ_LOGS:-logs}
mkdir -p "$logs"
run() {
    local t=$1
    mkdir -p "corpus-new/$t"
    # The committed corpus seeds the run read-only; new inputs go to corpus-new.
    if nice -n 10 cargo +nightly fuzz run "${build[@]}" "$t" "corpus-new/$t" "corpus/$t" -- \
        -max_total_time="$seconds" $(flags "$t") >"$logs/$t.log" 2>&1; then
        echo "$t: no crash in ${seconds}s: $(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1)"
    else
        echo "$t: FAILED (fuzz/$logs/$t.log):" >&2
        tail -40 "$logs/$t.log" >&2
        return 1
    fi
}
status=0
running=0
pids=()
for t in $selected; do
    run "$t" &
    pids+=($!)
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
