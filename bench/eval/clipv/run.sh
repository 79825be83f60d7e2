#!/bin/sh
# Clipped value records (clip=values: least-squares ranges on values, keys
# min-max) at 0.25 of FP16, on top of the best 0.25 configuration of "At
# 0.25 with two-byte scales" (R): random-word copy of 1,024 tokens on seeds
# 1-3 and on fresh seeds 4-6, key-value lookup of 1,024 tokens on seeds 1-2
# (16 samples each), perplexity over 8 windows of 1,024 tokens of two texts.
# docs/KV_CACHE.md, "Clipped values at 0.25". ~20 min on the 2-core VM.
# Usage: bench/eval/clipv/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipv}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
P="full,$R,$R;clip=values"
. bench/eval/runs.sh # runs(), texts()
runs c1024 copy 0.25 1024 "1 2 3" "$P"
runs c1024-fresh copy 0.25 1024 "4 5 6" "$P"
runs lk1024 lookup 0.25 1024 "1 2" "$P"
texts ppl 0.25 "$P"
