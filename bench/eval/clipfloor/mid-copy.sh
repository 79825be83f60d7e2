#!/bin/sh
# Between C (layers 0-4 min-max) and clip-floor=0.8 (docs/KV_CACHE.md, "How
# far to clip, and where"): layers 0-4's value ranges clipped mildly, floor
# 0.9 (D1) or 0.85 (D2), C's floors elsewhere. Copy on seeds 1-6 (seen by the
# earlier sections: selection) and 7-9 (never used before: validation).
# ~25 min on the 2-core VM. Usage: bench/eval/clipfloor/mid-copy.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
D1="$R;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5"
D2="$R;clip=values;clip-floor=0.85+5-9:0.8+10-14:1+15-29:0.5"
. bench/eval/runs.sh # runs(), texts()
runs mid-c1024 copy 0.25 1024 "1 2 3 4 5 6" "full,$D1,$D2"
runs mid-c1024-fresh copy 0.25 1024 "7 8 9" "full,$D1,$D2"
