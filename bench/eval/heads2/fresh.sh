#!/bin/sh
# The best of run.sh / run3.sh on samples it was not chosen on (seeds 4-6 x
# 16 = 48), against the reference of "At 0.25 with two-byte scales".
# docs/KV_CACHE.md, "More heads or wider ones at 0.25". ~6 min on the 2-core VM.
# Usage: bench/eval/heads2/fresh.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads2}
PY=${PY:-.venv/bin/python}
L="mikv;lo-bits=4/2"
P="full,$L;heads=5:8/4;layer-bits=10-14:4/3,$L;heads=8:8/4;layer-bits=9-15:4/3"
for s in 4 5 6; do
    $B eval --task copy --policies "$P" --ratios 0.25 --length 1024 --samples 16 --seed $s \
        --threads 2 --json "$OUT/fresh-s$s.json" > "$OUT/fresh-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/fresh-s4.json "$OUT"/fresh-s5.json "$OUT"/fresh-s6.json > "$OUT/fresh.md"
