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
P512="full,mikv,mikv;lo-bits=4,mikv;layer-bits=0-4:4/4+15-24:4/4,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4,mikv;lo-bits=4;layer-bits=5-9:2"
for s in 1 2 3; do
    $BIN eval --task copy --policies "$P512" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c512-s$s.json" > "$OUT/c512-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT/c512-s1.json" "$OUT/c512-s2.json" "$OUT/c512-s3.json" > "$OUT/c512.md"
P1k="full,mikv;lo-bits=3,mikv;lo-bits=4/2,mikv;lo-bits=3;layer-bits=15-24:4/4,mikv;lo-bits=3;layer-bits=15-24:4/4+5-9:2,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4+5-9:2"
for s in 1 2; do
    $BIN eval --task copy --policies "$P1k" --ratios 0.25 --length 1024 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c1k-s$s.json" > "$OUT/c1k-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT/c1k-s1.json" "$OUT/c1k-s2.json" > "$OUT/c1k.md"
P8="full,mikv;layer-bits=15-24:8/4+5-9:2,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:8/4+5-9:2"
for s in 1 2 3; do
    $BIN eval --task copy --policies "$P8" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c8-s$s.json" > "$OUT/c8-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT/c8-s1.json" "$OUT/c8-s2.json" "$OUT/c8-s3.json" > "$OUT/c8.md"
PL="full,mikv,mikv;lo-bits=4,mikv;lo-bits=3;layer-bits=0-4:4/4+15-24:4/4,mikv;layer-bits=15-24:8/4+5-9:2"
for s in 1 2; do
    $BIN eval --task lookup --policies "$PL" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/lk-s$s.json" > "$OUT/lk-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT/lk-s1.json" "$OUT/lk-s2.json" > "$OUT/lk.md"
