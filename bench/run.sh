#!/usr/bin/env bash
# Builds a release and runs the engine benchmarks; writes bench/RESULTS.md.
#   bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --release
python3 bench/bench.py "$@"
