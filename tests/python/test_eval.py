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
    # measured 2026-12-02: 10.528 (the first 48 tokens of GPL-3)
    assert other["ppl"] == ref["ppl"] and 8 < ref["ppl"] < 13.5, ref
    assert other["tokens_scored"] == 48 - 24
    # The table on stdout names every run; progress goes to stderr only.
    assert r.stdout.count("full") >= 2 and "sample 1/1" in r.stderr
    # the final progress line: a full bar, nothing left
    assert "[" + "#" * 20 + "] sample 1/1" in r.stderr and "~0 s left" in r.stderr, r.stderr
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
    # measured 2026-12-02: 0.75 (16-token copies, seed 0, 2 samples)
    assert 0.5 <= full["accuracy"] <= 1, full


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


# Quality bounds of test_budgeted_policies_meet_the_ratio: (min top-1, max KL)
# per task and policy. Measured 2026-12-02 (one sample, 128 tokens, prefix
# 64, ratio 0.5): ppl: scissorhands 0.750 / 0.303, mikv 2-bit 0.781 / 0.274;
# copy: scissorhands 0.063 / 4.74, mikv 2-bit 0.141 / 2.41 (a copy needs the
# dropped first half, so only garbage fails there: uniform output has KL ~10).
BUDGETED_BOUNDS = {
    ("ppl", "scissorhands"): (0.6, 0.5),
    ("ppl", "mikv,recent=4,group=64,lo-bits=2"): (0.6, 0.45),
    ("copy", "scissorhands"): (0.02, 6.5),
    ("copy", "mikv,recent=4,group=64,lo-bits=2"): (0.05, 3.5),
}


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
        min_top1, max_kl = BUDGETED_BOUNDS[(task, spec)]
        assert r["top1_agreement"] >= min_top1 and 0 < r["mean_kl"] < max_kl, r
        if task == "ppl":  # measured: 28.4 and 32.4 vs full's 29.6
            assert 0.7 * res["full"]["ppl"] < r["ppl"] < 1.5 * res["full"]["ppl"], r
    # Compression is really active: scissorhands dropped tokens, mikv kept them low.
    assert res["scissorhands"]["tokens_dropped"] > 0
    assert res["mikv,recent=4,group=64,lo-bits=2"]["tokens_low"] > 0
    assert res["mikv,recent=4,group=64,lo-bits=2"]["tokens_dropped"] == 0
    assert res["scissorhands"]["mean_kl"] > 0
    # quant2 has no budget: its natural ratio, well under FP16.
    q = res["quant2"]
    assert q["budget_solved"] is False and q["kv_memory_ratio"] < 0.6


def test_top1_interval_over_windows(pivot_bin, smol_model, tmp_path):
    # Three windows: top-1 agreement per window, its mean the pooled figure
    # (equal windows) and an interval of 1.96 standard errors over them.
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies", "full,quant2",
                      "--length", "96", "--prefix", "32", "--samples", "3", "--threads", "2")
    full, q = doc["results"]
    assert full["sample_top1"] == [1, 1, 1] and full["top1_agreement_ci95"] == 0
    t = q["sample_top1"]
    assert len(t) == 3 and all(0 <= x <= 1 for x in t), q
    assert abs(sum(t) / 3 - q["top1_agreement"]) < 1e-12, q
    m = sum(t) / 3
    sd = (sum((x - m) ** 2 for x in t) / 2) ** 0.5
    assert abs(q["top1_agreement_ci95"] - 1.96 * sd / 3 ** 0.5) < 1e-12, q
    # INT2 keys and values disagree with full somewhere, by a different share
    # per window (measured: 0.70-0.77 at 96 tokens)
    assert q["top1_agreement"] < 0.95 and q["top1_agreement_ci95"] > 0, q
    row = next(line for line in r.stdout.splitlines() if line.startswith("quant2"))
    assert f"{q['top1_agreement']:.4f}\u00b1{q['top1_agreement_ci95']:.4f}" in row, row


def test_infeasible_target_is_reported_not_run(pivot_bin, smol_model, tmp_path):
    # 32 recent FP16 tokens of 48 cannot fit in 10% of FP16.
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies",
                      "full,mikv", "--kv-ratio", "0.1", *TINY)
    m = by_spec(doc)["mikv"]
    assert m["feasible"] is False and m["samples"] == 0
    assert m["min_kv_memory_ratio"] > 0.1
    assert "infeasible" in r.stdout


def test_table_shows_whole_policy_specs(pivot_bin, smol_model, tmp_path):
    # two policies that differ past the 28th character: each row names its own
    long_a = "mikv;lo-bits=4/2;heads=0;scale-bits=16;budget=8"
    long_b = "mikv;lo-bits=4/2;heads=0;scale-bits=8;budget=8"
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "ppl", "--policies",
                      f"full,{long_a},{long_b}", *TINY)
    rows = [line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()]
    assert rows[0] == "full" and len(rows) == 3, r.stdout
    assert rows[1] != rows[2] and rows[2].endswith("scale-bits=8,budget=8"), r.stdout
    assert rows[1:] == [x["policy_spec"] for x in doc["results"][1:]], (rows, r.stdout)


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


def test_lookup_only_the_cache_can_answer(pivot_bin, smol_model, tmp_path):
    # Records "KEY: NN" then every key again: full reads the numbers back
    # (measured 0.975 on these two samples), an evictor that dropped three
    # quarters of the list cannot (0.06), and only digit tokens are scored.
    doc, _ = evaluate(pivot_bin, smol_model, tmp_path, "--task", "lookup", "--policies",
                      "full,scissorhands,budget=0.25,full", "--length", "256", "--digits", "2",
                      "--samples", "2", "--threads", "2")
    assert doc["task"] == "lookup" and doc["digits"] == 2 and doc["length"] == 256
    full, evict, full2 = doc["results"]
    # two digits per question; every key is asked once per sample
    assert full["tokens_scored"] % 2 == 0 and 60 <= full["tokens_scored"] <= 2 * 2 * 128 // 6, full
    assert full["accuracy"] >= 0.85, full
    assert full2["accuracy"] == full["accuracy"] and full2["mean_kl"] == 0, full2
    assert evict["tokens_dropped"] > 0 and evict["accuracy"] < 0.5 * full["accuracy"], evict
    assert "accuracy_ci95" in full
    assert len(full["sample_accuracy"]) == 2
    assert abs(sum(full["sample_accuracy"]) / 2 - full["accuracy"]) < 0.03, full


@pytest.mark.parametrize("args, code, msg", [
    (["--task", "nope"], 2, "unknown task"),
    (["--task", "lookup", "--length", "20"], 1, "fewer than 2 records"),
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


# ---- quality bounds per compressed preset: a regression in a cache fails CI ----
#
# One sample each of a natural-text perplexity window (ppl: the default text,
# GPL-3, 128 tokens, 32 prefilled, 96 scored) and of a random-token copy (copy:
# 128 tokens, seed 0), every preset at --kv-ratio 0.55 (the budgeted ones are
# infeasible at 0.5 on 128 tokens: their recent window and pages need ~0.52;
# at 0.6 the solver, which since 2026-12-06 tries every budget, lets mikv keep
# all 128 tokens at INT8, 0.57 of FP16, and nothing low is left to test).
# Two `pivot eval` runs, ~45 s each on 2 loaded cores.
#
# Measured 2026-12-02 over 4 windows (GPL-3 from byte 0, 8000, 16000, 24000)
# and 4 copy seeds (0-3); the run below is window 0 and seed 0, which are
# deterministic on one machine, so the margins cover other CPUs' kernels
# (AVX2 vs AVX-512 rounding flips a token here and there: ~0.01 of top-1):
#
#   ppl          kv ratio  delta ppl %         top-1          mean KL
#   mikv         0.461     -3.0 .. +8.0        0.854 .. 0.927  0.019 .. 0.050
#   scissorhands 0.520     +7.2 .. +15.5       0.865 .. 0.927  0.047 .. 0.161
#   h2o          0.528     +1.4 .. +13.2       0.875 .. 0.906  0.036 .. 0.130
#   streaming    0.512     +10.1 .. +21.1      0.823 .. 0.854  0.073 .. 0.218
#   quant4       0.528     -6.0 .. +3.9        0.896 .. 0.969  0.0055 .. 0.0145
#   quant2       0.433     +27.8 .. +46.9      0.531 .. 0.729  0.212 .. 0.501
#
#   (at 0.55, 2026-12-06, window 0 / seed 0: mikv 0.480 with budget 64,
#   -1.25% / 0.969 / 0.0021 and copy 0.563 / 0.875 / 0.032; the others as above)
#
#   copy         kv ratio  accuracy            top-1          mean KL
#   full         1.008     0.453 .. 0.594      1              0
#   mikv         0.520     0.250 .. 0.328      0.406 .. 0.609  0.417 .. 0.673
#   quant4       0.528     0.422 .. 0.563      0.750 .. 0.844  0.063 .. 0.095
#   quant2       0.433     0.063 .. 0.141      0.156 .. 0.234  1.45 .. 2.07
#   scissorhands 0.520     0 .. 0.016          0.063 .. 0.094  3.08 .. 4.56
#   h2o          0.528     0 .. 0.016          0.063 .. 0.094  2.85 .. 4.31
#   streaming    0.512     0 .. 0.016          0.063 .. 0.094  3.27 .. 4.60
#
# The evictors cannot copy what they dropped (the first copy), so on copy only
# garbage fails them (uniform output: KL ~10); ppl is their test. The bounds
# separate neighbours: quant4 degraded to 2-bit values, or mikv back to the old
# INT2 keys (top-1 0.78, KL 0.27 on ppl at 0.5), fail.
QUALITY_POLICIES = ["mikv", "scissorhands", "h2o", "streaming", "quant4", "quant2"]
QUALITY_RATIO = 0.55
# policy: (max delta ppl %, min top-1, max KL, max kv ratio)
PPL_BOUNDS = {
    "mikv": (15, 0.80, 0.08, QUALITY_RATIO),  # peak memory (since 2026-12-02) reaches the target
    "scissorhands": (25, 0.80, 0.25, QUALITY_RATIO),
    "h2o": (22, 0.82, 0.20, QUALITY_RATIO),
    "streaming": (30, 0.77, 0.30, QUALITY_RATIO),
    "quant4": (8, 0.85, 0.025, 0.55),
    "quant2": (65, 0.48, 0.70, 0.45),
}
# policy: (min accuracy, min top-1, max KL)
COPY_BOUNDS = {
    "full": (0.35, 1, 0),
    "mikv": (0.17, 0.30, 0.90),
    "quant4": (0.32, 0.65, 0.14),
    "quant2": (0.03, 0.10, 2.8),
    "scissorhands": (0, 0.03, 6),
    "h2o": (0, 0.03, 6),
    "streaming": (0, 0.03, 6),
}


@pytest.fixture(scope="module")
def quality(pivot_bin, smol_model, tmp_path_factory):
    out = {}
    for task, extra in (("ppl", ["--prefix", "32"]), ("copy", ["--seed", "0"])):
        tmp = tmp_path_factory.mktemp(f"quality-{task}")
        doc, _ = evaluate(pivot_bin, smol_model, tmp, "--task", task, "--policies",
                          ",".join(["full", *QUALITY_POLICIES]), "--kv-ratio", str(QUALITY_RATIO),
                          "--length", "128", "--samples", "1", "--threads", "2", *extra)
        out[task] = by_spec(doc)
    return out


@pytest.mark.parametrize("policy", QUALITY_POLICIES)
def test_quality_ppl_window(quality, policy):
    r = quality["ppl"][policy]
    max_dppl, min_top1, max_kl, max_ratio = PPL_BOUNDS[policy]
    assert r["feasible"] and r["samples"] == 1 and r["tokens_scored"] == 96, r
    assert r["tokens_low"] + r["tokens_dropped"] > 0, r  # it compressed something
    assert 0 < r["kv_memory_ratio"] <= max_ratio, r
    assert r["delta_ppl_pct"] < max_dppl, r
    assert r["top1_agreement"] >= min_top1, r
    assert 0 < r["mean_kl"] < max_kl, r


@pytest.mark.parametrize("policy", ["full", *QUALITY_POLICIES])
def test_quality_random_copy(quality, policy):
    r = quality["copy"][policy]
    min_acc, min_top1, max_kl = COPY_BOUNDS[policy]
    assert r["feasible"] and r["samples"] == 1, r
    assert r["accuracy"] >= min_acc, r
    assert r["top1_agreement"] >= min_top1, r
    assert r["mean_kl"] <= max_kl, r
    if policy != "full":
        assert r["mean_kl"] > 0 and r["tokens_low"] + r["tokens_dropped"] > 0, r
        assert r["kv_memory_ratio"] <= QUALITY_RATIO, r


def test_prefix_cached_twins(pivot_bin, smol_model, tmp_path):
    """--prefix-cached: each policy runs twice, the twin taking the prompt's
    prefix (up to its last 64-token boundary) from the prefix cache after
    another sequence computed and published it. For full the pages are the
    very pages, so the twin is exact; for mikv the snapshot is exact at its
    boundary and the run differs from a fresh one only by where a prefill
    call ended (docs/KV_CACHE.md), so it stays close."""
    doc, r = evaluate(pivot_bin, smol_model, tmp_path, "--task", "copy", "--policies",
                      "full,mikv", "--length", "200", "--samples", "2", "--threads", "2",
                      "--prefix-cached")
    got = by_spec(doc)
    assert list(got) == ["full", "full +cached", "mikv", "mikv +cached"], list(got)
    assert [x["prefix_cached"] for x in doc["results"]] == [False, True, False, True]
    full, twin = got["full"], got["full +cached"]
    assert twin["top1_agreement"] == 1 and twin["mean_kl"] == 0 and twin["ppl"] == full["ppl"]
    assert twin["accuracy"] == full["accuracy"]
    mikv, mtwin = got["mikv"], got["mikv +cached"]
    assert mtwin["kv_memory_ratio"] == mikv["kv_memory_ratio"]
    assert abs(mtwin["top1_agreement"] - mikv["top1_agreement"]) <= 0.1, (mikv, mtwin)
    assert "full +cached" in r.stdout
