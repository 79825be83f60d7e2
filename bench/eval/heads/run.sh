#!/bin/sh
# Low-tier widths per KV head: INT8 for the five induction heads of
# SmolLM2-135M (bench/eval/heads/induction.py ranks them), 3 or 4 bits
# elsewhere, against the best per-layer allocation (bench/eval/layers) at
# equal memory (docs/KV_CACHE.md, "Bits per head"). Usage, from the
# repository root:
#   bench/eval/heads/run.sh [PIVOT_BIN] [OUTDIR] [PART...]
# Parts (all by default): h512 (copy at 0.33, 512-token samples, seeds 1-3),
# h1k (copy at 0.25, 1,024 tokens, seeds 1-2), h1kb (the same with what
# fits 0.25: two-bit values in layers 5-9, or the five heads at K8/V4), h1kc
# (two more: K8/V8 paid by V2 in layers 5-11, eight heads at K8/V4), h1kd
# (K4/V2 elsewhere instead of K3/V3, copy and text at 0.25), lk1k (lookup at
# 0.25 with ~1,000-token samples), h1ke (0.125:
# every other head drops what it demotes, layer-bits width 0), lk
# (lookup at 0.33 and 0.25, seeds 1-2), ppl (natural text at 0.33 and 0.25:
# 8 windows of 1,024 tokens of GPL-3 and argparse.py, as bench/eval/run_docs.sh).
# 16 samples a seed; each part ~4-10 min on the 2-core VM.
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval/heads}
shift 2 2>/dev/null || shift $#
PARTS=${*:-h512 h1k h1kb h1kc h1kd lk1k h1ke lk ppl}
PY=${PY:-.venv/bin/python}
T5="18.2:8+17.1:8+23.0:8+20.2:8+23.2:8" # the five heads induction.py ranks first
T5KV="18.2:8/4+17.1:8/4+23.0:8/4+20.2:8/4+23.2:8/4"
T10MORE="20.1:8+21.2:8+24.0:8+22.2:8+24.1:8" # induction.py's sixth to tenth
PREV44="11.0:4/4+1.0:4/4+16.0:4/4+10.1:4/4" # the top previous-token heads (induction.py)
LAYERS8="15-24:8/4+5-9:2"                # the best per-layer allocation at 0.33
LAYERS3="15-24:4/4+5-9:2"                # ... and with 3 bits elsewhere at 0.25
. bench/eval/runs.sh # runs(), texts()
for part in $PARTS; do
    case $part in
    h512) runs h512 copy 0.33 512 "1 2 3" "full,mikv;layer-bits=$LAYERS8,mikv;layer-bits=$T5,mikv;lo-bits=3;layer-bits=$T5" ;;
    h1k) runs h1k copy 0.25 1024 "1 2" "full,mikv;lo-bits=3;layer-bits=$LAYERS3,mikv;lo-bits=3;layer-bits=$T5,quant4;lo-bits=3;group=64;rotate=1;layer-bits=$T5" ;;
    h1kc) runs h1kc copy 0.25 1024 "1 2" "full,mikv;lo-bits=3;layer-bits=5-11:3/2+$T5,mikv;lo-bits=3;layer-bits=5-9:3/2+$T5KV+20.1:8/4+21.2:8/4+24.0:8/4" ;;
    h1kd) runs h1kd copy 0.25 1024 "1 2" "full,mikv;lo-bits=4/2;layer-bits=$T5KV,mikv;lo-bits=4/2;layer-bits=$T5KV+$PREV44"
          texts ppl25d 0.25 "full,mikv;lo-bits=4/2;layer-bits=$T5KV,mikv;lo-bits=4/2;layer-bits=$T5KV+$PREV44" ;;
    h1ke) runs h1ke copy 0.125 1024 "1 2" "full,scissorhands,mikv;lo-bits=8;layer-bits=0-29:0+$T5,mikv;lo-bits=8;layer-bits=0-29:0+$T5+$T10MORE" ;;
    h1kb) runs h1kb copy 0.25 1024 "1 2" "full,mikv;lo-bits=3;layer-bits=5-9:3/2+$T5,mikv;lo-bits=3;layer-bits=$T5KV,quant4;lo-bits=3;group=64;rotate=1;recent=16;layer-bits=5-9:3/2+$T5" ;;
    lk1k) runs lk1k lookup 0.25 1024 "1 2" "full,mikv;lo-bits=4/2;layer-bits=$T5KV,mikv;lo-bits=4/2" ;;
    lk) runs lk lookup 0.33,0.25 512 "1 2" "full,mikv;layer-bits=$LAYERS8,mikv;layer-bits=$T5,mikv;lo-bits=3;layer-bits=5-9:3/2+$T5" ;;
    ppl) texts ppl 0.33,0.25 "full,mikv;layer-bits=$T5,mikv;lo-bits=3;layer-bits=5-9:3/2+$T5"
         texts ppl25 0.25 "full,mikv;lo-bits=3;layer-bits=$T5KV" ;;
    esac
done
