#!/usr/bin/env bash
# Builds the site (wasm + js + css + assets into $TARGET/site), then the server binary,
# which embeds that site (server/build.rs): the binary runs from any directory.
#   scripts/build.sh            debug server, optimized wasm
#   scripts/build.sh --run      what `make run` starts (target/quick/socketswarm): the `quick`
#                               profile (Cargo.toml) without the Kubernetes
#                               launcher, the wasm without wasm-opt
#   scripts/build.sh --release  release server (target/release/socketswarm), wasm-opt'd wasm
#   scripts/build.sh --dist     the shipping build: fat LTO (target/dist/socketswarm)
#   --release builds the wasm with wasm-opt when node_modules has it (scripts/setup.sh).
# Plain cargo + wasm-bindgen; no cargo-leptos needed. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
target="${CARGO_TARGET_DIR:-target}"
site="$target/site"
wasm="$target/wasm32-unknown-unknown/wasm-release/frontend.wasm"

# Copies $1 to $2 only when the content differs: the server's build script watches the
# site, and an unchanged site must not recompile the server.
put() { cmp -s "$1" "$2" 2>/dev/null || { mkdir -p "$(dirname "$2")"; cp "$1" "$2"; }; }

# wasm-bindgen-cli (if missing) compiles while the wasm builds; it is needed only after.
scripts/wasm-bindgen.sh &
bindgen=$!
cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
wait "$bindgen"
mkdir -p "$site/pkg"
optimize=""
if [ "$mode" = "--release" ] || [ "$mode" = "--dist" ]; then optimize=1; fi
if [ ! -f "$site/pkg/socketswarm.wasm" ] || [ "$wasm" -nt "$site/pkg/socketswarm.wasm" ] || [ -n "$optimize" -a ! -f "$site/pkg/.optimized" ]; then
  out=$(mktemp -d)
  wasm-bindgen --target web --no-typescript --out-dir "$out" --out-name socketswarm "$wasm"
  mv "$out/socketswarm_bg.wasm" "$out/socketswarm.wasm"
  rm -f "$site/pkg/.optimized"
  if [ -n "$optimize" ] && [ -x node_modules/.bin/wasm-opt ]; then
    node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      "$out/socketswarm.wasm" -o "$out/socketswarm.wasm"
    touch "$site/pkg/.optimized"
  fi
  put "$out/socketswarm.js" "$site/pkg/socketswarm.js"
  put "$out/socketswarm.wasm" "$site/pkg/socketswarm.wasm"
  # A fresh marker even when the content did not change, so the test above holds.
  touch -r "$wasm" "$site/pkg/socketswarm.wasm" 2>/dev/null || true
  rm -rf "$out"
fi
put style/main.css "$site/pkg/socketswarm.css"
put node_modules/uplot/dist/uPlot.iife.min.js "$site/pkg/uplot.js"
put node_modules/uplot/dist/uPlot.min.css "$site/pkg/uplot.css"
(cd public && find . -type f) | while read -r f; do put "public/$f" "$site/$f"; done

case "$site" in /*) export SOCKETSWARM_SITE_DIR="$site" ;; *) export SOCKETSWARM_SITE_DIR="$PWD/$site" ;; esac
# SERVER_TARGET=<triple> builds the server for another target (scripts/image.sh: musl).
target_args=()
if [ -n "${SERVER_TARGET:-}" ]; then target_args=(--target "$SERVER_TARGET"); fi
case "$mode" in
  --run) cargo build -p server --profile quick --no-default-features "${target_args[@]}" ;;
  --release) cargo build -p server --release "${target_args[@]}" ;;
  --dist) cargo build -p server --profile dist "${target_args[@]}" ;;
  *) cargo build -p server "${target_args[@]}" ;;
esac
