# Which tokens the high tier keeps, persistence (Scissorhands, the preset's)
# or accumulated attention (H2O), at equal bytes, where the docs had not
# compared them ("Persistence or accumulated attention" in docs/KV_CACHE.md):
#   PART=p33   the mikv preset at 0.33, 512 tokens: copy seeds 1-3 (48
#              samples), lookup seeds 1-2 (32), text 8 windows of 1,024 on
#              GPL-3 and argparse.py (texts()) and 16 of 512 on LGPL-2.1, typing.py
#   PART=a1024 D1;chunk=1 at 0.25, 1,024 tokens: copy seeds 7-9 (48), text
#              16 windows of 1,024 on five texts
# PART=... bash bench/eval/select/run.sh [BIN] [OUT]. Every table pairs the
# accumulated row with the persistence row on the same samples
# (scripts/pool_eval.py --against 2).
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:-build/cli/pivot}" "${2:-bench/eval/select}" # BIN, OUT, PY, runs(), texts(), D1
E="$D1;chunk=1"
# part, pair, ppl_at: bench/eval/runs.sh
GPL=/usr/share/common-licenses/GPL-3 LGPL=/usr/share/common-licenses/LGPL-2.1 PYLIB=/usr/lib/python3.11
if part p33; then
    # the preset then selected by persistence; its reports here say "mikv"
    # and "mikv,select=accumulated" (no value-norm then)
    at33 p33 "full,mikv;select=persistence,mikv;select=accumulated;value-norm=0" # bench/eval/runs.sh
fi
if part a1024; then
    P="full,$E;select=persistence,$E;select=accumulated;value-norm=0" # the preset's selection then, and now
    runs a1024-c copy 0.25 1024 "7 8 9" "$P"
    pair a1024-c.md "$OUT"/a1024-c-s*.json
    for text in "$GPL" "$LGPL" $PYLIB/argparse.py $PYLIB/subprocess.py $PYLIB/typing.py; do
        ppl_at a1024-ppl "$text" "$P" 0.25 1024 256 16
    done
    pair a1024-ppl.md "$OUT"/a1024-ppl-*.json
fi
