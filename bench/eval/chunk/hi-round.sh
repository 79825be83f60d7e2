# The high tier's keys and values at fewer bits (docs/KV_CACHE.md, "Fewer bits
# for the high tier's values"): build main with
# bench/experiments/high-tier-round.patch applied, then
#   bash bench/eval/chunk/hi-round.sh BIN [OUT]
# GPL-3, 16 windows of 512 (128 prefilled), D1;chunk=1 at a budget of 64;
# OUT/b64.* has full beside the INT8 high tier, OUT/kKvV.* the rounded ones.
set -e
. bench/eval/clipfloor/mid-defs.sh "${1:?BIN}" "${2:-bench/eval/chunk/hiround}" # BIN, OUT, D1
E="$D1;chunk=1;budget=64" GPL=/usr/share/common-licenses/GPL-3
ev() { $BIN eval --task ppl --text $GPL --policies "$1" --ratios 0.25 --length 512 --prefix 128 \
    --samples 16 --threads 2 --json "$OUT/$2.json" > "$OUT/$2.txt"; }
ev "full,$E" b64
for kv in "6 6" "5 5" "8 6" "6 8" "8 5"; do
    set -- $kv
    ( # a width of 8 leaves that side as built (no variable)
        if [ "$1" != 8 ]; then export PIVOT_HI6K=$1; fi
        if [ "$2" != 8 ]; then export PIVOT_HI6V=$2; fi
        ev "$E" "k${1}v${2}"
    )
done
