#!/bin/sh
# old (0706eda) vs final (ac7b763) bench_attn binaries as $BA_DIR/ba_old and $BA_DIR/ba_final;
# old bench_attn, AVX-512 and AVX2 (PIVOT_SIMD=avx2), 2k and 8k, alternating
for ctx in 2048 8192; do
  for isa in avx512 avx2; do
    for i in 1 2 3; do
      for b in old final; do
        printf "%s %s %s %s " $ctx $isa $i $b
        PIVOT_SIMD=$isa BENCH_STEPS=128 BENCH_CLOCK=thread ${BA_DIR:-/tmp}/ba_$b $ctx full mikv 2>&1 | tail -2 | awk '{printf "%s prompt %s decode %s | ", $1, $2, $3}'
        echo
      done
    done
  done
done
