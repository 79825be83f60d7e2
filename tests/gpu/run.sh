#!/usr/bin/env bash
# The GPU check, in one run (under 8 minutes on one H100, no network):
#   1. builds the core engine (kernels/ model/ cache/, plain C: libc, pthread,
#      libm) with gcc and the CUDA backend (kernels/cuda/*.cu) with nvcc for
#      sm_90 -- no meson, no Debian libraries;
#   2. runs tests/gpu/gpu_check: every CUDA op vs the CPU code on fresh random
#      inputs (the mixed cache's kernels too: gpu_mixed.c), end-to-end logits
#      CUDA vs CPU for every cache preset (synthetic models, and the real
#      default model when models/ is present), the decode benchmark of the
#      Llama-3-8B shape at 2k context (batch 1, 16, 64; full and mikv), the
#      largest batch full and mikv fit at 4k with the throughput there, and the
#      copy bandwidth;
#   3. runs the same shape in PyTorch / HF transformers (tests/gpu/torch_bench.py);
#   4. writes the table to $OUT/gpu_report.txt.
# Each step says what failed and the script goes on to the next where it can.
#
#   bash tests/gpu/run.sh             # from the repository root; OUT=dir for results
#   bash tests/gpu/run.sh --dry-run   # build and link only; run nothing that needs a GPU
set -u
cd "$(dirname "$0")/../.." || exit 1
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/build-gpu-check/out}
mkdir -p "$OUT"
B=${PIVOT_GPU_BUILD:-build-gpu-check}
rm -rf "$B/obj"; mkdir -p "$B/obj" # no stale objects from removed sources
JOBS=$(nproc 2>/dev/null || echo 4)
ARCH=${PIVOT_CUDA_ARCH:-sm_90}
STATUS=0
T0=$(date +%s)
note() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "FAIL  $*"; STATUS=1; }

note "tools"
command -v gcc >/dev/null || { echo "FAIL  gcc not found: cannot build anything"; exit 1; }
NVCC=${NVCC:-$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)}
[ -n "$NVCC" ] || { echo "FAIL  nvcc not found (set NVCC=/path/to/nvcc)"; exit 1; }
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
gcc --version | head -1
"$NVCC" --version | tail -2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# CUDA libraries: the toolkit's lib64, its targets/ dir, or pip's nvidia-* wheels.
CUDA_LIB=""
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/targets/x86_64-linux/lib" "$CUDA_HOME/lib" /usr/lib/x86_64-linux-gnu; do
    if ls "$d"/libcublas.so* >/dev/null 2>&1 && ls "$d"/libcudart.so* >/dev/null 2>&1; then CUDA_LIB=$d; break; fi
done
[ -n "$CUDA_LIB" ] || { echo "FAIL  libcublas/libcudart not found under $CUDA_HOME"; exit 1; }
echo "cuda: $CUDA_HOME (libs $CUDA_LIB), arch $ARCH, $JOBS jobs"

# Source lists come from the meson.build files, so this build tracks the real one.
srcs() { grep -o "'[A-Za-z0-9_]*\.c'" "$1/meson.build" | tr -d "'" | sed "s|^|$1/|"; }
# kernels/ files named *avx* are the SIMD variants meson builds with ISA
# flags: the AVX2 ones once as they are, and (kernels/meson.build's kq_vnni
# library) the sources listed there again with AVX512-VNNI flags and
# -DKQ_VNNI=1. Elsewhere (cache/kv_quant_avx512.c) SIMD code carries its own
# target attributes and builds with the plain flags.
C_SRCS=$( (srcs kernels; srcs cache; srcs model) | grep -v '^kernels/.*avx')
SIMD_SRCS=$( (srcs kernels; srcs cache; srcs model) | grep '^kernels/.*avx2')
VNNI_SRCS=$(grep "static_library('kq_vnni'" kernels/meson.build | grep -o "'[A-Za-z0-9_]*\.c'" | tr -d "'" | sed 's|^|kernels/|')
CU_SRCS=$(ls kernels/cuda/*.cu)
CFLAGS="-O2 -std=gnu11 -pthread -DNDEBUG -DPIVOT_HAVE_CUDA=1 -Ikernels -Imodel -Icache -I$CUDA_HOME/include -w"

note "compile C (gcc)"
build_c() { # src flags...
    local s=$1; shift
    local o="$B/obj/$(echo "$s" | tr / _)${OBJ_SUFFIX:-}.o"
    gcc $CFLAGS "$@" -c "$s" -o "$o" || { echo "FAIL  gcc $s"; return 1; }
}
export -f build_c; export B CFLAGS
echo "$C_SRCS" | xargs -P "$JOBS" -I{} bash -c 'build_c {}' || fail "C compile"
echo "$SIMD_SRCS" | xargs -P "$JOBS" -I{} bash -c 'build_c {} -mavx2 -mfma -mf16c -ffp-contract=off' || fail "SIMD compile"
if [ -n "$VNNI_SRCS" ]; then
    echo "$VNNI_SRCS" | OBJ_SUFFIX=_vnni xargs -P "$JOBS" -I{} bash -c 'build_c {} -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -ffp-contract=off -DKQ_VNNI=1' || fail "VNNI compile"
fi

note "compile CUDA (nvcc -arch=$ARCH)"
build_cu() {
    local s=$1 o="$B/obj/$(echo "$1" | tr / _).o"
    "$NVCC" -O3 -std=c++17 -arch="$ARCH" -Ikernels -c "$s" -o "$o" || { echo "FAIL  nvcc $s"; return 1; }
}
export -f build_cu; export NVCC ARCH
echo "$CU_SRCS" | xargs -P "$JOBS" -I{} bash -c 'build_cu {}' || fail "CUDA compile"

note "link gpu_check"
gcc $CFLAGS tests/gpu/gpu_check.c tests/gpu/gpu_util.c tests/gpu/gpu_mixed.c tests/gpu/gpu_e2e.c "$B"/obj/*.o -o "$B/gpu_check" \
    -L"$CUDA_LIB" -Wl,-rpath,"$CUDA_LIB" -lcublas -lcudart -lstdc++ -lm -lpthread -ldl -lrt \
    || fail "link gpu_check"

if [ $DRY = 1 ]; then
    note "dry run: built $B/gpu_check; checking the Python side"
    python3 -m py_compile tests/gpu/torch_bench.py tests/gpu/report.py && echo "python scripts compile"
    if [ -x "$B/gpu_check" ]; then
        "$B/gpu_check" --tsv "$OUT/pivot_results.tsv"; rc=$?
        [ $rc = 3 ] && echo "gpu_check: no GPU here, skipped as expected"
    fi
    note "dry run done (status $STATUS)"
    exit $STATUS
fi

if [ -x "$B/gpu_check" ]; then
    note "gpu_check (ops, end to end, benchmark)"
    timeout "${PIVOT_GPU_CHECK_TIMEOUT:-330}" "$B/gpu_check" --tsv "$OUT/pivot_results.tsv" 2>&1 | tee "$OUT/gpu_check.log"
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
