#!/usr/bin/env python3
"""Formats the GPU check's results (pivot_results.tsv, torch_results.tsv) as
the table of docs/CUDA.md.   python3 tests/gpu/report.py PIVOT_TSV TORCH_TSV"""
import sys


def load(path):
    d = {}
    try:
        for line in open(path):
            k, _, v = line.rstrip("\n").partition("\t")
            d[k] = v.split("\t")
    except OSError:
        pass
    return d


p, t = load(sys.argv[1]), load(sys.argv[2] if len(sys.argv) > 2 else "")
g = lambda d, k, i=0, dflt="n/a": d[k][i] if k in d and len(d[k]) > i else dflt  # noqa: E731
print("Pivot GPU check")
print(f"GPU: {g(p, 'gpu')}")
print(f"checks: {g(p, 'checks')}")
for k in sorted(x for x in p if x.startswith("e2e ")):
    print(f"{k}: {g(p, k)}")
print(f"device-to-device copy bandwidth: {g(p, 'copy_bw_gbps')} GB/s")
print(f"PyTorch: {g(t, 'torch')}")
print()
print("Decode, Llama-3-8B shape, FP16 weights, context 2048 (HF: FP16 DynamicCache)")
print(f"{'cache':>5} | {'batch':>5} | {'pivot tok/s':>11} | {'ms/step':>7} | {'GB/s':>6} | {'% of copy bw':>12} | {'HF tok/s':>9} | {'HF ms/step':>10} | {'pivot/HF':>8}")
print("-" * 98)
for cache, prefix in (("full", "pivot_b"), ("mikv", "pivot_mikv_b")):
    for b in (1, 16, 64):
        pk, tk = f"{prefix}{b}", f"torch_b{b}"
        ptps, tps = g(p, pk), g(t, tk)
        try:
            ratio = f"{float(ptps) / float(tps):.2f}x"
        except ValueError:
            ratio = "n/a"
        pct = g(p, pk, 3)
        print(f"{cache:>5} | {b:>5} | {ptps:>11} | {g(p, pk, 1):>7} | {g(p, pk, 2):>6} | {pct + '%' if pct != 'n/a' else pct:>12} | "
              f"{tps:>9} | {g(t, tk, 1):>10} | {ratio:>8}")
print()
print("Largest batch at 4k context (slot cost measured from free GPU memory) and total decode throughput there")
print(f"{'cache':>5} | {'MB/slot':>8} | {'max batch':>9} | {'tok/s total':>11} | {'ms/step':>7}")
print("-" * 54)
for cache in ("full", "mikv"):
    k = f"{cache}_max_seqs_4k"
    print(f"{cache:>5} | {g(p, k, 3):>8} | {g(p, k, 0):>9} | {g(p, k, 1):>11} | {g(p, k, 2):>7}")
print(f"goals: mikv/full sequences at 4k = {g(p, 'goal_fit_ratio')} (goal >= 3), "
      f"mikv/full total tok/s at the largest batch = {g(p, 'goal_tps_ratio')} (goal > 1)")
