#!/usr/bin/env bash
# Installs what is missing, builds, fetches the default model and runs it.
# Until `pivot serve` exists this runs `pivot generate` on the default model;
# arguments are passed to it (default: a short chat prompt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fetch-model.sh >/dev/null
if [ $# -eq 0 ]; then
  set -- --chat --prompt "What is the capital of France?" --max-tokens 64
fi
exec "${BUILD_DIR:-build}/server/pivot" generate "$@"
