#!/usr/bin/env bash
# Installs what Pivot needs on Debian 12 and prepares the Python venv used by
# tests and tooling. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential pkg-config meson ninja-build libuv1-dev libcjson-dev
          libjemalloc-dev libcriterion-dev node-llhttp unzip curl python3 python3-venv)
# The web page's browser tests (tests/python/test_webui.py); SETUP_BROWSER=0 skips them
# where nothing runs the tests (the images' build stages: Ubuntu's chromium is a snap).
if [ "${SETUP_BROWSER:-1}" != 0 ]; then
  APT_PKGS+=(chromium chromium-driver)
fi

bash scripts/apt-missing.sh setup "${APT_PKGS[@]}"

# Python venv for tests, references and tooling (never used by the server).
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
# Reinstall only when the requirement list changed (a stamp of its hash).
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python test tooling into .venv" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r scripts/requirements-test.txt
  echo "$want" > .venv/.requirements.sha
fi
