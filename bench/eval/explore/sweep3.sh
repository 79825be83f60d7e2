#!/bin/sh
while pgrep -f sweep2.sh >/dev/null; do sleep 5; done
P="full,mikv;hi-bits=8;lo-bits=4/3;rotate=1,mikv;hi-bits=8;lo-bits=4/3;rotate=1;clip=1,mikv;lo-bits=4/3;rotate=1;clip=1,mikv;hi-bits=8;rotate=1;clip=1,quant4;lo-bits=4/3;rotate=1;clip=1,quant4;lo-bits=4/2;rotate=1;clip=1,quant4;lo-bits=4/3;rotate=1,h2o,streaming"
for task in lookup copy; do for seed in 1 2; do
  /work/main/build/cli/pivot eval --task $task --policies "$P" --ratios 0.33,0.25 --samples 8 --seed $seed --threads 2 --json /tmp/sw/${task}3_s$seed.json > /tmp/sw/${task}3_s$seed.txt 2>/tmp/sw/${task}3_s$seed.err
done; done
