#!/usr/bin/env bash
# A real node measured through the real service (issue 5): GET (every container) against POST
# (10 of them) with N = 20, 50, 100 containers on a real containerd (busybox sleep, Node.js,
# Python 3.11, OpenJDK 17), uncached and cached, through real `runtime-extractor scanner` and
# `runtime-extractor-serve` processes over HTTPS. Needs root and what
# scripts/install-test-deps.sh installs. Prints markdown tables; docs/benchmarks.md
# ("A real node: GET all vs POST 10 of N") records a run.
#
#   bash bench/node.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -p system-test --test node_bench -- --ignored --nocapture --test-threads 1
