#!/usr/bin/env bash
# The CUDA kernels executed on the CPU (emu_cuda.h: a coroutine per CUDA
# thread, barriers for __syncthreads/__syncwarp/shuffles, cuBLAS as a loop):
# a check of indexing, barriers and numerics on machines without a GPU. Not
# a substitute for tests/gpu/run.sh on a GPU (no timing, no memory model).
#   bash tests/gpu/emu/run.sh [ops|e2e|all]   # default all; OUT dir: build-gpuemu (PIVOT_EMU_BUILD)
#     ops: tests/gpu/gpu_mixed.c's checks of kv_mixed.cu (~1 min)
#     e2e: the tiny synthetic model through model/llama_cuda.c, CUDA (emulated)
#          vs CPU, every cache preset (gpu_e2e.c's run_pair), a process per
#          preset (~3 min with 8 cores)
set -u
cd "$(dirname "$0")/../../.."
WHAT=${1:-all}
O=${PIVOT_EMU_BUILD:-build-gpuemu}
E=tests/gpu/emu
mkdir -p "$O/obj"
JOBS=$(nproc 2>/dev/null || echo 4)
CXX="g++ -std=c++20 -O2 -pthread -w -I$E/include -I$E -Ikernels -Ikernels/cuda"
for f in kernels/cuda/*.cu; do
    b=$(basename "$f" .cu)
    [ "$b" = device ] && continue # emu_device.cpp stands in for it
    python3 $E/emu_prep.py "$f" "$O/$b.cpp" || exit 1
done
ls "$O"/*.cpp | xargs -P "$JOBS" -I{} sh -c "$CXX -c {} -o {}.o" || exit 1
$CXX -c $E/emu_device.cpp -o "$O/emu_device.o" || exit 1
# The engine's C code with PIVOT_HAVE_CUDA, as tests/gpu/run.sh builds it.
srcs() { grep -o "'[A-Za-z0-9_]*\.c'" "$1/meson.build" | tr -d "'" | sed "s|^|$1/|"; }
CC="gcc -std=gnu11 -O2 -pthread -DPIVOT_HAVE_CUDA=1 -Ikernels -Imodel -Icache -w"
export CC O
cc1() { $CC "${@:2}" -c "$1" -o "$O/obj/$(echo "$1" | tr / _)${SUF:-}.o"; }
export -f cc1
# as tests/gpu/run.sh: only kernels/*avx* need ISA flags
(srcs kernels; srcs cache; srcs model) | grep -v '^kernels/.*avx' | xargs -P "$JOBS" -I{} bash -c 'cc1 {}' || exit 1
(srcs kernels; srcs cache; srcs model) | grep '^kernels/.*avx2' | xargs -P "$JOBS" -I{} bash -c 'cc1 {} -mavx2 -mfma -mf16c -ffp-contract=off' || exit 1
grep "static_library('kq_vnni'" kernels/meson.build | grep -o "'[A-Za-z0-9_]*\.c'" | tr -d "'" | sed 's|^|kernels/|' |
    SUF=_vnni xargs -P "$JOBS" -I{} bash -c 'cc1 {} -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -ffp-contract=off -DKQ_VNNI=1' || exit 1
$CC -c tests/gpu/gpu_mixed.c -o "$O/gpu_mixed.o" && $CC -c tests/gpu/gpu_util.c -o "$O/gpu_util.o" &&
    $CC -c $E/emu_main.c -o "$O/emu_main.o" && $CC -c $E/emu_e2e.c -o "$O/emu_e2e.o" || exit 1
LIBS=("$O"/*.cpp.o "$O/emu_device.o" "$O"/obj/*.o "$O/gpu_util.o")
g++ -pthread "$O/emu_main.o" "$O/gpu_mixed.o" "${LIBS[@]}" -lm -o "$O/emu_ops" || exit 1
g++ -pthread "$O/emu_e2e.o" "${LIBS[@]}" -lm -o "$O/emu_e2e" || exit 1
ST=0
if [ "$WHAT" = ops ] || [ "$WHAT" = all ]; then "$O/emu_ops" || ST=1; fi
if [ "$WHAT" = e2e ] || [ "$WHAT" = all ]; then # one process per preset, in parallel
    for p in full scissorhands mikv h2o streaming quant4 quant2 split; do
        "$O/emu_e2e" $p > "$O/e2e_$p.log" 2>&1 &
    done
    wait
    cat "$O"/e2e_*.log
    grep -q '^FAIL' "$O"/e2e_*.log && ST=1
fi
exit $ST
