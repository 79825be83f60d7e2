#!/bin/sh
# Between C (layers 0-4 min-max) and clip-floor=0.8 (docs/KV_CACHE.md, "How
# far to clip, and where"): layers 0-4's value ranges clipped mildly, floor
# 0.9 (D1) or 0.85 (D2), C's floors elsewhere. Copy on seeds 1-6 (seen by the
# earlier sections: selection) and 7-9 (never used before: validation).
# ~25 min on the 2-core VM. Usage: bench/eval/clipfloor/mid-copy.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
runs mid-c1024 copy 0.25 1024 "1 2 3 4 5 6" "full,$D1,$D2"
runs mid-c1024-fresh copy 0.25 1024 "7 8 9" "full,$D1,$D2"
