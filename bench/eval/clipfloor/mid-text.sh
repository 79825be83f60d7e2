#!/bin/sh
# The text side of bench/eval/clipfloor/mid-copy.sh: C, D1 and D2 on the three
# texts of "How far to clip, and where" (selection) and on a fourth never used
# before, typing.py (validation, 16 windows), with top-1 intervals; and C's
# copy on the fresh seeds 7-9 for comparison.
# ~20 min on the 2-core VM. Usage: bench/eval/clipfloor/mid-text.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
texts mid-ppl 0.25 "full,$C,$D1,$D2"
for text in /usr/lib/python3.11/subprocess.py /usr/lib/python3.11/typing.py; do
    t=$(basename "$text" .py)
    $BIN eval --task ppl --text "$text" --policies "full,$C,$D1,$D2" --ratios 0.25 --length 1024 \
        --prefix 256 --samples 16 --threads 2 --json "$OUT/mid-ppl-$t.json" > "$OUT/mid-ppl-$t.txt"
done
$PY scripts/pool_eval.py "$OUT"/mid-ppl-*.json > "$OUT/mid-ppl.md"
runs midC-c1024-fresh copy 0.25 1024 "7 8 9" "full,$C"
