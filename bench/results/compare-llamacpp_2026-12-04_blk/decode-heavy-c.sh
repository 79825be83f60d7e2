#!/bin/sh
# A decode-heavy variant of workload c: 8 x 2k prompts, 1024 tokens out, so
# prompt chunks ride on a small share of the steps. Writes c1024-<policy>.json
# to $OUT. Run from anywhere: PIVOT_BIN=... OUT=... sh decode-heavy-c.sh
cd "$(dirname "$0")/../../.." || exit 1
B=${PIVOT_BIN:-build/cli/pivot}
OUT=${OUT:-/tmp}
for pol in full mikv; do
  "$B" serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf --port 18431 --threads 2 --ctx 3200 \
     --max-batch 8 --kv-policy $pol --kv-memory 4G > "$OUT/serve-$pol.log" 2>&1 &
  pid=$!
  for i in $(seq 60); do curl -sf http://127.0.0.1:18431/health >/dev/null && break; sleep 1; done
  "$B" bench --url http://127.0.0.1:18431 --num-prompts 8 --concurrency 8 --input-len 2048 \
     --output-len 1024 --ignore-eos --seed 0 --json "$OUT/c1024-$pol.json" --timeout 3600 2>&1 | tail -4
  kill $pid; wait $pid
done
