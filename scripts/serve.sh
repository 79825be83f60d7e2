#!/usr/bin/env bash
# Installs what is missing, builds, fetches the default model and serves it
# (pivot serve, 127.0.0.1:8080 unless --host/--port or PIVOT_HOST/PIVOT_PORT);
# arguments are passed to `pivot serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fetch-model.sh >/dev/null
exec "${BUILD_DIR:-build}/cli/pivot" serve "$@"
