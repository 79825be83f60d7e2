#!/bin/sh
while pgrep -f sweep3.sh >/dev/null; do sleep 5; done
B="mikv;hi-bits=8;lo-bits=4/3;rotate=1;clip=1"
P="full,$B,$B;select=accumulated,$B;select=recent,$B;recent=8,$B;recent=32,$B;group=32"
for seed in 1 2; do
  /work/main/build/cli/pivot eval --task copy --policies "$P" --kv-ratio 0.33 --samples 8 --seed $seed --threads 2 --json /tmp/sw/sel_s$seed.json > /tmp/sw/sel_s$seed.txt 2>/tmp/sw/sel_s$seed.err
done
