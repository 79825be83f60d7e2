#!/usr/bin/env bash
# The CUDA kernels executed on the CPU (emu_cuda.h: a coroutine per CUDA
# thread, barriers for __syncthreads/__syncwarp/shuffles, cuBLAS as a loop):
# a check of indexing, barriers and numerics on machines without a GPU. Not
# a substitute for tests/gpu/run.sh on a GPU (no timing, no memory model).
# Built by meson (tests/gpu/emu/meson.build, -Dgpu_checks=true -Dcuda=disabled:
# g++ only, no nvcc) in its own build dir.
#   bash tests/gpu/emu/run.sh [ops|e2e|all] [--junit FILE]
#     default all; build dir build-gpuemu (PIVOT_EMU_BUILD)
#     ops: tests/gpu/gpu_mixed.c's and gpu_mixed_layout.c's checks of kv_mixed.cu
#          (~1-3 min); --junit: one JUnit testcase per check into FILE
#     e2e: the tiny synthetic model through model/llama_cuda.c, CUDA (emulated)
#          vs CPU, every cache preset (gpu_e2e.c's run_pair), a process per
#          preset (~3 min with 8 cores)
set -u
cd "$(dirname "$0")/../../.." || exit 1
WHAT=all JUNIT=
while [ $# -gt 0 ]; do
    case $1 in
        ops|e2e|all) WHAT=$1 ;;
        --junit) JUNIT=${2:?--junit FILE}; shift ;;
        *) echo "usage: $0 [ops|e2e|all] [--junit FILE]" >&2; exit 2 ;;
    esac
    shift
done
O=${PIVOT_EMU_BUILD:-build-gpuemu}
if [ ! -f "$O/build.ninja" ]; then
    mkdir -p "$O" && meson setup "$O" -Dgpu_checks=true -Dcuda=disabled >"$O/setup.log" 2>&1 ||
        { cat "$O/setup.log"; echo "FAIL  meson setup $O"; exit 1; }
fi
ninja -C "$O" tests/gpu/emu/emu_ops tests/gpu/emu/emu_e2e || { echo "FAIL  emulator build"; exit 1; }
B=$O/tests/gpu/emu
ST=0
if [ "$WHAT" = ops ] || [ "$WHAT" = all ]; then "$B/emu_ops" ${JUNIT:+--junit "$JUNIT"} || ST=1; fi
if [ "$WHAT" = e2e ] || [ "$WHAT" = all ]; then # one process per preset, in parallel
    for p in full scissorhands mikv h2o streaming quant4 quant2 split; do
        "$B/emu_e2e" $p > "$O/e2e_$p.log" 2>&1 &
    done
    wait
    cat "$O"/e2e_*.log
    grep -q '^FAIL' "$O"/e2e_*.log && ST=1
fi
exit $ST
