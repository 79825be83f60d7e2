#!/usr/bin/env bash
# Set-up (Debian packages, Python venv), then configure and build into
# ${BUILD_DIR:-build}. Extra arguments go to `meson setup` on first configure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" -Dwerror=true "$@" >&2
fi
ninja -C "$BUILD_DIR" >&2
