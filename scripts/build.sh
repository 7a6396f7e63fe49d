#!/usr/bin/env bash
# Builds the site (wasm + js + css + assets into target/site) and the server binary.
#   scripts/build.sh            debug server, optimized wasm
#   scripts/build.sh --release  release server (target/release/socketswarm), wasm-opt'd wasm
# Plain cargo + wasm-bindgen; no cargo-leptos needed.
set -euo pipefail
cd "$(dirname "$0")/.."
release="${1:-}"
site=target/site
wasm=target/wasm32-unknown-unknown/wasm-release/frontend.wasm

cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$site/pkg"
if [ ! -f "$site/pkg/socketswarm.wasm" ] || [ "$wasm" -nt "$site/pkg/socketswarm.wasm" ] || [ "$release" = "--release" -a ! -f "$site/pkg/.optimized" ]; then
  wasm-bindgen --target web --no-typescript --out-dir "$site/pkg" --out-name socketswarm "$wasm"
  mv "$site/pkg/socketswarm_bg.wasm" "$site/pkg/socketswarm.wasm"
  rm -f "$site/pkg/.optimized"
  if [ "$release" = "--release" ] && [ -x node_modules/.bin/wasm-opt ]; then
    node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      "$site/pkg/socketswarm.wasm" -o "$site/pkg/socketswarm.wasm"
    touch "$site/pkg/.optimized"
  fi
fi
cp style/main.css "$site/pkg/socketswarm.css"
cp node_modules/uplot/dist/uPlot.iife.min.js "$site/pkg/uplot.js"
cp node_modules/uplot/dist/uPlot.min.css "$site/pkg/uplot.css"
cp -r public/. "$site/"

if [ "$release" = "--release" ]; then
  cargo build -p server --release
else
  cargo build -p server
fi
