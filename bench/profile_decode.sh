#!/usr/bin/env bash
# Instruction profile of CPU decode with callgrind: counts, not seconds, so
# the figures repeat on a shared, noisy machine.
#
#   bash bench/profile_decode.sh [PIVOT_BIN] [OUT_DIR]
#   PIVOT_SIMD=avx2 bash bench/profile_decode.sh ...   # force a kernel level
#
# Runs `pivot generate` (1 thread, greedy, fixed prompt) twice under
# callgrind: once with 1 generated token (load + prompt) and once with
# 1 + N. The difference divided by N is the instruction count of one decode
# step, with everything per step included (forward pass, cache, sampling,
# detokenization). Prints that and the top functions of the longer run.
set -euo pipefail
BIN=${1:-build/cli/pivot}
OUT=${2:-/tmp/pivot-profile}
N=${N:-64}
MODEL=${PIVOT_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PROMPT="The history of the Roman Empire begins with"
mkdir -p "$OUT"

run() { # $1 = max tokens, $2 = output file
    valgrind --tool=callgrind --callgrind-out-file="$2" "$BIN" generate --model "$MODEL" \
        --prompt "$PROMPT" --max-tokens "$1" --temperature 0 --ignore-eos --threads 1 \
        >"$2.log" 2>&1
    callgrind_annotate "$2" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

short=$(run 1 "$OUT/short.out")
long=$(run $((N + 1)) "$OUT/long.out")
per=$(((long - short) / N))
echo "binary: $BIN"
echo "instructions: prompt+1 token $short, prompt+$((N + 1)) tokens $long"
echo "instructions per decode step: $per"
echo "top functions of the longer run (inclusive of nothing, self cost):"
callgrind_annotate "$OUT/long.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,17p'
