#!/bin/bash
# KIVI-style keys (per channel over blocks of G tokens) and smaller value
# groups, simulated on the FP16 cache before building them
# (docs/KV_CACHE.md, "Keys per channel and value groups, simulated"):
#   git worktree add /tmp/sim HEAD && cd /tmp/sim &&
#   git apply bench/eval/kivi/fake-quant-kivi.patch &&
#   meson setup /tmp/simb . --buildtype=release && ninja -C /tmp/simb cli/pivot
# then, from the repository root: bench/eval/kivi/run.sh /tmp/simb/cli/pivot [OUTDIR]
# Every token that leaves a 32-token window is rotated, quantized, decoded and
# rotated back in place; the five copying heads at K8/V4, the rest as named.
# Random-word copy of 1,024 tokens, 16 samples a seed, seeds 1-3 for the
# value-group rows (~40 s a run on the 2-core VM).
set -e
B=${1:?simulation binary}
OUT=${2:-bench/eval/kivi}
H="18.2:8/4,17.1:8/4,23.0:8/4,20.2:8/4,23.2:8/4"
run() {
    name=$1; seed=$2; shift 2
    env "$@" "$B" eval --task copy --policies full --length 1024 --samples 16 --seed "$seed" \
        --threads 2 > "$OUT/$name-s$seed.txt" 2>/dev/null
    echo "$name seed $seed: $(tail -1 "$OUT/$name-s$seed.txt" | awk '{print $NF}')"
}
# keys: per token (the cache's records) or per channel over G tokens (PIVOT_FQ_KC=G;
# PIVOT_FQ_KROT=0: before the rotation, as KIVI); values per token, group 64
run full 1
run t42 1 PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
run t32 1 PIVOT_FQ=3/2 PIVOT_FQ_HEADS=$H
run t43 1 PIVOT_FQ=4/3 PIVOT_FQ_HEADS=$H
run c32k4 1 PIVOT_FQ_KC=32 PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
run c32k3 1 PIVOT_FQ_KC=32 PIVOT_FQ=3/2 PIVOT_FQ_HEADS=$H
run c64k3 1 PIVOT_FQ_KC=64 PIVOT_FQ=3/2 PIVOT_FQ_HEADS=$H
run c32k3nr 1 PIVOT_FQ_KC=32 PIVOT_FQ_KROT=0 PIVOT_FQ=3/2 PIVOT_FQ_HEADS=$H
run c32k2 1 PIVOT_FQ_KC=32 PIVOT_FQ=2/2 PIVOT_FQ_HEADS=$H
run c32k3v3 1 PIVOT_FQ_KC=32 PIVOT_FQ=3/3 PIVOT_FQ_HEADS=$H
run t42vg16 1 PIVOT_FQ_VG=16 PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
# value groups of 32 (keys 64, or both 32), three seeds
for s in 1 2 3; do
    [ "$s" = 1 ] || run full $s
    [ "$s" = 1 ] || run t42 $s PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
    run t42vg32 $s PIVOT_FQ_VG=32 PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
    run t42g32 $s PIVOT_FQ_VG=32 PIVOT_FQ_KG=32 PIVOT_FQ=4/2 PIVOT_FQ_HEADS=$H
done
