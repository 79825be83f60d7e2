#!/bin/sh
# D1 (bench/eval/clipfloor/mid-copy.sh) on a fifth text, never used before and
# of GPL-3's kind (a license: the text where D1's top-1 sits at 0.95): LGPL-2.1,
# 8 windows of 1,024 tokens. ~4 min on the 2-core VM.
# Usage: bench/eval/clipfloor/mid-lgpl.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
$BIN eval --task ppl --text /usr/share/common-licenses/LGPL-2.1 --policies "full,$C,$D1" --ratios 0.25 \
    --length 1024 --prefix 256 --samples 8 --threads 2 --json "$OUT/mid-ppl-LGPL-2.1.json" \
    > "$OUT/mid-ppl-LGPL-2.1.txt"
# and D1 on argparse.py at 16 windows, the count r28-more.sh used for recent=28
$BIN eval --task ppl --text /usr/lib/python3.11/argparse.py --policies "full,$D1" --ratios 0.25 \
    --length 1024 --prefix 256 --samples 16 --threads 2 --json "$OUT/mid-ppl16-argparse.json" \
    > "$OUT/mid-ppl16-argparse.txt"
