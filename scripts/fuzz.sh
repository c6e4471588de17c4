#!/usr/bin/env bash
# Fuzz the parsers of untrusted bytes (fuzz/, docs/fuzzing.md) for a bounded time each.
#
#   bash scripts/fuzz.sh              # every target for 5 s (what CI runs: 50 s in all)
#   bash scripts/fuzz.sh jar 600      # one target for 10 minutes
#
# New inputs the fuzzer finds go to a temporary directory (the checked-in corpus under
# fuzz/corpus/ is read, never written); a crash or a hang fails the run and leaves its input
# under fuzz/artifacts/<target>/: add it to fuzz/corpus/<target>/ once the parser is fixed.
# Needs the nightly toolchain and cargo-fuzz (scripts/install-test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${2:-5}
if [ -n "${1:-}" ] && [ "$1" != all ]; then
    targets=("$1")
else
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^runtime-insights-fuzz$')
fi

command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
echo "fuzz: building ${#targets[@]} targets (nightly, ASan)"
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O

failed=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    seeds=$(find "fuzz/corpus/$t" -type f | wc -l)
    log="$work/$t.log"
    # -timeout: one input running this long is a hang; -rss_limit_mb: an allocation this big is
    # a missing bound.
    if cargo +nightly fuzz run -O "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "fuzz: $t: ${seconds}s, ${runs:-?} inputs run, corpus $seeds + $(find "$work/$t" -type f | wc -l) new, no crash"
    else
        echo "fuzz: $t: FAILED"
        tail -n 40 "$log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed targets: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
