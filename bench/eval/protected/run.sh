#!/bin/sh
# What the protected tokens (4 sinks + 16 recent at INT8, one 32-token high
# page per head: ~0.018 of FP16 at 1,024 tokens) buy on the copy task:
# K4/V3 with the five copying heads at K8/V4 and one budgeted high token,
# with and without them (1,024-token copy, seeds 1-3 x 16 = 48 samples).
# docs/KV_CACHE.md, "More heads or wider ones at 0.25". ~20 min on the 2-core VM.
# Usage: bench/eval/protected/run.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/protected}
PY=${PY:-.venv/bin/python}
P="full,mikv;heads=5:8/4;budget=1;sinks=0;recent=0,mikv;heads=5:8/4;budget=1;sinks=4;recent=0,mikv;heads=5:8/4;budget=1"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --length 1024 --samples 16 --seed $s --threads 1 \
        --json "$OUT/c-s$s.json" > "$OUT/c-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/c-s1.json "$OUT"/c-s2.json "$OUT"/c-s3.json > "$OUT/c1024.md"
