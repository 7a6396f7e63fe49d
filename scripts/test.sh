#!/usr/bin/env bash
# Every check CI runs: formatting, clippy (each feature set), unit + integration tests,
# then the browser end-to-end tests against a freshly built server in headless chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# A one-off build on CI gains nothing from incremental caches (~2.5 GB on disk).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== clippy (server + engine, app ssr, frontend wasm)"
cargo clippy -p engine -p server --all-targets -- -D warnings
cargo clippy -p server --no-default-features --features app/ssr -- -D warnings  # make run's quick build (no Kubernetes launcher)
cargo clippy -p app --features ssr --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown --profile wasm-release -- -D warnings
echo "== unit and integration tests"
cargo test -p engine -p app -p server --features app/ssr
echo "== build site + server for the browser tests"
scripts/build.sh
echo "== browser tests"
node --test --test-concurrency=1 e2e/
