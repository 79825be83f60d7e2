"""KV cache policies on the real model through `pivot logits --kv-policy`.

- `full` is the plain FP16 cache: same logits as no flag at all;
- a policy whose budget exceeds the sequence demotes nothing: the logits
  of `full` within float rounding (the plain cache runs the blocked
  online-softmax kernel of cache/kv_attn.c, the mixed one a per-token loop)
  and the same greedy token everywhere;
- compressing policies change the logits but stay close on a short text
  (a sanity bound, not the quality protocol: that is `pivot eval`);
- bad policies are usage errors with a message.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from conftest import TIMEOUT_S, report

# 160 tokens of a fixed pseudo-text (ids in the ordinary-word range).
TOKENS = [1] + [int(x) for x in (np.arange(159) * 7919 % 20000 + 300)]


def logits(pivot_bin, model, tmp_path, *extra, split=None):
    out = tmp_path / f"l{abs(hash(extra + (split,)))}.bin"
    args = [str(pivot_bin), "logits", "--model", str(model), "--threads", "2",
            "--tokens", ",".join(map(str, TOKENS)), "--out", str(out), *extra]
    if split:
        args += ["--split", str(split)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, dtype=np.float32).reshape(len(TOKENS), -1)


def test_full_equals_plain_and_large_budget_equals_full(pivot_bin, smol_model, tmp_path):
    plain = logits(pivot_bin, smol_model, tmp_path, split=40)
    full = logits(pivot_bin, smol_model, tmp_path, "--kv-policy", "full", split=40)
    assert np.array_equal(plain, full)
    # mikv with an FP16 high tier (the preset's is INT8), rotated and not
    for spec in ["mikv,budget=100000,hi-bits=16,rotate=0", "mikv,budget=100000,hi-bits=16",
                 "h2o,budget=1000", "scissorhands,budget=200"]:
        got = logits(pivot_bin, smol_model, tmp_path, "--kv-policy", spec, split=40)
        # Attention differs by ~1e-7; the int8 activation quantization of the
        # matmuls turns that into ~1e-3 mean logit noise (measured 2026-11-27:
        # max 0.023, mean 0.0017, logits in [-10, 34]). A demoted token moves
        # logits by far more (see the bounds below).
        d = np.abs(got - full)
        report(f"kv policy {spec} (nothing demoted): |logit - full| max {d.max():.2e} mean {d.mean():.2e}")
        assert d.max() < 0.1 and d.mean() < 0.01, (spec, d.max(), d.mean())
        # top-1 agrees wherever full's winner leads by more than the two
        # caches' logits can differ (2 * max |diff|): a near-tie may flip.
        # Since the plain cache got its own AVX2 tile (polynomial exp, issue
        # 17) the two are no longer computed alike: position 152 of this
        # text leads by 7.4e-5 and flipped (2026-12-04).
        top2 = np.sort(full, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * d.max()
        report(f"kv policy {spec}: top-1 compared at {clear.mean():.0%} of positions (the rest near-ties)")
        assert clear.mean() > 0.7, (spec, clear.mean())  # 0.93, 0.84 measured for the mikv specs
        assert np.array_equal(got.argmax(1)[clear], full.argmax(1)[clear]), spec


# Sanity bounds on 160 tokens of pseudo-text, measured with margin.
@pytest.mark.parametrize("spec,min_top1,max_kl", [
    ("mikv,budget=0.5,lo-bits=4", 0.9, 0.02),
    ("quant4", 0.8, 0.03),
    ("mikv,budget=0.5,lo-bits=4,hi-bits=8", 0.85, 0.05),
    # The preset (rotated INT4 keys / INT3 values, INT8 high tier). The old
    # one (FP16 high, INT4/INT2, no rotation) measured top-1 0.912, KL 0.0117.
    # (measured 2026-12-02: top-1 0.950, KL 0.0032; the old preset fails the KL bound)
    ("mikv,budget=0.5", 0.85, 0.008),
    ("mikv,budget=0.5,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16", 0.85, 0.03),
])
def test_compressing_policies_stay_close(pivot_bin, smol_model, tmp_path, spec, min_top1, max_kl):
    full = logits(pivot_bin, smol_model, tmp_path, "--kv-policy", "full", split=40)
    got = logits(pivot_bin, smol_model, tmp_path, "--kv-policy", spec, split=40)
    assert np.isfinite(got).all()
    assert not np.array_equal(got, full)  # something was compressed
    top1 = float((got.argmax(1) == full.argmax(1)).mean())
    p = np.exp(full - full.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lq = got - got.max(1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
    kl = float((p * (np.log(p + 1e-30) - lq)).sum(1).mean())
    report(f"kv policy {spec}: top-1 agreement {top1:.3f}, mean KL {kl:.4f} vs full "
           f"({len(TOKENS)} tokens, prefill chunks of 40)")
    assert top1 >= min_top1 and kl < max_kl


@pytest.mark.parametrize("spec,needle", [
    ("mikv,lo-bits=5", "lo-bits must be 0, 2, 3, 4 or 8"),
    ("mikv,lo-bits=4/1", "lo-bits must be 0, 2, 3, 4 or 8"),
    ("scissorhands,lo-v-bits=2", "needs a low tier"),
    ("nosuch", "unknown preset"),
    ("full,budget=10", "select=none never demotes"),
])
def test_bad_policy_is_a_usage_error(pivot_bin, spec, needle):
    r = subprocess.run([str(pivot_bin), "logits", "--tokens", "1,2", "--out", "/dev/null",
                        "--kv-policy", spec], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 2 and needle in r.stderr
    r = subprocess.run([str(pivot_bin), "generate", "--prompt", "x", "--kv-policy", spec],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 2 and needle in r.stderr
    r = subprocess.run([str(pivot_bin), "generate", "--prompt", "x", "--kv-policy", "mikv",
                        "--kv-hi-bits", "8", "--kv-key-balance", "0"],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 2 and "needs key-balance=1" in r.stderr


def test_generate_reports_kv_usage(pivot_bin, smol_model):
    r = subprocess.run([str(pivot_bin), "generate", "--model", str(smol_model), "--prompt",
                        "The quick brown fox jumps over the lazy dog. " * 8, "--max-tokens", "8",
                        "--temperature", "0", "--threads", "2", "--kv-policy", "mikv",
                        "--kv-budget", "16", "--kv-recent", "8"],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    # the preset's heads knob, resolved with the model's own ranking (the
    # probe at load): its five copying KV heads get INT8 low tokens
    m = re.search(r"pivot: kv mikv\(select=accumulated,hi=8,lo=4/3,layer-bits=([^,]*),budget=16,"
                  r"recent=8,", r.stderr)
    assert m, r.stderr
    heads = {e.split(":")[0] for e in m.group(1).split("+")}
    assert heads == {"18-18.2", "17-17.1", "23-23.0", "20-20.2", "23-23.2"}, m.group(1)
    assert all(e.endswith(":8/8") for e in m.group(1).split("+")), m.group(1)
    assert "rotate=1,clip=0,scale-bits=8,value-norm=1)" in r.stderr
    assert "MiB stored vs" in r.stderr and "low" in r.stderr and "dropped" in r.stderr


def generate_mikv(pivot_bin, smol_model, *extra):
    """`pivot generate` with the mikv preset at a budget of 16 on a repeated
    sentence (the preset's knobs tests below change one of)."""
    return subprocess.run([str(pivot_bin), "generate", "--model", str(smol_model), "--prompt",
                           "The quick brown fox jumps over the lazy dog. " * 8, "--max-tokens", "8",
                           "--temperature", "0", "--threads", "2", "--kv-policy", "mikv",
                           "--kv-budget", "16", "--kv-recent", "8", *extra],
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def stored(r):
    """(MiB stored, high, low tokens per head) from generate's KV line."""
    m = re.search(r": ([0-9.]+) MiB stored vs .*tokens per head: (\d+) high, (\d+) low", r.stderr)
    assert m, r.stderr
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


def test_generate_value_norm_flag(pivot_bin, smol_model):
    """--kv-value-norm 0 turns the mikv preset's value-norm off: the spec says
    so, the tiers hold the same counts in the same bytes (only which tokens
    differs: tests/cache/test_kv_vnorm.c); a value other than 1 or 0 is a
    one-line error and exit 2."""
    off, on = generate_mikv(pivot_bin, smol_model, "--kv-value-norm", "0"), generate_mikv(pivot_bin, smol_model)
    assert off.returncode == 0 and on.returncode == 0, (off.stderr, on.stderr)
    assert "value-norm=1" in on.stderr and "value-norm" not in off.stderr, (off.stderr, on.stderr)
    assert stored(off) == stored(on) and stored(on)[2] > 0
    bad = generate_mikv(pivot_bin, smol_model, "--kv-value-norm", "2")
    assert bad.returncode == 2 and "value-norm must be 1 or 0" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_generate_two_byte_scales_store_fewer_bytes(pivot_bin, smol_model):
    """--kv-scale-bits 8 (the mikv preset's since 2026-12-06) stores the same
    tokens per tier in fewer bytes than 16 (fp16 scales); a value other
    than 16 or 8 is a one-line error and a non-zero exit."""
    def run(*extra):
        return generate_mikv(pivot_bin, smol_model, *extra)

    a, b, preset = run("--kv-scale-bits", "16"), run("--kv-scale-bits", "8"), run()
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert "scale-bits=8," in b.stderr and "scale-bits" not in a.stderr
    assert stored(preset) == stored(b), (preset.stderr, b.stderr)
    (ma, ha, la), (mb, hb, lb) = stored(a), stored(b)
    assert (ha, la) == (hb, lb) and la > 0
    assert mb < ma, (ma, mb)
    bad = run("--kv-scale-bits", "5")
    assert bad.returncode != 0
    assert "scale-bits must be 16 or 8, got '5'" in bad.stderr


def test_generate_clip_floor(pivot_bin, smol_model):
    """--kv-clip-floor sets how far clipped ranges may shrink, per layer
    range: the policy line names it back and the bytes stay those of the
    same policy without it (only each group's range differs); a floor
    outside [0.5, 1] is a one-line error and a non-zero exit."""
    def run(*extra):
        return subprocess.run([str(pivot_bin), "generate", "--model", str(smol_model), "--prompt",
                               "The quick brown fox jumps over the lazy dog. " * 8, "--max-tokens", "8",
                               "--temperature", "0", "--threads", "2", "--kv-policy", "mikv",
                               "--kv-budget", "16", "--kv-recent", "8", "--kv-clip", "values", *extra],
                              capture_output=True, text=True, timeout=TIMEOUT_S)

    a, b = run(), run("--kv-clip-floor", "0-14:0.8+15-29:0.5")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert "clip=values" in b.stderr and "clip-floor=0-14:0.8+15-29:0.5)" in b.stderr, b.stderr
    assert "clip-floor" not in a.stderr
    mib = [re.search(r": ([0-9.]+) MiB stored vs", r.stderr) for r in (a, b)]
    assert all(mib) and mib[0].group(1) == mib[1].group(1), (a.stderr, b.stderr)
    bad = run("--kv-clip-floor", "0.4")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "clip-floor must be a fraction in [0.5, 1]" in bad.stderr, bad.stderr
