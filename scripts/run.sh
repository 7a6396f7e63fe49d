#!/usr/bin/env bash
# Sets up what is missing, builds the `quick` profile (Cargo.toml) and starts socketswarm with its defaults:
# UI + API on http://127.0.0.1:3000, SQLite in ./socketswarm.db, sandbox target on
# ws://127.0.0.1:9001. Extra arguments go to `socketswarm` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --run
exec "${CARGO_TARGET_DIR:-target}/quick/socketswarm" "$@"
