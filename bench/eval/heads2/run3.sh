#!/bin/sh
# Follow-up of run.sh (same samples): the bytes left under 0.25 by more
# copying heads at K8/V4 spent on 3-bit values in more layers.
# docs/KV_CACHE.md, "More heads or wider ones at 0.25". ~8 min on the 2-core VM.
# Usage: bench/eval/heads2/run3.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads2}
PY=${PY:-.venv/bin/python}
L="mikv;lo-bits=4/2"
P="full,$L;heads=8:8/4;layer-bits=10-14:4/3,$L;heads=7:8/4;layer-bits=10-14:4/3,$L;heads=8:8/4;layer-bits=9-15:4/3"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --ratios 0.25 --length 1024 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c3-s$s.json" > "$OUT/c3-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/c3-s1.json "$OUT"/c3-s2.json "$OUT"/c3-s3.json > "$OUT/c3.md"
