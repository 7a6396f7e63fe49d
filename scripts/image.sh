#!/usr/bin/env bash
# Builds the container image (Dockerfile): a static x86_64 musl binary with the site
# embedded, FROM scratch, run as nobody. Nothing is pulled: the binary is built here.
#   scripts/image.sh            dist profile (fat LTO), tagged localhost/socketswarm:latest
#   PROFILE=release scripts/image.sh   quicker to build, a little larger
# Needs buildah (Debian: apt-get install buildah) or docker; installs musl-tools and the
# Rust musl target when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dist}"
triple=x86_64-unknown-linux-musl
tag="${TAG:-localhost/socketswarm:latest}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

scripts/setup.sh
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
# ring and the bundled SQLite are C: compiled with musl-gcc.
command -v musl-gcc >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools
SERVER_TARGET="$triple" scripts/build.sh "--$profile"

target="${CARGO_TARGET_DIR:-target}"
ctx="$target/image"
rm -rf "$ctx" && mkdir -p "$ctx/data"
cp "$target/$triple/$profile/socketswarm" "$ctx/socketswarm"
if command -v buildah >/dev/null; then
  buildah bud --layers=false -t "$tag" -f Dockerfile "$ctx"
  buildah images "$tag"
else
  docker build -t "$tag" -f Dockerfile "$ctx"
  docker images "$tag"
fi
