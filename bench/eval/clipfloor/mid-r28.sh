#!/bin/sh
# D1 (bench/eval/clipfloor/mid-copy.sh) needs 0.260 of FP16 at 512 tokens:
# its smallest high tier is one 32-token INT8 page holding only the 20
# protected tokens (4 sinks + 16 recent), and the low tier's last page is
# partial. With recent=28 the protected tokens fill that page exactly (the
# page is paid anyway) and the low tier ends on a page boundary: 0.246 at
# 512. Does it keep D1's quality? Fresh copy seeds 7-9 at 512 and 1,024
# tokens, the GPL-3 and typing.py texts. ~15 min on the 2-core VM.
# Usage: bench/eval/clipfloor/mid-r28.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
runs r28-c512 copy 0.25 512 "7 8 9" "full,$D1;recent=28"
runs r28-c1024 copy 0.25 1024 "7 8 9" "full,$D1;recent=28"
for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/typing.py; do
    t=$(basename "$text" .py)
    $BIN eval --task ppl --text "$text" --policies "full,$D1,$D1;recent=28" --ratios 0.25 --length 1024 \
        --prefix 256 --samples 16 --threads 2 --json "$OUT/r28-ppl-$t.json" > "$OUT/r28-ppl-$t.txt"
done
$PY scripts/pool_eval.py "$OUT"/r28-ppl-*.json > "$OUT/r28-ppl.md"
