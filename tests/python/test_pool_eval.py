"""scripts/pool_eval.py pools eval reports of several seeds: intervals over
all samples, the share of full's accuracy, infeasible targets kept."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def report(tmp, name, seed_acc, mikv_acc):
    doc = {"task": "copy", "results": [
        {"policy_spec": "full", "kv_ratio_target": None, "feasible": True, "samples": len(seed_acc),
         "accuracy": sum(seed_acc) / len(seed_acc), "sample_accuracy": seed_acc,
         "kv_memory_ratio": 1.0, "top1_agreement": 1, "delta_ppl_pct": 0},
        {"policy_spec": "mikv", "kv_ratio_target": 0.25, "feasible": True, "samples": len(mikv_acc),
         "accuracy": sum(mikv_acc) / len(mikv_acc), "sample_accuracy": mikv_acc,
         "kv_memory_ratio": 0.24, "top1_agreement": 0.9, "delta_ppl_pct": 2.0},
        {"policy_spec": "quant4", "kv_ratio_target": 0.25, "feasible": False, "samples": 0,
         "min_kv_memory_ratio": 0.31}]}
    p = tmp / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_pools_samples_of_every_seed(tmp_path):
    a = report(tmp_path, "a.json", [0.4, 0.6], [0.2, 0.4])
    b = report(tmp_path, "b.json", [0.5, 0.5], [0.3, 0.3])
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), a, b],
                       capture_output=True, text=True, check=True)
    rows = {line.split("|")[1].strip(): line for line in r.stdout.splitlines()
            if line.startswith("| ") and "policy" not in line}
    # full: 4 samples, mean 0.5, sd 0.0816 -> ±0.080
    assert "0.500 (±0.080)" in rows["full"] and rows["full"].rstrip().endswith("| 4 |")
    # mikv: mean 0.3, share of full's 0.60, max ratio 0.24
    assert "0.300 (±0.080)" in rows["mikv"] and "| 0.60 |" in rows["mikv"] and "0.240" in rows["mikv"]
    # paired with full sample by sample: every sample is 0.2 below full's
    assert "-0.200 (±0.000)" in rows["mikv"]
    assert "infeasible (≥ 0.310)" in rows["quant4"]


def test_pools_top1_samples_into_an_interval(tmp_path):
    a = report(tmp_path, "a.json", [0.4, 0.6], [0.2, 0.4])
    b = report(tmp_path, "b.json", [0.5, 0.5], [0.3, 0.3])
    for p, t1 in ((a, [0.8, 0.9]), (b, [0.94, 1.0])):
        doc = json.loads(Path(p).read_text())
        doc["results"][1]["sample_top1"] = t1
        doc["results"][1]["top1_agreement"] = sum(t1) / 2
        Path(p).write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), a, b],
                       capture_output=True, text=True, check=True)
    row = next(line for line in r.stdout.splitlines() if line.startswith("| mikv "))
    # four samples: mean 0.91, sd 0.0841 -> ±0.082; full's reports carry
    # no samples' top-1, so its row has no interval
    assert "| 0.910 (±0.082) |" in row, row
    full = next(line for line in r.stdout.splitlines() if line.startswith("| full "))
    assert "| 1.000 | +0.0 |" in full, full


def test_refuses_mixed_tasks(tmp_path):
    a = report(tmp_path, "a.json", [0.5, 0.5], [0.3, 0.3])
    doc = json.loads(Path(a).read_text())
    doc["task"] = "ppl"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), a, str(b)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "different tasks" in r.stderr


def test_ppl_reports_are_listed_per_text(tmp_path):
    docs = []
    for text, d in (("/x/GPL-3", 0.5), ("/y/argparse.py", 1.25)):
        doc = {"task": "ppl", "text": text, "results": [
            {"policy_spec": "mikv", "kv_ratio_target": 0.33, "feasible": True, "samples": 8,
             "kv_memory_ratio": 0.31, "delta_ppl_pct": d, "delta_ppl_pct_ci95": 0.2,
             "top1_agreement": 0.96, "mean_kl": 0.004,
             **({"top1_agreement_ci95": 0.004} if "GPL" in text else {})},
            {"policy_spec": "mikv", "kv_ratio_target": 0.25, "feasible": False, "samples": 0,
             "min_kv_memory_ratio": 0.29}]}
        p = tmp_path / (text.rsplit("/", 1)[-1] + ".json")
        p.write_text(json.dumps(doc))
        docs.append(str(p))
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), *docs],
                       capture_output=True, text=True, check=True)
    assert "| GPL-3 | mikv | 0.33 | 0.310 | +0.50 (±0.20) | 0.960 (±0.004) |" in r.stdout
    # an older report without the top-1 interval: the figure alone
    assert "| argparse.py | mikv | 0.33 | 0.310 | +1.25 (±0.20) | 0.960 | 0.0040 |" in r.stdout
    assert "| GPL-3 | mikv | 0.25 | infeasible (≥ 0.290) |" in r.stdout


def test_against_pairs_policies_sample_by_sample(tmp_path):
    def doc(task, a_acc, b_acc, a_t1, b_t1, text=None):
        res = [{"policy_spec": "full", "kv_ratio_target": None, "feasible": True, "samples": 2,
                "accuracy": 0.5, "sample_accuracy": [0.5, 0.5], "kv_memory_ratio": 1.0,
                "top1_agreement": 1, "sample_top1": [1, 1], "delta_ppl_pct": 0, "mean_kl": 0}]
        for spec, acc, t1 in (("A", a_acc, a_t1), ("B", b_acc, b_t1)):
            res.append({"policy_spec": spec, "kv_ratio_target": 0.25, "feasible": True, "samples": 2,
                        "accuracy": sum(acc) / 2, "sample_accuracy": acc, "kv_memory_ratio": 0.25,
                        "top1_agreement": sum(t1) / 2, "sample_top1": t1, "delta_ppl_pct": 1.0,
                        "mean_kl": 0.01})
        d = {"task": task, "results": res, **({"text": text} if text else {})}
        p = tmp_path / f"{task}-{len(list(tmp_path.iterdir()))}.json"
        p.write_text(json.dumps(d))
        return str(p)
    # copy, two seeds: B is 0.1 above A on every sample, its top-1 0.02 above
    a = doc("copy", [0.2, 0.4], [0.3, 0.5], [0.90, 0.92], [0.92, 0.94])
    b = doc("copy", [0.1, 0.3], [0.2, 0.4], [0.80, 0.90], [0.82, 0.92])
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), a, b, "--against", "2"],
                       capture_output=True, text=True, check=True)
    assert "paired against A at 0.25" in r.stdout
    assert "| B at 0.25 | +0.1000 (±0.0000) | +0.0200 (±0.0000) |" in r.stdout, r.stdout
    # full (0.5 everywhere) against A's 0.2, 0.4, 0.1, 0.3: mean 0.25, sd
    # 0.1291 -> ±0.1265; the base row itself is not listed
    assert "| full | +0.2500 (±0.1265) |" in r.stdout
    assert "| A at 0.25 |" not in r.stdout
    # ppl: windows paired within each text, texts not pooled; B's top-1
    # differences 0.01 and 0.03: mean 0.02, sd 0.01414 -> ±0.0196
    p = doc("ppl", [], [], [0.95, 0.93], [0.96, 0.96], text="/x/GPL-3")
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), p, "--against", "2"],
                       capture_output=True, text=True, check=True)
    assert "| GPL-3 | B at 0.25 | – | +0.0200 (±0.0196) |" in r.stdout, r.stdout
    # a row that is not there is an error, not an empty table
    r = subprocess.run([sys.executable, str(REPO / "scripts/pool_eval.py"), p, "--against", "7"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--against 7" in r.stderr
