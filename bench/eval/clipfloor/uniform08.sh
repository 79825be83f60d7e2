#!/bin/sh
# The other end of the frontier in docs/KV_CACHE.md "How far to clip, and
# where": value ranges clipped down to 0.8 of min-max in every layer
# (clip-floor=0.8; on seeds 1-3 and the two texts: bench/eval/cliplayers/a08-*),
# on the fresh copy seeds 4-6 and the third text. ~8 min on the 2-core VM.
# Usage: bench/eval/clipfloor/uniform08.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
U="$R;clip=values;clip-floor=0.8"
. bench/eval/runs.sh # runs()
runs u08-c1024-fresh copy 0.25 1024 "4 5 6" "full,$U"
$BIN eval --task ppl --text /usr/lib/python3.11/subprocess.py --policies "full,$U" \
    --ratios 0.25 --length 1024 --prefix 256 --samples 16 --threads 2 --json "$OUT/u08-ppl-subprocess.json" \
    > "$OUT/u08-ppl-subprocess.txt"
