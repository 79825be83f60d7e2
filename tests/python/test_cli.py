"""The `pivot` binary driven as a user drives it: generate, help, errors.

Runs the real binary (PIVOT_BIN or build/cli/pivot) on the default model."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

TIMEOUT = 120


def run(pivot_bin, *args, env=None):
    return subprocess.run([str(pivot_bin), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def gen(pivot_bin, model, *args):
    return run(pivot_bin, "generate", "--model", str(model), "--threads", "2", *args)


def test_greedy_capital_of_france_says_paris(pivot_bin, smol_model):
    r = gen(pivot_bin, smol_model, "--prompt", "The capital of France is", "--max-tokens", "8",
            "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    # stdout carries only the completion; the timing goes to stderr.
    assert "tokens/s" not in r.stdout
    m = re.search(r"prompt (\d+) tokens .*\(([\d.]+) tokens/s\).*generated (\d+) tokens.*\(([\d.]+) tokens/s\)",
                  r.stderr)
    assert m, r.stderr
    assert int(m.group(1)) == 5 and int(m.group(3)) == 8
    assert float(m.group(2)) > 0 and float(m.group(4)) > 0


def test_default_model_is_found_without_flag(pivot_bin, smol_model):
    r = run(pivot_bin, "generate", "--prompt", "The capital of France is", "--max-tokens", "4",
            "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_same_seed_same_output_and_seeds_matter(pivot_bin, smol_model):
    args = ["--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "1.0",
            "--top-k", "0", "--top-p", "1", "--min-p", "0"]
    a = gen(pivot_bin, smol_model, *args, "--seed", "42")
    b = gen(pivot_bin, smol_model, *args, "--seed", "42")
    assert a.returncode == 0 and b.returncode == 0
    assert a.stdout == b.stdout and len(a.stdout.strip()) > 0
    others = {gen(pivot_bin, smol_model, *args, "--seed", str(s)).stdout for s in (1, 2, 3)}
    assert len(others | {a.stdout}) > 1, "different seeds never changed the output"


def test_chat_template_and_eos(pivot_bin, smol_model):
    r = gen(pivot_bin, smol_model, "--chat", "--system", "You answer in one word.",
            "--prompt", "Say hello.", "--max-tokens", "64", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "chat produced no text"
    # ChatML markers are special tokens and must never leak into the text.
    assert "<|im_start|>" not in r.stdout and "<|im_end|>" not in r.stdout
    m = re.search(r"prompt (\d+) tokens", r.stderr)
    # system + user turns + assistant header: clearly longer than the bare prompt
    assert m and int(m.group(1)) > 15


def test_help_documents_every_flag(pivot_bin):
    r = run(pivot_bin, "--help")
    assert r.returncode == 0 and "generate" in r.stdout
    r = run(pivot_bin, "generate", "--help")
    assert r.returncode == 0
    for flag in ["--prompt", "--model", "--max-tokens", "--temperature", "--seed", "--threads",
                 "--chat", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                 "--presence-penalty", "--frequency-penalty"]:
        assert flag in r.stdout, flag


@pytest.mark.parametrize("args,needle", [
    (["generate"], "--prompt is required"),
    (["generate", "--prompt", "x", "--max-tokens", "abc"], "--max-tokens"),
    (["generate", "--prompt", "x", "--temperature", "-1"], "--temperature"),
    (["generate", "--prompt", "x", "--bogus"], "unknown option"),
    (["generate", "--prompt", "x", "--attn-split", "0"], "--attn-split expects off or a token count"),
    (["eval", "--task", "copy", "--attn-split", "on"], "--attn-split expects off or a token count"),
    (["serve", "--attn-split", "-5"], "--attn-split expects off or a token count"),
    (["generate", "--prompt"], "needs a value"),
    (["frobnicate"], "unknown command"),
    (["heads", "--bits", "5"], "--bits must be K/V or N of 2, 3, 4 or 8 bits"),
    (["heads", "--top", "13"], "--top expects an integer in [1, 12]"),
    (["heads", "--bits", "0"], "--bits must be K/V or N of 2, 3, 4 or 8 bits"),
    (["heads", "--bits", "8+0-29:0"], "--bits must be K/V or N of 2, 3, 4 or 8 bits"),
    (["heads", "--length", "4"], "--length"),
])
def test_usage_errors_are_one_line_exit_2(pivot_bin, args, needle):
    r = run(pivot_bin, *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""


def test_missing_and_corrupt_model_files(pivot_bin, tmp_path, smol_model):
    r = run(pivot_bin, "generate", "--model", str(tmp_path / "nope.gguf"), "--prompt", "x")
    assert r.returncode == 1 and "cannot load model" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 60)
    r = run(pivot_bin, "generate", "--model", str(bad), "--prompt", "x")
    assert r.returncode == 1 and "gguf" in r.stderr and "magic" in r.stderr.lower()
    # A real model cut in half: the tensor data runs past the end of the file.
    half = tmp_path / "half.gguf"
    with open(smol_model, "rb") as f:
        half.write_bytes(f.read(smol_model.stat().st_size // 2))
    r = run(pivot_bin, "generate", "--model", str(half), "--prompt", "x")
    assert r.returncode == 1 and "gguf" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_context_overflow_is_an_error(pivot_bin, smol_model):
    r = gen(pivot_bin, smol_model, "--prompt", "one two three four five six", "--ctx", "4")
    assert r.returncode == 1 and "context" in r.stderr


def test_attn_split_from_the_environment_is_checked_like_the_flag(pivot_bin, smol_model):
    """PIVOT_ATTN_SPLIT is the --attn-split option's variable (read by the
    command line, no longer by the library): a bad value is a usage error
    naming the variable; good ones run."""
    r = run(pivot_bin, "generate", "--prompt", "x", env=dict(os.environ, PIVOT_ATTN_SPLIT="sometimes"))
    assert r.returncode == 2 and "PIVOT_ATTN_SPLIT expects off or a token count" in r.stderr
    outs = []
    for v in ("off", "8"):
        r = run(pivot_bin, "generate", "--model", str(smol_model), "--prompt", "The capital of France is",
                "--max-tokens", "8", "--temperature", "0", "--threads", "2",
                env=dict(os.environ, PIVOT_ATTN_SPLIT=v))
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1], "split or not, greedy decoding gives the same tokens"


def test_heads_ranks_what_the_numpy_reference_measures(pivot_bin, smol_model):
    """`pivot heads` (exact float attention in cache/kv_probe.c) against the
    float32 numpy forward of tests/python/ref_llama.py on the same probe: the
    same induction score per KV head within 0.002, the same top five, and a
    --kv-layer-bits value that names them with the asked widths."""
    import json

    import numpy as np
    import ref_llama

    r = run(pivot_bin, "heads", "--model", str(smol_model), "--length", "96", "--samples", "1",
            "--seed", "7", "--top", "5", "--bits", "8/4", "--threads", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    toks = out["first_probe"]
    L = len(toks) // 2
    first = len(toks) - 2 * L
    assert len(toks) == 96 and toks[first:first + L] == toks[first + L:]
    ref = ref_llama.load(str(smol_model)).induction_scores(toks, first, L)[0]
    got = np.zeros_like(ref)
    for h in out["heads"]:
        got[h["layer"], h["head"]] = h["score"]
    assert np.abs(got - ref).max() < 2e-3, np.abs(got - ref).max()  # 1.6e-5 measured
    top_ref = sorted(((ref[l, h], l, h) for l in range(ref.shape[0]) for h in range(ref.shape[1])),
                     reverse=True)[:5]
    top_got = [(h["layer"], h["head"]) for h in out["heads"][:5]]
    assert set(top_got) == {(l, h) for _, l, h in top_ref}, (top_got, top_ref)
    assert out["layer_bits"] == "+".join(f"{l}.{h}:8/4" for l, h in top_got)
    assert out["heads"][0]["score"] > 0.2 > out["heads"][20]["score"]  # a few heads copy
    # the plain-text form ends with the same value for --kv-layer-bits (and
    # without --threads the probe takes one thread per CPU)
    r = run(pivot_bin, "heads", "--model", str(smol_model), "--length", "96", "--samples", "1",
            "--seed", "7", "--bits", "8/4")
    assert r.returncode == 0 and r.stdout.strip().endswith("--kv-layer-bits " + out["layer_bits"])
