#!/bin/sh
# Which tokens deserve the high tier: the preset's persistence vs accumulated attention vs
# recency, and the recent window, on random-word copy at 0.33 (2 seeds x 8 samples).
BIN=${1:-build/cli/pivot}
P="full,mikv,mikv;select=accumulated,mikv;select=recent,mikv;recent=8,mikv;recent=32"
for seed in 1 2; do
  $BIN eval --task copy --policies "$P" --kv-ratio 0.33 --samples 8 --seed $seed --threads 2 \
      --json bench/eval/explore/sel_s$seed.json > bench/eval/explore/sel_s$seed.txt
done
