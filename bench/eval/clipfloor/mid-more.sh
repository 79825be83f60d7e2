#!/bin/sh
# D1 (bench/eval/clipfloor/mid-copy.sh) beyond the 1,024-token copy: key-value
# lookup at 1,024 tokens (seeds 1-2) and the copy at 512 and 2,048 tokens
# (seed 7, fresh). ~15 min on the 2-core VM.
# Usage: bench/eval/clipfloor/mid-more.sh [PIVOT_BIN] [OUTDIR]
set -e
. bench/eval/clipfloor/mid-defs.sh # BIN, OUT, PY, runs(), texts(), R, C, D1, D2
runs mid-lk1024 lookup 0.25 1024 "1 2" "full,$D1"
runs mid-c512 copy 0.25 512 "7" "full,$D1"
runs mid-c2048 copy 0.25 2048 "7" "full,$D1"
