#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this from a private clone). Run as root on
# Debian 12: it installs what the tests need (containerd, runc, JDK, Go, cargo-fuzz, ...),
# then runs every gate below; any failure fails the run. Tests that need root, namespaces or
# containerd fail (never skip) where they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-test-deps.sh
else
    echo "test.sh: not root: dependencies are not installed and root-only tests will FAIL" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (workspace lints, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== unused dependencies (cargo machete)"
cargo machete
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# Ignored tests are benchmarks and the seed writer, run by hand; anything else ignored shows here.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i; if ($(i+1) ~ /^ignored;/) g += $i } }
     END { printf "== tests: %d passed, %d failed, %d ignored\n", p, f, g }' "$log"
grep -E '^test .* \.\.\. ignored' "$log" | sed 's/^/   /' || true
grep -E '^test .* \.\.\. FAILED' "$log" | sed 's/^/   /' || true
[ "$status" -eq 0 ] || exit "$status"
echo "== fuzz: every target, bounded"
bash scripts/fuzz.sh
