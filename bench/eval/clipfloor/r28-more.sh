#!/bin/sh
# The rest of D1;recent=28's checks (bench/eval/clipfloor/mid-r28.sh): the
# two other texts of "How far to clip, and where" and key-value lookup at
# 512 tokens (seeds 1-2). ~10 min on the 2-core VM.
# Usage: bench/eval/clipfloor/r28-more.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
for text in /usr/lib/python3.11/argparse.py /usr/lib/python3.11/subprocess.py; do
    t=$(basename "$text" .py)
    $BIN eval --task ppl --text "$text" --policies "full,$D1;recent=28" --ratios 0.25 --length 1024 \
        --prefix 256 --samples 16 --threads 2 --json "$OUT/r28-ppl2-$t.json" > "$OUT/r28-ppl2-$t.txt"
done
runs r28-lk512 lookup 0.25 512 "1 2" "full,$D1;recent=28"
