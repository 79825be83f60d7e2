# Builds alternated on workload c's decode-only steps (serve-c.sh with --batch-tokens 2048):
#   bash ab-c.sh ROUNDS BIN... ; POLICY=full|mikv (mikv). One summary line per run, prefixed by
#   the binary; rounds interleave the binaries so the host's drift falls on all of them alike.
set -e
cd "$(dirname "$0")"
rounds=$1; shift
port=8400
for r in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        port=$((port + 1))
        BIN=$bin EXTRA="--batch-tokens 2048" bash serve-c.sh "${POLICY:-mikv}" $port | sed "s|^|$bin |"
    done
done
