#!/usr/bin/env bash
# Installs what building and testing socketswarm needs, skipping what is already there:
# the wasm32 Rust target, node packages
# (uPlot, binaryen's wasm-opt, playwright-core, socket.io) and, with --test (or --browser), what the
# tests start: Debian's chromium, nginx and haproxy (the real gateways the diagnosis is
# tested against; installed without starting their system services), and the Prometheus
# client's text-format parser (python3-prometheus-client) the /metrics test reads with.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli: scripts/build.sh installs it (scripts/wasm-bindgen.sh) beside the wasm
# build, so the two overlap on a first start.

if ! command -v npm >/dev/null; then
  say "installing node and npm"
  apt_install nodejs npm
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing node packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

case "${1:-}" in
  --test|--browser)
    if ! command -v chromium >/dev/null; then
      say "installing chromium (Debian package) for the browser tests"
      apt_install chromium
    fi
    if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
      say "installing nginx and haproxy (Debian packages) for the real-gateway tests"
      # Only the binaries are wanted: keep the packages' services from starting (and
      # from taking port 80) while they install.
      policy=/usr/sbin/policy-rc.d
      if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        trap 'as_root rm -f "$policy"' EXIT
      fi
      apt_install nginx haproxy
    fi
    if ! /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
      say "installing python3-prometheus-client (Debian package): the /metrics test parses with it"
      apt_install python3-prometheus-client
    fi
    ;;
esac
