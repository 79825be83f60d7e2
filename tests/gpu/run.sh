#!/usr/bin/env bash
# The GPU check, in one run (under 8 minutes on one H100, no network):
#   1. builds the core engine (kernels/ model/ cache/) with the CUDA backend
#      (kernels/cuda/*.cu, nvcc for sm_90 plus PTX) and tests/gpu/gpu_check
#      through meson, in its own build dir with -Dgpu_checks=true
#      -Dcuda=enabled: the same source lists as the main build
#      (tests/gpu/meson.build), and none of the server's libraries (libuv,
#      cJSON, jemalloc, llhttp, Criterion) -- meson, ninja, gcc and the CUDA
#      toolkit only;
#   2. runs tests/gpu/gpu_check: every CUDA op vs the CPU code on fresh random
#      inputs (the mixed cache's kernels too: gpu_mixed.c, gpu_mixed_layout.c),
#      end-to-end logits CUDA vs CPU for every cache preset (synthetic models,
#      and the real default model when models/ is present), the decode
#      benchmark of the Llama-3-8B shape at 2k context (batch 1, 16, 64; full
#      and mikv), the largest batch full and mikv fit at 4k with the
#      throughput there, and the copy bandwidth;
#   3. runs the same shape in PyTorch / HF transformers (tests/gpu/torch_bench.py);
#   4. writes the table to $OUT/gpu_report.txt.
# Each step says what failed and the script goes on to the next where it can.
#
#   bash tests/gpu/run.sh             # from the repository root; OUT=dir for results
#   bash tests/gpu/run.sh --dry-run   # build and link only; run nothing that needs a GPU
# PIVOT_GPU_BUILD: the build dir (build-gpu-check); NVCC: nvcc when it is not on PATH.
set -u
cd "$(dirname "$0")/../.." || exit 1
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/build-gpu-check/out}
mkdir -p "$OUT"
B=${PIVOT_GPU_BUILD:-build-gpu-check}
STATUS=0
T0=$(date +%s)
note() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "FAIL  $*"; STATUS=1; }

note "tools"
for t in gcc meson ninja; do
    command -v $t >/dev/null || { echo "FAIL  $t not found: cannot build anything"; exit 1; }
done
NVCC=${NVCC:-$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)}
[ -n "$NVCC" ] || { echo "FAIL  nvcc not found (set NVCC=/path/to/nvcc)"; exit 1; }
# meson finds nvcc on PATH and the toolkit (cudart, cuBLAS) from CUDA_PATH
export PATH="$(dirname "$NVCC"):$PATH"
export CUDA_PATH=${CUDA_PATH:-${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}}
gcc --version | head -1
"$NVCC" --version | tail -2
echo "meson $(meson --version), cuda: $CUDA_PATH"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

note "build (meson -Dgpu_checks=true -Dcuda=enabled in $B)"
if [ ! -f "$B/build.ninja" ]; then
    mkdir -p "$B" && meson setup "$B" -Dgpu_checks=true -Dcuda=enabled > "$B/setup.log" 2>&1 ||
        { cat "$B/setup.log"; fail "meson setup $B"; }
fi
GPU_CHECK=$B/tests/gpu/gpu_check
rm -f "$GPU_CHECK" # a failed build must not leave an old binary to run
[ $STATUS = 0 ] && { ninja -C "$B" tests/gpu/gpu_check || fail "build gpu_check"; }

if [ $DRY = 1 ]; then
    note "dry run: built $GPU_CHECK; checking the Python side"
    python3 -m py_compile tests/gpu/torch_bench.py tests/gpu/report.py && echo "python scripts compile"
    if [ -x "$GPU_CHECK" ]; then
        "$GPU_CHECK" --tsv "$OUT/pivot_results.tsv"; rc=$?
        [ $rc = 3 ] && echo "gpu_check: no GPU here, skipped as expected"
    fi
    note "dry run done (status $STATUS)"
    exit $STATUS
fi

if [ -x "$GPU_CHECK" ]; then
    note "gpu_check (ops, end to end, benchmark)"
    timeout "${PIVOT_GPU_CHECK_TIMEOUT:-330}" "$GPU_CHECK" --tsv "$OUT/pivot_results.tsv" 2>&1 | tee "$OUT/gpu_check.log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) ;;
        3) fail "gpu_check found no usable GPU" ;;
        124) fail "gpu_check timed out" ;;
        *) fail "gpu_check exit status $rc (see FAIL lines above)" ;;
    esac
else
    fail "gpu_check not built; skipping the GPU checks"
fi

note "PyTorch / HF transformers baseline"
if command -v python3 >/dev/null; then
    timeout "${PIVOT_TORCH_TIMEOUT:-200}" python3 tests/gpu/torch_bench.py --tsv "$OUT/torch_results.tsv" 2>&1 | tee "$OUT/torch_bench.log"
    [ "${PIPESTATUS[0]}" = 0 ] || fail "torch_bench (see above)"
else
    fail "python3 not found: no PyTorch baseline"
fi

note "report"
if command -v python3 >/dev/null; then
    python3 tests/gpu/report.py "$OUT/pivot_results.tsv" "$OUT/torch_results.tsv" > "$OUT/gpu_report.txt"
else
    cat "$OUT/pivot_results.tsv" "$OUT/torch_results.tsv" > "$OUT/gpu_report.txt" 2>/dev/null
fi
{ echo; echo "script status: $([ $STATUS = 0 ] && echo ok || echo 'FAILURES, see the log')"; } >> "$OUT/gpu_report.txt"
grep -h '^FAIL' "$OUT/gpu_check.log" "$OUT/torch_bench.log" 2>/dev/null >> "$OUT/gpu_report.txt"
cat "$OUT/gpu_report.txt"
note "done in $(( $(date +%s) - T0 ))s, status $STATUS; results in $OUT"
exit $STATUS
