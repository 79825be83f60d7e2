#!/bin/sh
# Which layers miss their low-tier bits (docs/KV_CACHE.md, "Bits per layer").
# Usage: bench/eval/layers/sweep.sh [PIVOT_BIN] [OUTDIR] [N_LAYERS] [BLOCK]
#   (from the repository root; defaults: build/cli/pivot, bench/eval/layers,
#   30 = SmolLM2-135M, 5; MODEL=path.gguf for another model, SEEDS="1 2")
#
# Starts from uniform rotated K4/V3 (every token but a 32-token FP16 window
# low, groups of 64) and lowers one block of BLOCK layers at a time to two
# bits (layer-bits=A-B:2): the drop in random-word copy against the uniform
# row says how much that block's bits are worth. 2 seeds x 16 samples of
# 512 tokens, ~11 min on the 2-core VM for 30 layers in blocks of 5. The
# pooled table: scripts/pool_eval.py.
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/layers}
NL=${3:-30}
BLK=${4:-5}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-1 2}
U="quant4;lo-bits=4/3;rotate=1;group=64"
POL="full,$U"
a=0
while [ $a -lt "$NL" ]; do
    b=$((a + BLK - 1))
    [ $b -lt "$NL" ] || b=$((NL - 1))
    POL="$POL,$U;layer-bits=$a-$b:2"
    a=$((b + 1))
done
JS=""
for seed in $SEEDS; do
    $BIN eval --task copy ${MODEL:+--model "$MODEL"} --policies "$POL" --length 512 --samples 16 \
        --seed "$seed" --threads 2 --json "$OUT/sweep-s$seed.json" > "$OUT/sweep-s$seed.txt"
    JS="$JS $OUT/sweep-s$seed.json"
done
$PY scripts/pool_eval.py $JS > "$OUT/sweep.md"
