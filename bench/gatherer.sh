#!/usr/bin/env bash
# Benchmarks of `workload-gatherer` against the testkit API server and real HTTPS fake
# extractors on loopback addresses (no root needed). Prints markdown rows; docs/benchmarks.md
# ("## workload-gatherer") records a run.
#
#   bash bench/gatherer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -p gatherer --test bench -- --ignored --nocapture --test-threads 1
