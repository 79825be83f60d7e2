# Sourced by the mid-*.sh and r28-*.sh scripts of this folder (one experiment,
# "A mild clip in the first five layers" in docs/KV_CACHE.md): the binary and
# output folder from the caller's arguments, runs()/texts(), and the policies
# they compare, written once.
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/clipfloor}
PY=${PY:-.venv/bin/python}
R="mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3"
C="$R;clip=values;clip-floor=1+5-9:0.8+15-29:0.5"
D1="$R;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5"
D2="$R;clip=values;clip-floor=0.85+5-9:0.8+10-14:1+15-29:0.5"
. bench/eval/runs.sh # runs(), texts()
