#!/bin/sh
# The mikv preset with its heads knob (the model's five copying KV heads at
# INT8, found at load) against the same preset without it (heads=0) and
# full: docs/KV_CACHE.md, "The preset finds its heads". ~25 min on the
# 2-core VM. Usage: bench/eval/preset/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/preset}
PY=${PY:-.venv/bin/python}
. bench/eval/runs.sh # runs(), texts()
P="full,mikv,mikv;heads=0"
runs c512 copy 0.33 512 "1 2 3" "$P"
runs lk lookup 0.33 512 "1 2" "$P"
texts ppl 0.33 "$P"
