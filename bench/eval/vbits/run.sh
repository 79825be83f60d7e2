#!/bin/bash
# The 512-token text point at 0.25 (docs/KV_CACHE.md "3-bit values in more
# layers at 512 tokens"): E (D1;chunk=1, the preset's selection; 0.244 at a
# budget of 32) leaves ~0.006 of FP16 under the target, about what 3-bit
# values in five more layers cost. Which five, and does it carry?
#   PART=screen    GPL-3 and argparse.py, 16 windows of 512 (128 prefilled):
#                  E with 3-bit values in layers 10-14 and in each other
#                  group of five
#   PART=validate  the pick (20-24) against E: LGPL-2.1, typing.py and
#                  subprocess.py, copy seeds 1-3 (48 samples), lookup seeds
#                  1-2 (32)
#   PART=pay       3-bit keys in layer ranges over the ranked heads (the
#                  s512-pay rows of "512 tokens at 0.25", rerun): GPL-3
# PART=... bash bench/eval/vbits/run.sh [BIN] [OUT] (default: all three, in that
# order, ~45 minutes on 2 cores). Needs the build where a layer range no longer takes
# the ranked heads' widths (kv_policy_resolve_heads places them last).
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:-build/cli/pivot}" "${2:-bench/eval/vbits}" # BIN, OUT, PY, runs(), texts(), D1
E="$D1;chunk=1" # layer-bits=10-14:4/3 (R)
V="$E;layer-bits=10-14:4/3+20-24:4/3"
GPL=/usr/share/common-licenses/GPL-3 LGPL=/usr/share/common-licenses/LGPL-2.1 PYLIB=/usr/lib/python3.11
if part screen; then
    P="full,$E"
    for g in 0-4 5-9 15-19 20-24 25-29; do P="$P,$E;layer-bits=10-14:4/3+$g:4/3"; done
    for text in "$GPL" $PYLIB/argparse.py; do ppl_at s512-ppl "$text" "$P" 0.25 512 128 16; done
    pair s512-ppl.md "$OUT"/s512-ppl-*.json
fi
if part validate; then
    for text in "$LGPL" $PYLIB/typing.py $PYLIB/subprocess.py; do ppl_at v512-ppl "$text" "full,$E,$V" 0.25 512 128 16; done
    pair v512-ppl.md "$OUT"/v512-ppl-*.json
    paired v512-c copy 0.25 512 "1 2 3" "full,$E,$V"
    paired v512-lk lookup 0.25 512 "1 2" "full,$E,$V"
fi
# "512 tokens at 0.25"'s s512-pay rows whose ranges cover the ranked heads'
# layers, again now that the ranked heads keep INT8 inside a range: 3-bit
# keys there, solved at 0.25
if part pay; then
    B="mikv;lo-bits=4/2;heads=5:8/4;clip=values;clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5;chunk=1"
    ppl_at pay2 "$GPL" "full,$B;layer-bits=10-14:4/3+15-29:3/2,$B;layer-bits=10-14:4/3+20-29:3/2,$B;layer-bits=10-14:4/3+15-24:3/2" 0.25 512 128 16
fi
