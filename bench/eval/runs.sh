# Sourced by bench/eval/*/run.sh (needs BIN, OUT, PY set):
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
