#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors), fetches the default
# model and runs every test: the Criterion unit suites (through meson test)
# and the Python integration/reference tests (pytest). Ends with one line
# "N passed, N failed" that counts the individual tests of every suite.
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh || { echo "0 passed, 1 failed"; exit 1; }
bash scripts/fetch-model.sh >/dev/null || { echo "0 passed, 1 failed"; exit 1; }

meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2
meson_rc=$?

export PIVOT_BIN="$PWD/$BUILD_DIR/server/pivot"
junit="$BUILD_DIR/pytest-junit.xml"
.venv/bin/python -m pytest tests/python -q -rs --junitxml="$junit"
py_rc=$?
# pytest exits 5 when it collected nothing; that is a failure of this script.

.venv/bin/python scripts/count_results.py "$BUILD_DIR/meson-logs/testlog.json" "$junit"
count_rc=$?
if [ $meson_rc -ne 0 ] || [ $py_rc -ne 0 ] || [ $count_rc -ne 0 ]; then exit 1; fi
exit 0
