# workload c (8 x 2,048 / 256) against one pivot serve: bash serve-c.sh POLICY PORT (EXTRA="--batch-tokens N" for more serve options); prints the summary
set -e
cd "$(dirname "$0")/../../../.."
pol="$1"; port=$2
"${BIN:-build/cli/pivot}" serve --port $port --ctx 2368 --max-batch 8 --kv-memory 4G --threads 2 --kv-policy "$pol" $EXTRA > ${LOGS:-/tmp}/serve-$port.log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -sf 127.0.0.1:$port/health >/dev/null 2>&1 && break; sleep 0.3; done
"${BIN:-build/cli/pivot}" bench --url http://127.0.0.1:$port --num-prompts 8 --concurrency 8 --input-len 2048 --output-len 256 --ignore-eos --seed 0 --json ${LOGS:-/tmp}/bench-$port.json > ${LOGS:-/tmp}/bench-$port.txt 2>&1
kill $pid; wait $pid 2>/dev/null || true
.venv/bin/python -c "
import json,sys; j=json.load(open('${LOGS:-/tmp}/bench-$port.json'))
print(sys.argv[1][-40:], {k: round(j[k],1) for k in j if k in ('output_throughput','mean_tpot_ms','median_itl_ms','mean_ttft_ms','duration')})" "$pol"
