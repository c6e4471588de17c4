#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Run as root on Debian 12:
# it installs what the tests need (containerd, runc, JDK, Go, ...), checks formatting and
# lints, then runs every test. Tests that need root/namespaces/containerd fail instead of
# skipping when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    bash scripts/install-test-deps.sh
else
    echo "test.sh: not root: skipping dependency installation; root-only tests will be SKIPPED" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
