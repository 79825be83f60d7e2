#!/bin/sh
# The same two configurations as fresh.sh on natural text at 0.25: 8 windows
# of 1,024 tokens (256 prefilled, 768 scored) of each text.
# docs/KV_CACHE.md, "More heads or wider ones at 0.25".
# Usage: bench/eval/heads2/ppl.sh [PIVOT_BIN] [OUTDIR]
set -e
B=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads2}
L="mikv;lo-bits=4/2"
P="full,$L;heads=5:8/4;layer-bits=10-14:4/3,$L;heads=8:8/4;layer-bits=9-15:4/3"
for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/argparse.py; do
    name=$(basename "$text" .py)
    $B eval --task ppl --text "$text" --policies "$P" --ratios 0.25 --length 1024 --prefix 256 \
        --samples 8 --threads 2 --json "$OUT/ppl-$name.json" > "$OUT/ppl-$name.txt"
done
