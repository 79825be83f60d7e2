#!/bin/sh
# How far to clip, and where (docs/KV_CACHE.md): R (the best 0.25
# configuration, min-max ranges) with value ranges clipped down to 0.8 of
# min-max in layers 5-9 and by the full least-squares search in layers
# 15-29 (clip-floor=1+5-9:0.8+15-29:0.5), chosen on copy seeds 1-3 and the
# two texts (bench/eval/cliplayers/), checked here on fresh copy seeds 4-6,
# key-value lookup and a third text (subprocess.py, 16 windows).
# ~15 min on the 2-core VM. Usage: bench/eval/clipfloor/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
C="$R;clip=values;clip-floor=1+5-9:0.8+15-29:0.5"
. bench/eval/runs.sh # runs(), texts()
runs c1024 copy 0.25 1024 "1 2 3" "full,$C"
runs c1024-fresh copy 0.25 1024 "4 5 6" "full,$C"
runs lk1024 lookup 0.25 1024 "1 2" "full,$C"
texts ppl 0.25 "full,$C"
$BIN eval --task ppl --text /usr/lib/python3.11/subprocess.py --policies "full,$R,$R;clip=values,$C" \
    --ratios 0.25 --length 1024 --prefix 256 --samples 16 --threads 2 --json "$OUT/ppl-subprocess.json" \
    > "$OUT/ppl-subprocess.txt"
