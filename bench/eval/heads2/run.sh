#!/bin/sh
# Which heads, at which widths, at 0.25 of FP16 (1,024-token copy, seeds
# 1-3 x 16 = 48 samples per row): the reference (five copying heads at
# K8/V4 over K4/V2, layers 10-14 at V3) against the same bytes spent on
# more heads at K4/V4, on values instead of keys, or on more heads.
# docs/KV_CACHE.md, "More heads or wider ones at 0.25". ~15 min on the 2-core VM.
# Usage: bench/eval/heads2/run.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads2}
PY=${PY:-.venv/bin/python}
L="mikv;lo-bits=4/2"
P="full,$L;heads=5:8/4;layer-bits=10-14:4/3,$L;heads=5:4/8;layer-bits=10-14:4/3,$L;heads=10:4/4;layer-bits=10-14:4/3"
P="$P,$L;heads=12:4/4,$L;heads=8:8/4,$L;heads=11:4/4;layer-bits=10-14:4/3,$L;heads=5:8/8"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --ratios 0.25 --length 1024 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c1024-s$s.json" > "$OUT/c1024-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/c1024-s1.json "$OUT"/c1024-s2.json "$OUT"/c1024-s3.json > "$OUT/c1024.md"
