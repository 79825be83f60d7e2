#!/usr/bin/env python3
"""Puts the rows of a partial `pivot eval` rerun into an earlier report.

    scripts/merge_eval.py BASE.json RERUN.json > MERGED.json

Both reports must be of the same task, seed, length and samples (checked).
Every result of RERUN replaces BASE's result with the same policy spec and
memory target, or is added; BASE's other results are kept. For a change that
moves only some policies' rows (`pivot eval` is deterministic: the other
rows would come out the same), so bench/eval/run_docs.sh can rerun just those
(ONLY=...) and the pooled tables still pair every row with full on the same
samples.
"""
import json
import sys


def key(r):
    return (r["policy_spec"], r.get("kv_ratio_target"))


def merge(base, rerun):
    for k in ("task", "seed", "length", "samples", "text", "prefix"):
        if base.get(k) != rerun.get(k):
            raise SystemExit(f"merge_eval: {k} differs: {base.get(k)!r} vs {rerun.get(k)!r}")
    new = {key(r): r for r in rerun["results"]}
    out = [new.pop(key(r), r) for r in base["results"]]
    out.extend(r for r in rerun["results"] if key(r) in new)
    merged = dict(base)
    merged["results"] = out
    return merged


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    with open(sys.argv[1]) as f:
        base = json.load(f)
    with open(sys.argv[2]) as f:
        rerun = json.load(f)
    json.dump(merge(base, rerun), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
