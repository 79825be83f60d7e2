#!/bin/sh
# Budgets per layer at 512 tokens, 0.25 (docs/KV_CACHE.md, "A budget per
# layer at 512 tokens"). Needs a pivot built with
# bench/experiments/layer-budget.patch (PIVOT_LB="A-B:N+C-D:M" gives layers
# A..B a high budget of N, the rest the spec's): git apply the patch, build,
# copy build/cli/pivot to BIN, revert. Prints one line per run: text | layer
# budgets | the policy beyond E (when another) | KV memory, delta ppl %, top-1 (+- 95%), KL. 16 windows of 512
# tokens (128 prefilled) per text, ~25 s a run on the 2-core VM.
# Usage: bench/eval/chunk/layer-budget.sh BIN > bench/eval/chunk/layer-budget.txt
set -e
BIN=${1:?pivot built with bench/experiments/layer-budget.patch}
. bench/eval/clipfloor/mid-defs.sh "$BIN" /tmp # D1
E="$D1;chunk=1;budget=32"
GPL=/usr/share/common-licenses/GPL-3 LGPL=/usr/share/common-licenses/LGPL-2.1 PYLIB=/usr/lib/python3.11
J=$(mktemp)
run() { # TEXT LAYER-BUDGETS [POLICY]
    printf '%s | %s | %s | ' "$(basename "$1")" "$2" "${3:+${3#"$D1;chunk=1;budget=32"}}"
    PIVOT_LB="$2" "$BIN" eval --task ppl --text "$1" --policies "${3:-$E}" --length 512 --prefix 128 \
        --samples 16 --threads 2 --json "$J" > /dev/null 2>&1
    $PY -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][-1]; print('%.4f %+.2f %.4f±%.4f %.4f' % (r['kv_memory_ratio'], r['delta_ppl_pct'], r['top1_agreement'], r['top1_agreement_ci95'], r['mean_kl']))" "$J"
}
for lb in 0-29:32 0-29:64 0-9:64 10-19:64 20-29:64 0-14:64 15-29:64 0-4:64 5-9:64 10-14:64 15-19:64 \
    20-24:64 25-29:64 20-24:96 0-0:96 1-1:96 2-2:96 3-3:96 4-4:96 20-20:96 21-21:96 22-22:96 \
    23-23:96 24-24:96 0-4:64+20-24:64 0-2:64+20-26:64 0-4:64+20-29:64 0-4:64+15-24:64; do
    run $GPL $lb
done
# the 3-bit values of layers 10-14 (0.005 of FP16) spent on budgets instead
X="mikv;lo-bits=4/2;heads=5:8/4;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5;chunk=1;budget=32"
run $GPL 0-4:64+18-29:64 "$X"
run $GPL 0-4:64+20-29:64+10-11:64 "$X"
# the best split with H2O's selection, and with persistence over a shorter window
# (docs "Accumulated attention at 512 tokens")
run $GPL 0-4:64+20-24:64 "$E;select=accumulated"
run $GPL 0-4:64+20-24:64 "$E;window=100"
for t in $PYLIB/argparse.py $LGPL $PYLIB/typing.py; do
    run $t 0-29:32
    run $t 0-4:64+20-24:64
done
rm -f "$J"
