#!/usr/bin/env bash
# Installs wasm-bindgen-cli at the version Cargo.lock pins, unless it is there already.
# scripts/build.sh runs this beside the wasm build (the two overlap on a first build).
# A debug build without the test runner's TLS: it compiles in half the CPU time of a
# release build (~120 vs ~245 CPU-seconds here) and runs on our ~9 MB wasm in ~3 s of
# CPU instead of ~0.7 s, once per wasm change.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  printf '\033[1m[setup]\033[0m %s\n' "installing wasm-bindgen-cli $want (a few minutes, once; beside the wasm build)"
  # Not --locked: with it, a locked dependency is missing from the index.
  cargo install wasm-bindgen-cli --version "$want" --debug --no-default-features --quiet
fi
