"""`pivot eval` on tiny settings: the harness must be exact where the answer
is known (full vs full, a budget above the length) and keep its memory
promise (stored KV bytes <= target x FP16) for budgeted policies.

Runs the real binary (PIVOT_BIN or build/cli/pivot) on the default model;
every call is a few seconds on 2 threads."""
from __future__ import annotations

import json
import subprocess

import pytest

TIMEOUT = 180
TINY = ["--length", "48", "--prefix", "24", "--samples", "1", "--threads", "2"]


def run(pivot_bin, *args):
    return subprocess.run([str(pivot_bin), "eval", *args], capture_output=True, text=True,
                          timeout=TIMEOUT)


def evaluate(pivot_bin, model, tmp_path, *args):
    out = tmp_path / "eval.json"
    r = run(pivot_bin, "--model", str(model), "--json", str(out), *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), r


def by_spec(doc):
    return {r["policy_spec"]: r for r in doc["results"]}


def test_full_vs_full_is_exact(pivot_bin, smol_model, tmp_path):
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies", "full,full",
                      *TINY)
    res = doc["results"]
    assert [x["policy"] for x in res] == ["full", "full"]
    ref, other = res
    assert other["delta_ppl_pct"] == 0
    assert other["top1_agreement"] == 1
    assert other["mean_kl"] == 0
    assert other["ppl"] == ref["ppl"] and 1 < ref["ppl"] < 1000
    assert other["tokens_scored"] == 48 - 24
    # The table on stdout names every run; progress goes to stderr only.
    assert r.stdout.count("full") >= 2 and "sample 1/1" in r.stderr
    assert "sample" not in r.stdout


def test_json_schema(pivot_bin, smol_model, tmp_path):
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, "--task", "copy", "--policies", "full",
                      "--kv-ratio", "0.5", "--length", "33", "--samples", "2", "--threads", "2")
    assert doc["task"] == "copy" and doc["kv_ratio_target"] == 0.5
    assert isinstance(doc["model"], str) and doc["model"]
    (full,) = doc["results"]
    for key in ("policy", "policy_spec", "kv_memory_ratio", "samples", "ppl", "delta_ppl_pct",
                "top1_agreement", "mean_kl", "accuracy"):
        assert key in full, key
    assert full["samples"] == 2
    # full has no budget: its natural ratio, FP16 pages rounding up.
    assert full["budget_solved"] is False and full["kv_memory_ratio"] >= 1
    assert 0 <= full["accuracy"] <= 1


def test_budget_above_length_equals_full(pivot_bin, smol_model, tmp_path):
    spec = "scissorhands,budget=1000"
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies",
                      f"full,{spec}", *TINY)
    r = by_spec(doc)[spec]
    assert r["budget_solved"] is False  # budget= given: kept as is
    assert r["tokens_dropped"] == 0 and r["tokens_low"] == 0
    assert r["top1_agreement"] == 1
    assert r["mean_kl"] < 1e-6
    # Not bit for bit since the plain cache got its own blocked kernel
    # (cache/kv_attn.c): float rounding moved perplexity by 0.013% (measured).
    assert abs(r["delta_ppl_pct"]) < 0.1


@pytest.mark.parametrize("task", ["ppl", "copy"])
def test_budgeted_policies_meet_the_ratio(pivot_bin, smol_model, tmp_path, task):
    target = 0.5
    args = ["--task", task, "--policies", "full,scissorhands,mikv,recent=4,group=64,lo-bits=2;quant2",
            "--kv-ratio", str(target), "--length", "128", "--prefix", "64", "--samples", "1",
            "--threads", "2"]
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, *args)
    res = by_spec(doc)
    for spec in ("scissorhands", "mikv,recent=4,group=64,lo-bits=2"):
        r = res[spec]
        assert r["budget_solved"] is True and r["kv_ratio_target"] == target
        assert r["feasible"], r
        assert 0 < r["kv_memory_ratio"] <= target, r
        assert r["kv_memory_ratio_reserved"] <= target + 1e-12
        assert r["kv_bytes_stored"] <= target * r["kv_bytes_fp16"]
        assert 0 <= r["top1_agreement"] <= 1 and r["mean_kl"] >= 0 and r["ppl"] > 1
    # Compression is really active: scissorhands dropped tokens, mikv kept them low.
    assert res["scissorhands"]["tokens_dropped"] > 0
    assert res["mikv,recent=4,group=64,lo-bits=2"]["tokens_low"] > 0
    assert res["mikv,recent=4,group=64,lo-bits=2"]["tokens_dropped"] == 0
    assert res["scissorhands"]["mean_kl"] > 0
    # quant2 has no budget: its natural ratio, well under FP16.
    q = res["quant2"]
    assert q["budget_solved"] is False and q["kv_memory_ratio"] < 0.6


def test_infeasible_target_is_reported_not_run(pivot_bin, smol_model, tmp_path):
    # 32 recent FP16 tokens of 48 cannot fit in 10% of FP16.
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies",
                      "full,mikv", "--kv-ratio", "0.1", *TINY)
    m = by_spec(doc)["mikv"]
    assert m["feasible"] is False and m["samples"] == 0
    assert m["min_kv_memory_ratio"] > 0.1
    assert "infeasible" in r.stdout


def test_retrieval_runs_and_scores(pivot_bin, smol_model, tmp_path):
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, "--task", "retrieval", "--policies",
                      "full", "--lines", "2", "--samples", "2", "--threads", "2")
    (full,) = doc["results"]
    assert full["samples"] == 2 and full["accuracy"] in (0, 0.5, 1)
    assert "ppl" not in full


def test_copy_text_copies_a_window_of_the_text(pivot_bin, smol_model, tmp_path):
    # The first copy is natural text, which the model copies far better than
    # random words; a K/V-split mikv runs through the same harness.
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, "--task", "copy", "--copy-text",
                      "--policies", "full,mikv,lo-bits=4/2,group=64,recent=8", "--kv-ratio",
                      "0.5", "--length", "193", "--samples", "1", "--threads", "2")
    full, mikv = doc["results"]
    assert full["samples"] == 1 and full["accuracy"] >= 0.7, full
    assert mikv["feasible"] and mikv["tokens_low"] > 0, mikv
    assert 0 < mikv["kv_memory_ratio"] <= 0.5 and ",lo=4/2," in mikv["policy_resolved"], mikv
    assert mikv["accuracy"] > 0.5 * full["accuracy"], mikv


@pytest.mark.parametrize("args, code, msg", [
    (["--task", "nope"], 2, "unknown task"),
    ([], 2, "--task is required"),
    (["--task", "ppl", "--policies", "full,bogus"], 2, "unknown preset"),
    (["--task", "ppl", "--kv-ratio", "0"], 2, "--kv-ratio"),
    (["--task", "ppl", "--kv-ratio", "1.5"], 2, "--kv-ratio"),
    (["--task", "ppl", "--kv-ratio", "abc"], 2, "--kv-ratio"),
    (["--task", "ppl", "--plot", "x.png"], 2, "--plot needs --json"),
    (["--task", "ppl", "--frobnicate"], 2, "unknown option"),
    (["--task", "ppl", "--text", "/nonexistent/text.txt"], 1, "cannot read text file"),
    (["--task", "copy", "--copy-text", "--text", "/nonexistent/t.txt"], 1, "cannot read text file"),
])
def test_bad_arguments(pivot_bin, args, code, msg):
    r = run(pivot_bin, *args)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_plot_writes_a_png(pivot_bin, smol_model, tmp_path):
    png = tmp_path / "q.png"
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies",
                      "full,quant4", "--ratios", "0.5", "--plot", str(png), *TINY)
    assert png.is_file(), r.stderr[-2000:]
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
