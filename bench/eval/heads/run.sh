#!/bin/sh
# Low-tier widths per KV head: INT8 for the five induction heads of
# SmolLM2-135M (bench/eval/heads/induction.py ranks them), 3 or 4 bits
# elsewhere, against the best per-layer allocation (bench/eval/layers) at
# equal memory (docs/KV_CACHE.md, "Bits per head"). Usage, from the
# repository root:
#   bench/eval/heads/run.sh [PIVOT_BIN] [OUTDIR] [PART...]
# Parts (all by default): h512 (copy at 0.33, 512-token samples, seeds 1-3),
# h1k (copy at 0.25, 1,024 tokens, seeds 1-2), lk (lookup at 0.33 and 0.25,
# seeds 1-2). 16 samples a seed; ~9 + ~13 + ~8 min on the 2-core VM.
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads}
shift 2 2>/dev/null || shift $#
PARTS=${*:-h512 h1k lk}
PY=${PY:-.venv/bin/python}
T5="18.2:8+17.1:8+23.0:8+20.2:8+23.2:8" # the five heads induction.py ranks first
LAYERS8="15-24:8/4+5-9:2"                # the best per-layer allocation at 0.33
LAYERS3="15-24:4/4+5-9:2"                # ... and with 3 bits elsewhere at 0.25
# runs NAME TASK RATIOS LENGTH "SEEDS" POLICIES: one report per seed, pooled
runs() {
    name=$1 task=$2 ratio=$3 len=$4 seeds=$5 pol=$6 js=""
    for s in $seeds; do
        $BIN eval --task "$task" --policies "$pol" --ratios "$ratio" --length "$len" --samples 16 \
            --seed "$s" --threads 2 --json "$OUT/$name-s$s.json" > "$OUT/$name-s$s.txt"
        js="$js $OUT/$name-s$s.json"
    done
    $PY scripts/pool_eval.py $js > "$OUT/$name.md"
}
for part in $PARTS; do
    case $part in
    h512) runs h512 copy 0.33 512 "1 2 3" "full,mikv;layer-bits=$LAYERS8,mikv;layer-bits=$T5,mikv;lo-bits=3;layer-bits=$T5" ;;
    h1k) runs h1k copy 0.25 1024 "1 2" "full,mikv;lo-bits=3;layer-bits=$LAYERS3,mikv;lo-bits=3;layer-bits=$T5,quant4;lo-bits=3;group=64;rotate=1;layer-bits=$T5" ;;
    lk) runs lk lookup "0.33 0.25" 512 "1 2" "full,mikv;layer-bits=$LAYERS8,mikv;layer-bits=$T5,mikv;lo-bits=3;layer-bits=$T5" ;;
    esac
done
