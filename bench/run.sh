#!/usr/bin/env bash
# Builds a release and runs the benchmarks: the engine (bench/RESULTS.md), report load
# time of a 1-hour run (bench/REPORT-LOAD.md) and 50 SSE watchers on a 10,000-connection
# run (bench/SSE-WATCHERS.md). About 20 minutes.
#   bench/run.sh [--quick]   (--quick: the engine benchmarks only, shorter)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --release
python3 bench/bench.py "$@"
if [ "${1:-}" != "--quick" ]; then
  python3 bench/report_load.py
  bench/sse_watchers.sh
fi
