#!/bin/sh
P="full,mikv,mikv;rotate=1,mikv;lo-bits=4/3;rotate=1,mikv;lo-bits=3;rotate=1,quant4;rotate=1,quant4;lo-bits=4/3;rotate=1,quant4;lo-bits=3;rotate=1,quant4;lo-bits=3,scissorhands"
for task in copy lookup; do for seed in 1 2; do
  build/cli/pivot eval --task $task --policies "$P" --ratios 0.33,0.25 --samples 8 --seed $seed --threads 2 --json /tmp/sw/${task}2_s$seed.json > /tmp/sw/${task}2_s$seed.txt 2>/tmp/sw/${task}2_s$seed.err
done; done
