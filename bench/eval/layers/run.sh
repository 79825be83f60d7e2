#!/bin/sh
# Per-layer low-tier widths against uniform ones at equal memory
# (docs/KV_CACHE.md, "Bits per layer"). Usage, from the repository root:
#   bench/eval/layers/run.sh [PIVOT_BIN] [OUTDIR]
# Random-word copy, 16 samples a seed: at 0.33 of FP16 with 512-token
# samples (seeds 1-3), at 0.25 with 1,024-token samples (seeds 1-2; where
# 3-bit mixes fit), and INT8 keys in the sensitive layers at 0.33 (seeds
# 1-3); then key-value lookup at 0.33 (seeds 1-2). ~12 + ~10 + ~7 + ~9 min
# on the 2-core VM. The layer ranges come
# from bench/eval/layers/sweep.sh on SmolLM2-135M (30 layers).
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/layers}
PY=${PY:-.venv/bin/python}
. bench/eval/runs.sh # runs()
runs c512 copy 0.33 512 "1 2 3" "full,mikv,mikv;lo-bits=4,mikv;layer-bits=0-4:4/4+15-24:4/4,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4,mikv;lo-bits=4;layer-bits=5-9:2"
runs c1k copy 0.25 1024 "1 2" "full,mikv;lo-bits=3,mikv;lo-bits=4/2,mikv;lo-bits=3;layer-bits=15-24:4/4,mikv;lo-bits=3;layer-bits=15-24:4/4+5-9:2,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4+5-9:2"
runs c8 copy 0.33 512 "1 2 3" "full,mikv;layer-bits=15-24:8/4+5-9:2,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:8/4+5-9:2"
runs lk lookup 0.33 512 "1 2" "full,mikv,mikv;lo-bits=4,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4,mikv;layer-bits=15-24:8/4+5-9:2"
