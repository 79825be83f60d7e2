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
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/scales}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;scale-bits=16"
P="full,$R,$R;scale-bits=8,$R;scale-bits=8;layer-bits=10-14:4/3"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --ratios 0.25 --length 1024 --samples 16 --seed $s \
        --threads 2 --json "$OUT/c1024-s$s.json" > "$OUT/c1024-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/c1024-s1.json "$OUT"/c1024-s2.json "$OUT"/c1024-s3.json > "$OUT/c1024.md"
for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/argparse.py; do
    name=$(basename "$text" .py)
    $B eval --task ppl --text "$text" --policies "$P" --ratios 0.25 --length 1024 --prefix 256 \
        --samples 8 --threads 2 --json "$OUT/ppl-$name.json" > "$OUT/ppl-$name.txt"
done
# The preset at its 0.33 target with and without two-byte scales (512-token
# copy, seeds 1-3 x 16; text as above): ~14 min more.
P="full,mikv;scale-bits=16,mikv;scale-bits=8"
for s in 1 2 3; do
    $B eval --task copy --policies "$P" --ratios 0.33 --length 512 --samples 16 --seed $s \
        --threads 2 --json "$OUT/p33-c512-s$s.json" > "$OUT/p33-c512-s$s.txt"
done
$PY scripts/pool_eval.py "$OUT"/p33-c512-s1.json "$OUT"/p33-c512-s2.json "$OUT"/p33-c512-s3.json > "$OUT/p33-c512.md"
for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/argparse.py; do
    name=$(basename "$text" .py)
    $B eval --task ppl --text "$text" --policies "$P" --ratios 0.33 --length 1024 --prefix 256 \
        --samples 8 --threads 2 --json "$OUT/p33-ppl-$name.json" > "$OUT/p33-ppl-$name.txt"
done
