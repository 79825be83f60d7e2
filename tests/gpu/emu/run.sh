#!/usr/bin/env bash
# Runs the mixed cache's GPU op checks (tests/gpu/gpu_mixed.c) with the CUDA
# kernels of kernels/cuda/kv_mixed.cu and attention.cu executed on the CPU
# (emu_cuda.h): a check of their indexing, barriers and numerics on machines
# without a GPU. Not a substitute for tests/gpu/run.sh on a GPU.
#   bash tests/gpu/emu/run.sh [BUILD_DIR]   # BUILD_DIR: a meson build (default build-gpuy)
set -eu
cd "$(dirname "$0")/../../.."
BD=${1:-build-gpuy}
O=$BD/gpu-emu
mkdir -p "$O"
E=tests/gpu/emu
for f in kv_mixed attention; do
    python3 $E/emu_prep.py kernels/cuda/$f.cu "$O/$f.cpp"
done
CXX="g++ -std=c++20 -O2 -pthread -w -I$E/include -I$E -Ikernels -Ikernels/cuda"
$CXX -c "$O/kv_mixed.cpp" -o "$O/kv_mixed.o"
$CXX -c "$O/attention.cpp" -o "$O/attention.o"
$CXX -c $E/emu_device.cpp -o "$O/emu_device.o"
CC="gcc -std=gnu11 -O2 -Wall -Wextra -DPIVOT_HAVE_CUDA=1 -Ikernels -Imodel -Icache"
$CC -c tests/gpu/gpu_mixed.c -o "$O/gpu_mixed.o"
$CC -c $E/emu_main.c -o "$O/emu_main.o"
g++ -pthread "$O"/*.o "$BD/libpivotcore.a" "$BD"/kernels/libkq_*.a -lm -o "$O/emu_check"
"$O/emu_check"
