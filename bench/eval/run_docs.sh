#!/bin/sh
# The measurements behind docs/KV_CACHE.md "Quality vs memory (measured)".
# Usage: bench/eval/run_docs.sh [PIVOT_BIN] [OUTDIR]   (from the repository root)
set -e
BIN=${1:-build/server/pivot}
OUT=${2:-bench/eval}
POL='full,scissorhands,mikv,mikv,recent=8,group=64;h2o,streaming,quant4,quant2'
R=0.5,0.33,0.25,0.2,0.125
T=${PIVOT_THREADS:-2}
$BIN eval --task ppl --policies "$POL" --ratios $R --length 320 --prefix 64 --samples 2 \
    --threads $T --json "$OUT/ppl.json" > "$OUT/ppl.txt"
$BIN eval --task copy --policies "$POL" --ratios $R --length 193 --samples 2 --seed 1 \
    --threads $T --json "$OUT/copy.json" > "$OUT/copy.txt"
$BIN eval --task retrieval --policies "$POL" --ratios $R --lines 8 --digits 3 --samples 10 \
    --seed 1 --threads $T --json "$OUT/retrieval.json" > "$OUT/retrieval.txt"
# MiKV with an INT4 low tier (the INT2 tier is what limits quality here).
$BIN eval --task ppl --policies 'full,mikv,lo-bits=4,recent=8,group=64' --ratios 0.5,0.33 \
    --length 320 --prefix 64 --samples 2 --threads $T --json "$OUT/ppl_mikv4.json" \
    > "$OUT/ppl_mikv4.txt"
