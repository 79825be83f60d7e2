"""scripts/merge_eval.py puts a partial rerun's rows into an earlier report:
same policy and target replaced in place, new ones added, the rest kept, and
reports of different samples refused."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def row(spec, target, acc):
    return {"policy_spec": spec, "kv_ratio_target": target, "accuracy": acc}


def write(tmp, name, rows, seed=1):
    p = tmp / name
    p.write_text(json.dumps({"task": "copy", "seed": seed, "length": 512, "samples": 8,
                             "results": rows}))
    return str(p)


def merge(a, b):
    return subprocess.run([sys.executable, str(REPO / "scripts/merge_eval.py"), a, b],
                          capture_output=True, text=True)


def test_replaces_adds_and_keeps(tmp_path):
    base = write(tmp_path, "base.json", [row("full", None, 0.5), row("mikv", 0.33, 0.4),
                                         row("mikv", 0.25, 0.3), row("quant4", 0.33, 0.2)])
    rerun = write(tmp_path, "rerun.json", [row("mikv", 0.25, 0.35), row("mikv,heads=0", 0.25, 0.1)])
    r = merge(base, rerun)
    assert r.returncode == 0, r.stderr
    got = [(x["policy_spec"], x["kv_ratio_target"], x["accuracy"]) for x in json.loads(r.stdout)["results"]]
    assert got == [("full", None, 0.5), ("mikv", 0.33, 0.4), ("mikv", 0.25, 0.35),
                   ("quant4", 0.33, 0.2), ("mikv,heads=0", 0.25, 0.1)]


def test_refuses_other_samples(tmp_path):
    base = write(tmp_path, "base.json", [row("full", None, 0.5)], seed=1)
    rerun = write(tmp_path, "rerun.json", [row("full", None, 0.5)], seed=2)
    r = merge(base, rerun)
    assert r.returncode != 0 and "seed differs" in r.stderr
    assert r.stdout == ""
