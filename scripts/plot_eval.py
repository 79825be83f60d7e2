#!/usr/bin/env python3
"""Plots `pivot eval` results: quality against KV memory, one line per policy.

usage: plot_eval.py RESULT.json [MORE.json ...] OUT.png

Each task (JSONs written by `pivot eval --json`, usually with a --ratios
sweep) gives one panel per metric: ppl -> delta ppl % and top-1 agreement;
copy, lookup and retrieval -> accuracy. Several JSONs of one task (other
seeds or texts) are pooled: each point is the sample-weighted mean. The x
axis is the KV memory the cache really needed (its peak stored bytes / FP16
bytes, kv_memory_ratio), not the target, so methods that land below their
target are drawn where they are. `full` is the dashed reference line. Needs
matplotlib (pip install matplotlib).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

PANELS = {
    "ppl": [("delta_ppl_pct", "Δ perplexity vs full (%)"), ("top1_agreement", "top-1 agreement with full")],
    "copy": [("accuracy", "copy accuracy")],
    "lookup": [("accuracy", "key-value lookup accuracy")],
    "retrieval": [("accuracy", "retrieval exact match")],
}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    docs = []
    for p in argv[1:-1]:
        with open(p) as f:
            docs.append(json.load(f))
    by_task = defaultdict(list)
    for d in docs:
        by_task[d["task"]].append(d)
    panels = [(ds, key, label) for task, ds in by_task.items() for key, label in PANELS.get(task, [])]
    if not panels:
        print("plot_eval.py: no task with a metric to plot", file=sys.stderr)
        return 1
    # One color per policy across every panel.
    specs = sorted({r["policy_spec"] for d in docs for r in d["results"]} - {"full"})
    color = {sp: plt.cm.tab10(i % 10) for i, sp in enumerate(specs)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (ds, key, label) in zip(axes[0], panels):
        # (spec, target) -> [sum of metric x samples, samples, max memory]
        acc = defaultdict(lambda: [0.0, 0, 0.0])
        for d in ds:
            for r in d["results"]:
                if not r.get("feasible", True) or key not in r:
                    continue
                e = acc[(r["policy_spec"], r.get("kv_ratio_target"))]
                n = max(r.get("samples", 1), 1)
                e[0] += r[key] * n
                e[1] += n
                e[2] = max(e[2], r["kv_memory_ratio"])
        lines = defaultdict(list)
        ref = None
        for (spec, _t), (tot, n, mem) in acc.items():
            if spec == "full":
                ref = tot / n if ref is None else ref
                continue
            lines[spec].append((mem, tot / n))
        d = ds[0]
        for spec, pts in sorted(lines.items()):
            pts.sort()
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.2, label=spec,
                    color=color[spec])
        if ref is not None:
            ax.axhline(ref, color="black", linestyle="--", linewidth=1, label="full")
        n = sum(x.get("samples", 0) for x in ds)
        ax.set_title(f"{d['task']} ({n} samples)", fontsize=10)
        ax.set_xlabel("KV memory / FP16")
        ax.set_ylabel(label)
        ax.set_xlim(0, 1.05)
        ax.grid(alpha=0.3)
        if key == "delta_ppl_pct":
            ax.set_yscale("symlog", linthresh=1.0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(argv[-1], dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
