#!/bin/sh
# What the protected tokens (4 sinks + 16 recent at INT8, one 32-token high
# page per head: ~0.018 of FP16 at 1,024 tokens) buy on the copy task:
# K4/V3 with the five copying heads at K8/V4 and one budgeted high token
# (explicit budgets: the 0.25 solver leaves them alone), with and without
# them; 1,024-token copy, seeds 1-3 x 16 = 48 samples. docs/KV_CACHE.md,
# "More heads, wider heads, or no protected page at 0.25". ~20 min on the 2-core VM.
# Usage: bench/eval/protected/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/protected}
PY=${PY:-.venv/bin/python}
H="mikv;heads=5:8/4;budget=1"
. bench/eval/runs.sh # runs()
runs c copy 0.25 1024 "1 2 3" "full,$H;sinks=0;recent=0,$H;sinks=4;recent=0,$H"
