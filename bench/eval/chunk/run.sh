# Demotion one token at a time (chunk=1) against Scissorhands' chunks of
# 0.4·B, at 0.25 ("Demote one token at a time" in docs/KV_CACHE.md).
# PART=screen|validate|tenth|r512|long|preset|fit512|screen512|acc512|b48 bash bench/eval/chunk/run.sh [BIN] [OUT]
# (default: all, in that order). The screen came first; everything after it
# validates or measures what the docs cite. Pooled tables pair every policy
# with D1 (scripts/pool_eval.py --against 2).
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:-build/cli/pivot}" "${2:-bench/eval/chunk}" # BIN, OUT, PY, runs(), texts(), D1
E="$D1;chunk=1"
# ppl NAME TEXT POLICIES [LENGTH PREFIX SAMPLES]: OUT/NAME-<text>.{json,txt},
# 16 windows of 1,024 tokens, 256 prefilled, at target 0.25 unless given
# (part, pair, ppl_at: bench/eval/runs.sh)
ppl() { ppl_at "$1" "$2" "$3" 0.25 "${4:-1024}" "${5:-256}" "${6:-16}"; }
GPL=/usr/share/common-licenses/GPL-3 LGPL=/usr/share/common-licenses/LGPL-2.1 PYLIB=/usr/lib/python3.11
if part screen; then
    ppl select "$GPL" "full,$D1,$D1;select=accumulated,$D1;select=recent"
    ppl ppl "$GPL" "full,$D1,$E"
    ppl ppl "$LGPL" "full,$D1,$E"
fi
if part validate; then
    runs c1024 copy 0.25 1024 "7 8 9 10 11 12" "full,$D1,$E"
    pair c1024.md "$OUT"/c1024-s*.json
    for text in $PYLIB/argparse.py $PYLIB/subprocess.py $PYLIB/typing.py; do ppl ppl "$text" "full,$D1,$E"; done
    pair ppl.md "$OUT"/ppl-*.json
    runs lk1024 lookup 0.25 1024 "1 2" "full,$D1,$E"
    pair lk1024.md "$OUT"/lk1024-s*.json
fi
# chunks of 0.1·B: cheaper than chunk=1 (bench_attn, docs); the two licenses
if part tenth; then
    for text in "$GPL" "$LGPL"; do ppl tenth-ppl "$text" "full,$D1,$D1;chunk=0.1"; done
    pair tenth-ppl.md "$OUT"/tenth-ppl-*.json
fi
# 512 tokens: only recent=28 fits 0.25 there; its text at 512-token windows
if part r512; then
    ppl r28-512 "$GPL" "full,$D1;recent=28" 512 128 16
fi
# 2,048-token windows (8 each, 512 prefilled) of the two longest texts
if part long; then
    for text in $PYLIB/argparse.py $PYLIB/subprocess.py; do ppl long-ppl "$text" "full,$D1,$E" 2048 512 8; done
    pair long-ppl.md "$OUT"/long-ppl-*.json
fi
# the preset at 0.33 with one-token demotions (information: the preset keeps 0.4·B)
if part preset; then
    runs preset-c512 copy 0.33 512 "1 2 3" "full,mikv,mikv;chunk=1"
    pair preset-c512.md "$OUT"/preset-c512-s*.json
    texts preset 0.33 "full,mikv,mikv;chunk=1"
    pair preset-ppl.md "$OUT"/preset-GPL-3.json "$OUT"/preset-argparse.json
fi
# 512 tokens at 0.25 once the solver looks past page rounding (a budget of 32
# needs fewer bytes than the protected 20): copy on seeds 1-3 against
# recent=28 at the same bytes, and text at 512-token windows
if part fit512; then
    runs fit512-c copy 0.25 512 "1 2 3" "full,$E,$D1;recent=28"
    pair fit512-c.md "$OUT"/fit512-c-s*.json
    for text in "$GPL" $PYLIB/argparse.py; do ppl fit512-ppl "$text" "full,$E" 512 128 16; done
    pair fit512-ppl.md "$OUT"/fit512-ppl-*.json
    runs fit512-lk lookup 0.25 512 "1 2" "full,$E"
fi
# What the text at 512 tokens would need (docs "512 tokens at 0.25"), GPL-3
# only: explicit budgets; shorter recent windows; a budget of 64 paid for by
# dropping the INT8 heads and 3-bit values, or by 3-bit keys in some layers
if part screen512; then
    ppl s512-budget "$GPL" "full,$E;budget=40,$E;budget=48,$E;budget=64" 512 128 16
    ppl s512-recent "$GPL" "full,$E;budget=32;recent=8,$E;budget=32;recent=4" 512 128 16
    B="mikv;lo-bits=4/2;heads=5:8/4;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5;chunk=1"
    ppl s512-pay "$GPL" "full,mikv;lo-bits=4/2;heads=0;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5;chunk=1,$B;layer-bits=10-14:4/3+15-29:3/2,$B;layer-bits=10-14:4/3+20-29:3/2,$B;layer-bits=10-14:4/3+15-24:3/2,$B;layer-bits=10-14:4/3+0-9:3/2,$B;layer-bits=10-14:4/3+0-4:3/2+25-29:3/2" 512 128 16
fi
# H2O's accumulated attention instead of persistence as the high tier's
# selection, one-token demotions, 512 tokens at 0.25 (docs "Accumulated
# attention at 512 tokens"): text on four texts, copy on seeds 1-3, lookup on
# seeds 1-2, each paired with D1;chunk=1 (E) on the same samples
if part acc512; then
    A="$E;select=accumulated"
    for text in "$GPL" $PYLIB/argparse.py "$LGPL" $PYLIB/typing.py; do ppl acc512-ppl "$text" "full,$E,$A" 512 128 16; done
    pair acc512-ppl.md "$OUT"/acc512-ppl-*.json
    runs acc512-c copy 0.25 512 "1 2 3" "full,$E,$A"
    pair acc512-c.md "$OUT"/acc512-c-s*.json
    runs acc512-lk lookup 0.25 512 "1 2" "full,$E,$A"
    pair acc512-lk.md "$OUT"/acc512-lk-s*.json
fi
# Budgets of 48 and 64 with the preset's accumulated selection (E since the
# preset selects by it), 512 tokens, four texts (docs "What a budget of 48
# would need at 512 tokens"): the quality a finer page would buy
if part b48; then
    for text in "$GPL" $PYLIB/argparse.py "$LGPL" $PYLIB/typing.py; do ppl b48 "$text" "full,$E;budget=48,$E;budget=64" 512 128 16; done
fi
