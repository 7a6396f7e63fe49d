#!/usr/bin/env bash
# Does watching a run over SSE slow the engine down? 10,000-connection runs against a
# separate `socketswarm target`, unwatched and with 50 SSE clients, alternately; writes
# bench/SSE-WATCHERS.md (goal: connect rates within 5 %). Takes ~6-8 min (mostly waiting
# for TIME_WAIT sockets to drain between runs).
#   bench/sse_watchers.sh [--rounds 3] [--connections 10000] [--watchers 50] [--ramp 1s] [--tick-ms 100]
# Needs the release binary: scripts/build.sh --release (or cargo build --release -p server).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/socketswarm"
if [ ! -x "$bin" ]; then
  echo "no release binary at $bin: run scripts/build.sh --release first" >&2
  exit 2
fi
exec python3 bench/sse_watchers.py --bin "$bin" "$@"
