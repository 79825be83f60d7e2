#!/bin/bash
# value-norm (kv_policy.h): a token's importance is its accumulated attention
# times its value's L2 norm (VATP's rule, Guo et al. 2024) instead of the
# attention alone. Each table pairs the value-norm row with the same policy
# without it, on the same samples (scripts/pool_eval.py --against 2):
#   PART=p33   the mikv preset (before value-norm was its) at 0.33, 512 tokens: copy seeds 1-3 (48
#              samples), lookup seeds 1-2 (32), text 8 windows of 1,024 on
#              GPL-3 and argparse.py (texts()) and 16 of 512 on LGPL-2.1, typing.py
#   PART=e512  the 512-token text point at 0.25 (docs "Accumulated attention
#              at 512 tokens": D1;chunk=1;select=accumulated): four texts, 16
#              windows of 512 (128 prefilled), copy seeds 1-3, lookup 1-2
#   PART=h2o   eviction (h2o, where VATP was proposed) at 0.5 and 0.33:
#              copy seeds 1-3, lookup seeds 1-2
# PART=... bash bench/eval/vnorm/run.sh [BIN] [OUT] (default: all three, ~40
# minutes on 2 cores). The reports here were made before the preset had
# value-norm: their rows without it say "mikv" and "$A".
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:-build/cli/pivot}" "${2:-bench/eval/vnorm}" # BIN, OUT, PY, runs(), texts(), D1
A="$D1;chunk=1;select=accumulated"
GPL=/usr/share/common-licenses/GPL-3 LGPL=/usr/share/common-licenses/LGPL-2.1 PYLIB=/usr/lib/python3.11
if part p33; then
    # "mikv" was the preset without value-norm when the reports in this
    # folder were made (their rows say "mikv"); spelled out now that the
    # preset has it
    at33 p33 "full,mikv;value-norm=0,mikv;value-norm=1" # bench/eval/runs.sh
fi
if part e512; then
    P="full,$A;value-norm=0,$A;value-norm=1" # D1 is spelled from the preset, which has it since
    for text in "$GPL" $PYLIB/argparse.py "$LGPL" $PYLIB/typing.py; do ppl_at e512-ppl "$text" "$P" 0.25 512 128 16; done
    pair e512-ppl.md "$OUT"/e512-ppl-*.json
    paired e512-c copy 0.25 512 "1 2 3" "$P"
    paired e512-lk lookup 0.25 512 "1 2" "$P"
fi
if part h2o; then
    P="full,h2o,h2o;value-norm=1"
    for r in 0.5 0.33; do # one target a report: pairs are within a target
        paired h2o$r-c copy $r 512 "1 2 3" "$P"
        paired h2o$r-lk lookup $r 512 "1 2" "$P"
    done
fi
