# Sourced by bench/eval/*/run.sh (needs BIN, OUT, PY set): runs and texts.
# runs NAME TASK RATIOS LENGTH "SEEDS" POLICIES — one `pivot eval` report per
# seed (16 samples, 2 threads) as OUT/NAME-sS.{json,txt}, pooled into
# OUT/NAME.md by scripts/pool_eval.py.
runs() {
    name=$1 task=$2 ratio=$3 len=$4 seeds=$5 pol=$6 js=""
    for s in $seeds; do
        $BIN eval --task "$task" --policies "$pol" --ratios "$ratio" --length "$len" --samples 16 \
            --seed "$s" --threads 2 --json "$OUT/$name-s$s.json" > "$OUT/$name-s$s.txt"
        js="$js $OUT/$name-s$s.json"
    done
    $PY scripts/pool_eval.py $js > "$OUT/$name.md"
}

# texts NAME RATIOS POLICIES — perplexity over 8 windows of 1,024 tokens (256
# prefilled, 768 scored) of each of the two texts the docs use, as
# OUT/NAME-GPL-3.{json,txt} and OUT/NAME-argparse.{json,txt}.
texts() {
    name=$1 ratio=$2 pol=$3
    for text in /usr/share/common-licenses/GPL-3 /usr/lib/python3.11/argparse.py; do
        t=$(basename "$text" .py)
        $BIN eval --task ppl --text "$text" --policies "$pol" --ratios "$ratio" --length 1024 --prefix 256 \
            --samples 8 --threads 2 --json "$OUT/$name-$t.json" > "$OUT/$name-$t.txt"
    done
}

# The helpers of the PART=... scripts (bench/eval/chunk/run.sh,
# bench/eval/select/run.sh):
# part P: true when PART (default all) selects part P
part() { [ "${PART:-all}" = "$1" ] || [ "${PART:-all}" = all ]; }
# pair OUT.md JSON...: pooled tables, every policy paired with the second
pair() { out=$1; shift; $PY scripts/pool_eval.py "$@" --against 2 > "$OUT/$out"; }
# ppl_at NAME TEXT POLICIES RATIO LENGTH PREFIX SAMPLES: perplexity windows
# of TEXT as OUT/NAME-<text>.{json,txt}
ppl_at() {
    t=$(basename "$2" .py)
    $BIN eval --task ppl --text "$2" --policies "$3" --ratios "$4" --length "$5" --prefix "$6" \
        --samples "$7" --threads 2 --json "$OUT/$1-$t.json" > "$OUT/$1-$t.txt"
}
# paired NAME TASK RATIO LENGTH "SEEDS" POLICIES: runs, then OUT/NAME.md with
# every policy paired with the second
paired() { runs "$@"; pair "$1.md" "$OUT/$1"-s*.json; }
# at33 NAME POLICIES: a preset's point at 0.33 and 512 tokens, every table
# paired with the second policy: copy seeds 1-3 (48 samples), lookup seeds
# 1-2 (32), text 8 windows of 1,024 on GPL-3 and argparse.py (texts()) and
# 16 of 512 on LGPL-2.1 and typing.py (OUT/NAME-{c,lk,ppl}.md)
at33() {
    paired "$1-c" copy 0.33 512 "1 2 3" "$2"
    paired "$1-lk" lookup 0.33 512 "1 2" "$2"
    texts "$1" 0.33 "$2"
    for text in /usr/share/common-licenses/LGPL-2.1 /usr/lib/python3.11/typing.py; do
        ppl_at "$1-512" "$text" "$2" 0.33 512 128 16
    done
    pair "$1-ppl.md" "$OUT/$1-GPL-3.json" "$OUT/$1-argparse.json" "$OUT/$1"-512-*.json
}
