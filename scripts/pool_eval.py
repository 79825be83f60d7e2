#!/usr/bin/env python3
"""Pools `pivot eval --json` reports of the same task run with different
seeds into one table: per (policy spec, ratio target), the accuracy over all
samples with its 95% interval (1.96 standard errors over samples), the
share of full's accuracy, the largest KV memory ratio reached, top-1
agreement (with its interval over samples when the reports carry
`sample_top1`) and Δppl (weighted by samples).

  scripts/pool_eval.py copy_s1.json copy_s2.json [--markdown]

Reports written before `sample_accuracy` existed are pooled from their mean
and `accuracy_ci95` (the same standard deviation, recovered).

--against N adds a table of every policy paired with the N-th policy of the
reports (1 = the first), sample by sample (window by window for ppl): the
mean difference in accuracy and in top-1 agreement with its 95% interval,
which is how two policies on the same samples are compared (the samples'
own spread cancels)."""
from __future__ import annotations

import argparse
import json
import math
import sys


def samples_of(r):
    if "sample_accuracy" in r:
        return list(r["sample_accuracy"])
    n, m = r.get("samples", 0), r.get("accuracy", 0.0)
    if n < 2 or "accuracy_ci95" not in r:
        return [m] * n
    sd = r["accuracy_ci95"] / 1.96 * math.sqrt(n)
    # n values with mean m and sample standard deviation sd
    k = sd * math.sqrt((n - 1) / n)
    return [m + (k if i % 2 == 0 else -k) for i in range(n - n % 2)] + ([m] if n % 2 else [])


def pool(docs):
    rows, order = {}, []
    for di, d in enumerate(docs):
        for r in d["results"]:
            key = (r["policy_spec"], r.get("kv_ratio_target"))
            if key not in rows:
                rows[key] = {"acc": [], "ids": [], "ratio": 0.0, "top1": 0.0, "t1s": [], "dppl": 0.0,
                             "w": 0, "infeasible": None, "spec": r["policy_spec"],
                             "target": r.get("kv_ratio_target")}
                order.append(key)
            e = rows[key]
            if not r.get("feasible", True) or r.get("samples", 0) == 0:
                e["infeasible"] = r.get("min_kv_memory_ratio")
                continue
            acc = samples_of(r)
            e["acc"] += acc
            e["ids"] += [(di, i) for i in range(len(acc))]
            e["ratio"] = max(e["ratio"], r.get("kv_memory_ratio", 0))
            n = r["samples"]
            e["top1"] += r.get("top1_agreement", 0) * n
            e["t1s"] += r.get("sample_top1", [])
            e["dppl"] += r.get("delta_ppl_pct", 0) * n
            e["w"] += n
    return [rows[k] for k in order]


def stats(acc):
    n = len(acc)
    m = sum(acc) / n
    if n < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in acc) / (n - 1)
    return m, 1.96 * math.sqrt(var / n)


def paired(a, b):
    """(mean, ±95%) of a - b over the items both have (dicts id -> value)."""
    d = [a[i] - b[i] for i in a if i in b]
    return stats(d) if d else (float("nan"), float("nan"))


def fmt_pair(m, ci):
    return "–" if m != m else f"{m:+.4f} (±{ci:.4f})"


def print_against(docs, n):
    """Every policy against the n-th of its report, paired over samples."""
    ppl = docs[0]["task"] == "ppl"
    base = None
    rows = {}  # (text or '', spec, target) -> ({id: acc}, {id: top1})
    for di, d in enumerate(docs):
        res = [r for r in d["results"] if r.get("feasible", True) and r.get("samples", 0)]
        if not 1 <= n <= len(d["results"]):
            sys.exit(f"pool_eval: --against {n}: a report has {len(d['results'])} policies")
        b = d["results"][n - 1]
        if base not in (None, (b["policy_spec"], b.get("kv_ratio_target"))):
            sys.exit(f"pool_eval: --against {n} names {base[0]} in one report and {b['policy_spec']} in another")
        base = (b["policy_spec"], b.get("kv_ratio_target"))
        text = d.get("text", "?").rsplit("/", 1)[-1] if ppl else ""
        for r in res:
            e = rows.setdefault((text, r["policy_spec"], r.get("kv_ratio_target")), ({}, {}))
            acc = r.get("sample_accuracy", []) if not ppl else []
            e[0].update({(di, i): v for i, v in enumerate(acc)})
            e[1].update({(di, i): v for i, v in enumerate(r.get("sample_top1", []))})
    print(f"paired against {base[0]}" + (f" at {base[1]:g}" if base[1] is not None else ""))
    print("| text | policy | accuracy − it (±95%) | top-1 − it (±95%) |" if ppl else
          "| policy | accuracy − it (±95%) | top-1 − it (±95%) |")
    print("|---|---|---|---|" if ppl else "|---|---|---|")
    for (text, spec, tgt), (acc, t1) in rows.items():
        if (spec, tgt) == base:
            continue
        bacc, bt1 = rows.get((text,) + base, ({}, {}))
        if tgt is not None:
            spec += f" at {tgt:g}"
        cells = f"{fmt_pair(*paired(acc, bacc))} | {fmt_pair(*paired(t1, bt1))} |"
        print(f"| {text} | {spec} | {cells}" if ppl else f"| {spec} | {cells}")


def print_ppl(docs):
    print(f"task ppl, {len(docs)} reports")
    print("| text | policy | target | KV memory | Δppl % (±95%) | top-1 (±95%) | mean KL | windows |")
    print("|---|---|---|---|---|---|---|---|")
    for d in docs:
        text = d.get("text", "?").rsplit("/", 1)[-1]
        for r in d["results"]:
            t = r.get("kv_ratio_target")
            tgt = "–" if t is None else f"{t:g}"
            if not r.get("feasible", True) or r.get("samples", 0) == 0:
                mn = r.get("min_kv_memory_ratio")
                print(f"| {text} | {r['policy_spec']} | {tgt} | infeasible" +
                      (f" (≥ {mn:.3f})" if mn else "") + " | | | | 0 |")
                continue
            ci = r.get("delta_ppl_pct_ci95")
            tci = r.get("top1_agreement_ci95")
            print(f"| {text} | {r['policy_spec']} | {tgt} | {r['kv_memory_ratio']:.3f} | "
                  f"{r['delta_ppl_pct']:+.2f}" + (f" (±{ci:.2f})" if ci is not None else "") +
                  f" | {r['top1_agreement']:.3f}" + (f" (±{tci:.3f})" if tci is not None else "") +
                  f" | {r['mean_kl']:.4f} | {r['samples']} |")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("json", nargs="+")
    ap.add_argument("--against", type=int, metavar="N",
                    help="also pair every policy with the N-th of the reports (1 = the first)")
    a = ap.parse_args(argv)
    docs = []
    for p in a.json:
        try:
            with open(p) as f:
                docs.append(json.load(f))
        except (OSError, ValueError) as e:
            sys.exit(f"pool_eval: cannot read {p}: {e}")
    tasks = {d["task"] for d in docs}
    if len(tasks) != 1:
        sys.exit(f"pool_eval: reports of different tasks: {sorted(tasks)}")
    if tasks == {"ppl"}:  # one table row per (text, policy, target): texts are not pooled
        print_ppl(docs)
    else:
        print_pooled(docs, tasks.pop())
    if a.against is not None:
        print()
        print_against(docs, a.against)


def print_pooled(docs, task):
    rows = pool(docs)
    full = next((r for r in rows if r["spec"] == "full" and r["acc"]), None)
    full_acc = stats(full["acc"])[0] if full else None
    print(f"task {task}, {len(docs)} reports")
    print("| policy | target | KV memory | accuracy (±95%) | of full's | − full (±95%, paired) | top-1 (±95%) | Δppl % | samples |")
    print("|---|---|---|---|---|---|---|---|---|")
    full_by_id = dict(zip(full["ids"], full["acc"])) if full else {}
    for r in rows:
        tgt = "–" if r["target"] is None else f"{r['target']:g}"
        if not r["acc"]:
            mn = r["infeasible"]
            print(f"| {r['spec']} | {tgt} | infeasible (≥ {mn:.3f}) | | | | | | 0 |" if mn else
                  f"| {r['spec']} | {tgt} | infeasible | | | | | | 0 |")
            continue
        m, ci = stats(r["acc"])
        share = f"{m / full_acc:.2f}" if full_acc else "–"
        # the same samples under full, so the sample-to-sample spread cancels
        dm, dci = paired(dict(zip(r["ids"], r["acc"])), full_by_id)
        # the interval only when every report carried its samples' top-1
        t1 = f"{r['top1'] / r['w']:.3f}"
        if len(r["t1s"]) == r["w"] and r["w"] >= 2:
            t1 += f" (±{stats(r['t1s'])[1]:.3f})"
        print(f"| {r['spec']} | {tgt} | {r['ratio']:.3f} | {m:.3f} (±{ci:.3f}) | {share} | "
              f"{dm:+.3f} (±{dci:.3f}) | {t1} | {r['dppl'] / r['w']:+.1f} | "
              f"{len(r['acc'])} |")


if __name__ == "__main__":
    main()
