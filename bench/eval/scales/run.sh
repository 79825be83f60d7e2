#!/bin/sh
# Two-byte scales (scale-bits=8) at 0.25 of FP16, 1,024-token samples: the
# reference of "At 0.25 on text" (K4/V2 with the five copying heads at
# K8/V4), the same with two-byte scales, and with the bytes they free spent
# on 3-bit values in layers 10-14; full alongside. docs/KV_CACHE.md, "At
# 0.25 with two-byte scales"; then the preset at 0.33 with and without them
# (the preset has them since this measurement: fp16 ones are scale-bits=16).
# ~31 min on the 2-core VM.
# Usage: bench/eval/scales/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/scales}
PY=${PY:-.venv/bin/python}
. bench/eval/runs.sh # runs(), texts()
R="mikv;lo-bits=4/2;heads=5:8/4;scale-bits=16"
P="full,$R,$R;scale-bits=8,$R;scale-bits=8;layer-bits=10-14:4/3"
runs c1024 copy 0.25 1024 "1 2 3" "$P"
texts ppl 0.25 "$P"
# The preset at its 0.33 target with and without two-byte scales (512-token
# copy, seeds 1-3 x 16; text as above): ~14 min more.
P="full,mikv;scale-bits=16,mikv;scale-bits=8"
runs p33-c512 copy 0.33 512 "1 2 3" "$P"
texts p33-ppl 0.33 "$P"
