#!/bin/sh
# Where clipped values help the copy and where they cost text (docs/KV_CACHE.md,
# "How far to clip, and where"): R;clip=values with the clipping limited to
# layer ranges and/or to a smallest shrink factor, per variant copy of 1,024
# tokens on seeds 1-3 and the two texts (~4.5 min a variant on the 2-core VM).
# The results here were measured with bench/experiments/clip-layers.patch
# on 537241d (env PIVOT_CLIP_SPEC / PIVOT_CLIP_AMIN, layers not named
# unclipped); the clip-floor knob that replaced it gives the same figures to
# the last digit (checked on e5-9l05), and this script spells each variant
# with the knob.
# Usage: bench/eval/cliplayers/run.sh [PIVOT_BIN] [OUTDIR]
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/cliplayers}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3;clip=values"
. bench/eval/runs.sh # runs(), texts()
for v in "l0-14 1+0-14:0.5" "l15-29 1+15-29:0.5" "a08 0.8" "a09 0.9" "e08l05 0-14:0.8+15-29:0.5" \
         "e09l05 0-14:0.9+15-29:0.5" "e5-9l05 1+5-9:0.8+15-29:0.5" "e0-4l05 1+0-4:0.8+15-29:0.5" \
         "l10-29 1+10-29:0.5"; do
    vname=${v%% *} floor=${v#* }
    runs "$vname-c1024" copy 0.25 1024 "1 2 3" "full,$R;clip-floor=$floor"
    texts "$vname-ppl" 0.25 "full,$R;clip-floor=$floor"
done
