#!/usr/bin/env bash
# Benchmark of `runtime-extractor-serve` over the real scanner and a real containerd
# (needs root, containerd and runc: scripts/install-test-deps.sh). Prints a markdown table;
# docs/benchmarks.md ("runtime-extractor-serve") records a run.
#
#   bash bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -p system-test --test serve_bench -- --ignored --nocapture --test-threads 1
