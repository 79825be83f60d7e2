#!/bin/sh
# Which copying heads, at which widths, at 0.25 of FP16 (docs/KV_CACHE.md,
# "More heads, wider heads, or no protected page at 0.25"); 1,024-token
# copy, 16 samples per seed. L = K4/V2 with the preset's two-byte scales;
# R = L with the five copying heads at K8/V4 and layers 10-14 at V3 (the
# reference of "At 0.25 with two-byte scales"). Parts:
#   c1024  seeds 1-3: R against the same bytes on more heads at K4/V4, on
#          values instead of keys, or on eight heads (~15 min on the 2-core VM)
#   c3     seeds 1-3: eight or seven heads at K8/V4 with the bytes left spent
#          on 3-bit values in more layers (~7 min)
#   fresh  seeds 4-6 (not used to choose): R against the best of c3 (~6 min)
#   ppl    the same two on both texts (~8 min)
# Usage: bench/eval/heads2/run.sh [PIVOT_BIN] [OUTDIR] [PARTS...]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads2}
shift 2 2>/dev/null || shift $#
PARTS=${*:-c1024 c3 fresh ppl}
PY=${PY:-.venv/bin/python}
L="mikv;lo-bits=4/2"
R="$L;heads=5:8/4;layer-bits=10-14:4/3"
BEST="$L;heads=8:8/4;layer-bits=9-15:4/3"
. bench/eval/runs.sh # runs(), texts()
for part in $PARTS; do
    case $part in
    c1024) runs c1024 copy 0.25 1024 "1 2 3" "full,$R,$L;heads=5:4/8;layer-bits=10-14:4/3,$L;heads=10:4/4;layer-bits=10-14:4/3,$L;heads=12:4/4,$L;heads=8:8/4,$L;heads=11:4/4;layer-bits=10-14:4/3,$L;heads=5:8/8" ;;
    c3) runs c3 copy 0.25 1024 "1 2 3" "full,$L;heads=8:8/4;layer-bits=10-14:4/3,$L;heads=7:8/4;layer-bits=10-14:4/3,$BEST" ;;
    fresh) runs fresh copy 0.25 1024 "4 5 6" "full,$R,$BEST" ;;
    ppl) texts ppl 0.25 "full,$R,$BEST" ;;
    esac
done
