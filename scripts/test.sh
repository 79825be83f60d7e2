#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors), fetches the default
# model and runs every test: the Criterion unit suites (through meson test)
# and the Python integration/reference tests (pytest); then the hardening
# checks: the unit suites and the server/CLI integration tests again under
# ASan+UBSan (LeakSanitizer on: a leak at exit fails), the libFuzzer targets
# (tests/fuzz/run.sh, FUZZ_SECONDS each) and the soak/abuse/drain test
# (tests/soak/soak.py, SOAK_SECONDS), once more under KV memory pressure
# (--pressure, SOAK_PRESSURE_SECONDS). PIVOT_HARDENING=0 skips them. Ends
# with one line "N passed, N failed" that counts the individual tests of
# every suite (scripts/count_results.py: each suite's result file is removed
# before it runs, so a suite that dies counts as failed, never as its last
# run; each runner's exit status goes with its file, so a non-zero exit is a
# failure whatever the file says).
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh || { echo "0 passed, 1 failed"; exit 1; }
bash scripts/fetch-model.sh >/dev/null || { echo "0 passed, 1 failed"; exit 1; }

# testlog.json and the Criterion reports (tests/meson.build) of the last run
rm -f "$BUILD_DIR/meson-logs/testlog.json" "$BUILD_DIR"/tests/criterion-*.json
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2
meson_rc=$?

export PIVOT_BIN="$PWD/$BUILD_DIR/cli/pivot"
junit="$BUILD_DIR/pytest-junit.xml"
rm -f "$junit"
.venv/bin/python -m pytest tests/python -q -rs --junitxml="$junit"
py_rc=$?
# pytest exits 5 when it collected nothing; that is a failure of this script.

# The container images' steps and manifests, checked without a Docker engine.
rm -f "$BUILD_DIR/docker-junit.xml"
.venv/bin/python -m pytest docker/test_images.py -q -rs --junitxml="$BUILD_DIR/docker-junit.xml"
docker_rc=$?

# count_results.py's arguments: --exit=RC of the runner, then its file
results=(--exit=$meson_rc "$BUILD_DIR/meson-logs/testlog.json" --exit=$py_rc "$junit"
         --exit=$docker_rc "$BUILD_DIR/docker-junit.xml")
hard_rc=0

# The GPU check's build (tests/gpu/run.sh --dry-run: meson -Dgpu_checks=true
# -Dcuda=enabled in build-gpu-check, gcc + nvcc, compile and link, no GPU
# needed): one counted test, so build rot fails here rather than on a lent
# GPU. Skipped without nvcc.
gpu_junit="$BUILD_DIR/gpu-build-junit.xml"
results+=("$gpu_junit")
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if bash tests/gpu/run.sh --dry-run > "$BUILD_DIR/gpu-build.log" 2>&1; then
    printf '<testsuite name="gpu-build" tests="1" failures="0"><testcase classname="gpu" name="run.sh --dry-run builds and links"/></testsuite>\n' > "$gpu_junit"
  else
    printf '<testsuite name="gpu-build" tests="1" failures="1"><testcase classname="gpu" name="run.sh --dry-run builds and links"><failure message="see %s"/></testcase></testsuite>\n' "$BUILD_DIR/gpu-build.log" > "$gpu_junit"
    tail -20 "$BUILD_DIR/gpu-build.log"
    hard_rc=1
  fi
else
  printf '<testsuite name="gpu-build" tests="1" skipped="1"><testcase classname="gpu" name="run.sh --dry-run builds and links"><skipped message="no nvcc"/></testcase></testsuite>\n' > "$gpu_junit"
fi
# The mixed cache's CUDA kernels executed on the CPU (tests/gpu/emu: g++ only,
# no nvcc or GPU; ~1-3 min): each op check of gpu_mixed.c and
# gpu_mixed_layout.c is one counted test (the emulator writes the JUnit).
emu_junit="$BUILD_DIR/gpu-emu-junit.xml"
results+=("$emu_junit")
rm -f "$emu_junit" # a stale result must not count
if ! bash tests/gpu/emu/run.sh ops --junit "$emu_junit" > "$BUILD_DIR/gpu-emu.log" 2>&1; then
  grep '^FAIL' "$BUILD_DIR/gpu-emu.log" || tail -20 "$BUILD_DIR/gpu-emu.log"
  hard_rc=1
fi
if [ ! -s "$emu_junit" ]; then # it did not build or did not finish
  printf '<testsuite name="gpu-emu-ops" tests="1" failures="1"><testcase classname="gpu-emu-ops" name="emu ops ran"><failure message="see %s"/></testcase></testsuite>\n' "$BUILD_DIR/gpu-emu.log" > "$emu_junit"
fi
if [ "${PIVOT_HARDENING:-1}" != 0 ]; then
  # 1. The same suites under ASan+UBSan (gcc; its own build dir). UBSan
  # findings stop the process so they fail their test. Warnings are not
  # errors here: gcc's sanitizer instrumentation brings false positives
  # (-Wrestrict, -Wmaybe-uninitialized); the plain build above has -Werror.
  ASAN_DIR=${ASAN_BUILD_DIR:-build-asan}
  # a stale result must not count when a step cannot run (a missing one is
  # a failure)
  rm -f "$ASAN_DIR/meson-logs/testlog.json" "$ASAN_DIR/pytest-junit.xml" \
    "$ASAN_DIR"/tests/criterion-*.json
  asan_meson_rc=1 asan_py_rc=1
  asan_env=(ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
  if BUILD_DIR=$ASAN_DIR bash scripts/build.sh -Dcuda=disabled -Db_sanitize=address,undefined \
       -Dbuildtype=debugoptimized -Dwerror=false; then
    env "${asan_env[@]}" meson test -C "$ASAN_DIR" --print-errorlogs --num-processes 2
    asan_meson_rc=$?
    # the tests that run the server and the CLI end to end (the reference
    # comparisons are long and exercise no other code path); not run when
    # the unit suites failed, and then counted as failed (no file)
    if [ $asan_meson_rc -eq 0 ]; then
      env "${asan_env[@]}" PIVOT_BIN="$PWD/$ASAN_DIR/cli/pivot" .venv/bin/python -m pytest -q -rs \
        --junitxml="$ASAN_DIR/pytest-junit.xml" ${ASAN_PYTESTS:-tests/python/test_server.py tests/python/test_cli.py}
      asan_py_rc=$?
    fi
  fi
  [ $asan_meson_rc -eq 0 ] && [ $asan_py_rc -eq 0 ] || hard_rc=1
  results+=(--exit=$asan_meson_rc "$ASAN_DIR/meson-logs/testlog.json"
            --exit=$asan_py_rc "$ASAN_DIR/pytest-junit.xml")
  # 2. Fuzzing (clang + libFuzzer, ASan+UBSan), 40 s per target here (CI's
  # 30-minute budget; tests/fuzz/run.sh defaults to 60, FUZZ_SECONDS overrides).
  rm -f build-fuzz/fuzz-junit.xml
  bash scripts/setup-hardening.sh && FUZZ_SECONDS=${FUZZ_SECONDS:-40} bash tests/fuzz/run.sh build-fuzz/fuzz-junit.xml
  fuzz_rc=$?
  [ $fuzz_rc -eq 0 ] || hard_rc=1
  results+=(--exit=$fuzz_rc build-fuzz/fuzz-junit.xml)
  # 3. Soak and abuse, then SIGTERM under load, on the release binary (its
  # memory is what the RSS check is about).
  rm -f "$BUILD_DIR/soak-junit.xml"
  .venv/bin/python tests/soak/soak.py --bin "$PIVOT_BIN" --log "$BUILD_DIR/soak-server.log" \
    --duration "${SOAK_SECONDS:-120}" --junit "$BUILD_DIR/soak-junit.xml"
  soak_rc=$?
  [ $soak_rc -eq 0 ] || hard_rc=1
  results+=(--exit=$soak_rc "$BUILD_DIR/soak-junit.xml")
  # 4. The same under memory pressure (--kv-memory 8M): preemption and
  # elastic compression all along, still no lost request and exact counts.
  rm -f "$BUILD_DIR/soak-pressure-junit.xml"
  .venv/bin/python tests/soak/soak.py --pressure --bin "$PIVOT_BIN" \
    --duration "${SOAK_PRESSURE_SECONDS:-40}" --warmup 5 \
    --log "$BUILD_DIR/soak-pressure-server.log" --junit "$BUILD_DIR/soak-pressure-junit.xml"
  soakp_rc=$?
  [ $soakp_rc -eq 0 ] || hard_rc=1
  results+=(--exit=$soakp_rc "$BUILD_DIR/soak-pressure-junit.xml")
fi

.venv/bin/python scripts/count_results.py "${results[@]}"
count_rc=$?
if [ $meson_rc -ne 0 ] || [ $py_rc -ne 0 ] || [ $docker_rc -ne 0 ] || [ $hard_rc -ne 0 ] || [ $count_rc -ne 0 ]; then exit 1; fi
exit 0
