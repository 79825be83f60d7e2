#!/bin/sh
# The first five layers' values at 3 bits instead of clipped 2 bits
# (docs/KV_CACHE.md, "How far to clip, and where"): V1 keeps them min-max,
# V2 clips them down to 0.8; both with C's floors elsewhere. Copy on seeds
# 1-6 and the two texts. ~16 min on the 2-core VM.
# Usage: bench/eval/clipfloor/v3first.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
B="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=0-4:4/3+10-14:4/3;clip=values"
P="full,$B;clip-floor=1+5-9:0.8+15-29:0.5,$B;clip-floor=0.8+10-14:1+15-29:0.5"
. bench/eval/runs.sh # runs(), texts()
runs v3-c1024 copy 0.25 1024 "1 2 3 4 5 6" "$P"
texts v3-ppl 0.25 "$P"
