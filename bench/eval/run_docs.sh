#!/bin/sh
# The measurements behind docs/KV_CACHE.md "Quality vs memory (measured)".
# Usage: bench/eval/run_docs.sh [PIVOT_BIN] [OUTDIR]   (from the repository root)
# ppl and copy run in parallel, one thread each (~20 min on a shared 2-core VM).
# "mikv,lo-bits=2,group=32,recent=32" is the mikv preset before commit 035a898
# (the raw JSON of the documented run names it "mikv"); the current preset is
# "mikv,lo-bits=4/2,group=64,recent=16" with budget 0.08 (solved here).
set -e
BIN=${1:-build/cli/pivot}
OUT=${2:-bench/eval}
POL='full,scissorhands,h2o,streaming,quant4,quant2,mikv,lo-bits=2,group=32,recent=32;mikv,lo-bits=4/2,group=64,recent=32;mikv,lo-bits=4/2,group=64,recent=16'
R=0.5,0.33,0.25
nice $BIN eval --task ppl --policies "$POL" --ratios $R --length 768 --prefix 256 --samples 2 \
    --threads 1 --json "$OUT/ppl.json" > "$OUT/ppl.txt" &
nice $BIN eval --task copy --copy-text --policies "$POL" --ratios $R --length 513 --samples 3 \
    --threads 1 --json "$OUT/copy.json" > "$OUT/copy.txt" &
wait
# Longer samples, the mikv preset and its INT8 high tier (hi-bits=8 halves a
# high token's bytes, so the same memory keeps twice as many high tokens).
$BIN eval --task ppl --policies 'full,mikv;mikv,hi-bits=8' --ratios 0.33,0.25 --length 1024 \
    --prefix 256 --samples 2 --threads 1 --json "$OUT/ppl1024.json" > "$OUT/ppl1024.txt"
$BIN eval --task ppl --policies 'full,mikv;mikv,hi-bits=8' --ratios 0.33,0.25 --length 2048 \
    --prefix 256 --samples 1 --threads 2 --json "$OUT/ppl2048.json" > "$OUT/ppl2048.txt"
$BIN eval --task copy --copy-text --policies 'full,mikv,hi-bits=8' --ratios 0.33,0.25 \
    --length 513 --samples 3 --threads 1 --json "$OUT/copy_hi8.json" > "$OUT/copy_hi8.txt"
# Retrieval at the size where full scores >= 80% (4 lines, ~71 tokens): only
# small recent windows leave anything to compress.
$BIN eval --task retrieval --policies 'full,quant4,recent=8;quant2,recent=8;quant4,lo-v-bits=2,group=64,recent=8;mikv,lo-bits=4/2,group=64,recent=8;scissorhands,recent=8;h2o,recent=8;streaming,recent=8' \
    --ratios 0.5,0.33 --lines 4 --digits 2 --samples 20 --seed 1 --threads 1 \
    --json "$OUT/retrieval.json" > "$OUT/retrieval.txt"
# Decode speed at ~1,900 tokens: full vs mikv (bench/eval/decode_speed.txt).
P=$(head -c 8600 /usr/share/common-licenses/GPL-3)
for K in full mikv,budget=0.1 mikv,lo-bits=2,group=32,recent=32,budget=0.2; do
    $BIN generate --prompt "$P" --kv-policy "$K" --ignore-eos --max-tokens 64 --temperature 0 \
        --threads 2 2>&1 >/dev/null | tail -2
done
