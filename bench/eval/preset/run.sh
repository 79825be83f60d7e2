#!/bin/sh
# The mikv preset with its heads knob (the model's five copying KV heads at
# INT8, found at load) against the same preset without it (heads=0) and
# full: docs/KV_CACHE.md, "The preset finds its heads". ~25 min on the
# 2-core VM. Usage: bench/eval/preset/run.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/preset}
PY=${PY:-.venv/bin/python}
P="full,mikv,mikv;heads=0"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c512-s$s.json" > "$OUT/c512-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/c512-s1.json "$OUT"/c512-s2.json "$OUT"/c512-s3.json > "$OUT/c512.md"
for s in 1 2; do
    $B eval --task lookup --policies "$P" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/lk-s$s.json" > "$OUT/lk-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/lk-s1.json "$OUT"/lk-s2.json > "$OUT/lk.md"
for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/argparse.py; do
    name=$(basename "$text" .py)
    $B eval --task ppl --text "$text" --policies "$P" --ratios 0.33 --length 1024 --prefix 256 \
        --samples 8 --threads 2 --json "$OUT/ppl-$name.json" > "$OUT/ppl-$name.txt"
done
