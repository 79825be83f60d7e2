#!/bin/sh
# D1 (bench/eval/clipfloor/mid-copy.sh) beyond the 1,024-token copy: key-value
# lookup at 1,024 tokens (seeds 1-2) and the copy at 512 and 2,048 tokens
# (seed 7, fresh). ~15 min on the 2-core VM.
# Usage: bench/eval/clipfloor/mid-more.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
D1="$R;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5"
. bench/eval/runs.sh # runs(), texts()
runs mid-lk1024 lookup 0.25 1024 "1 2" "full,$D1"
runs mid-c512 copy 0.25 512 "7" "full,$D1"
runs mid-c2048 copy 0.25 2048 "7" "full,$D1"
