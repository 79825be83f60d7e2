# Demotion one token at a time (chunk=1) against Scissorhands' chunks of
# 0.4·B, at 0.25 ("Demote one token at a time" in docs/KV_CACHE.md).
# bash bench/eval/chunk/run.sh [BIN] [OUT]; the select-* and ppl-{GPL-3,LGPL-2.1}
# results came first (the screen), everything after them validates.
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:-build/cli/pivot}" "${2:-bench/eval/chunk}" # BIN, OUT, PY, runs(), D1
E="$D1;chunk=1"
ppl() { # ppl TEXT POLICIES: 16 windows of 1,024 tokens, 256 prefilled
    t=$(basename "$1" .py)
    $BIN eval --task ppl --text "$1" --policies "$2" --ratios 0.25 --length 1024 --prefix 256 \
        --samples 16 --threads 2 --json "$OUT/ppl-$t.json" > "$OUT/ppl-$t.txt"
}
if [ "${PART:-all}" = screen ] || [ "${PART:-all}" = all ]; then
    $BIN eval --task ppl --text /usr/share/common-licenses/GPL-3 --policies \
        "full,$D1,$D1;select=accumulated,$D1;select=recent" --ratios 0.25 --length 1024 --prefix 256 \
        --samples 16 --threads 2 > "$OUT/select-GPL-3.txt"
    ppl /usr/share/common-licenses/GPL-3 "full,$D1,$E"
    ppl /usr/share/common-licenses/LGPL-2.1 "full,$D1,$E"
fi
if [ "${PART:-all}" = validate ] || [ "${PART:-all}" = all ]; then
    runs c1024 copy 0.25 1024 "7 8 9 10 11 12" "full,$D1,$E"
    for text in /usr/lib/python3.11/argparse.py /usr/lib/python3.11/subprocess.py /usr/lib/python3.11/typing.py; do
        ppl "$text" "full,$D1,$E"
    done
    runs lk1024 lookup 0.25 1024 "1 2" "full,$D1,$E"
fi
# chunk=1 doubles bench_attn's decode (a demotion call per step walks the
# low tier); chunks of 0.1·B amortize it. Screened on the two licenses first.
if [ "${PART:-all}" = tenth ] || [ "${PART:-all}" = all ]; then
    for text in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/LGPL-2.1; do
        t=$(basename "$text")
        $BIN eval --task ppl --text "$text" --policies "full,$D1,$D1;chunk=0.1" --ratios 0.25 --length 1024 \
            --prefix 256 --samples 16 --threads 2 --json "$OUT/tenth-ppl-$t.json" > "$OUT/tenth-ppl-$t.txt"
    done
fi
# 512 tokens: only recent=28 fits 0.25 there; its text at 512-token windows.
if [ "${PART:-all}" = r512 ] || [ "${PART:-all}" = all ]; then
    $BIN eval --task ppl --text /usr/share/common-licenses/GPL-3 --policies "full,$D1;recent=28" --ratios 0.25 \
        --length 512 --prefix 128 --samples 16 --threads 2 --json "$OUT/r28-512-GPL-3.json" > "$OUT/r28-512-GPL-3.txt"
fi
# the pooled tables the docs cite, each policy also paired with D1
$PY scripts/pool_eval.py "$OUT"/c1024-s*.json --against 2 > "$OUT/c1024.md"
$PY scripts/pool_eval.py "$OUT"/lk1024-s*.json --against 2 > "$OUT/lk1024.md"
$PY scripts/pool_eval.py "$OUT"/ppl-*.json --against 2 > "$OUT/ppl.md"
$PY scripts/pool_eval.py "$OUT"/tenth-ppl-*.json --against 2 > "$OUT/tenth-ppl.md"
# 2,048-token windows (8 each, 512 prefilled) of the two longest texts.
if [ "${PART:-all}" = long ] || [ "${PART:-all}" = all ]; then
    for text in /usr/lib/python3.11/argparse.py /usr/lib/python3.11/subprocess.py; do
        t=$(basename "$text" .py)
        $BIN eval --task ppl --text "$text" --policies "full,$D1,$D1;chunk=1" --ratios 0.25 --length 2048 \
            --prefix 512 --samples 8 --threads 2 --json "$OUT/long-ppl-$t.json" > "$OUT/long-ppl-$t.txt"
    done
    $PY scripts/pool_eval.py "$OUT"/long-ppl-*.json --against 2 > "$OUT/long-ppl.md"
fi
# The preset at 0.33 with one-token demotions (information: the preset keeps 0.4·B).
if [ "${PART:-all}" = preset ] || [ "${PART:-all}" = all ]; then
    runs preset-c512 copy 0.33 512 "1 2 3" "full,mikv,mikv;chunk=1"
    $PY scripts/pool_eval.py "$OUT"/preset-c512-s*.json --against 2 > "$OUT/preset-c512.md"
    texts preset 0.33 "full,mikv,mikv;chunk=1"
    $PY scripts/pool_eval.py "$OUT"/preset-GPL-3.json "$OUT"/preset-argparse.json --against 2 > "$OUT/preset-ppl.md"
fi
