"""--device and --synthetic on the command line: a missing GPU is one clear
line and exit status 1, never a crash; synthetic models need no file. The
CUDA-vs-CPU numbers are checked on a GPU by tests/gpu/run.sh."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import TIMEOUT_S


def run(pivot_bin, *args):
    return subprocess.run([str(pivot_bin), *args], capture_output=True, text=True, timeout=TIMEOUT_S)


def has_gpu(pivot_bin) -> bool:
    out = run(pivot_bin, "info", "--model", "/nonexistent").stdout
    return "cuda: 0 device" not in out


def test_synthetic_logits_on_cpu(pivot_bin, tmp_path):
    out = tmp_path / "l.bin"
    r = run(pivot_bin, "logits", "--synthetic", "tiny", "--seed", "3", "--tokens", "1,2,3,4,5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lg = np.fromfile(out, dtype=np.float32).reshape(5, 1000)
    assert np.isfinite(lg).all() and lg.std() > 0.01
    r2 = run(pivot_bin, "logits", "--synthetic", "tiny", "--seed", "3", "--tokens", "1,2,3,4,5",
             "--split", "2", "--out", str(tmp_path / "l2.bin"))
    assert r2.returncode == 0, r2.stderr
    np.testing.assert_allclose(np.fromfile(tmp_path / "l2.bin", dtype=np.float32).reshape(5, 1000), lg,
                               rtol=1e-3, atol=1e-3)


def test_bad_device_and_shape_are_usage_errors(pivot_bin, tmp_path):
    r = run(pivot_bin, "logits", "--synthetic", "tiny", "--tokens", "1", "--out", str(tmp_path / "x"),
            "--device", "gpu")
    assert r.returncode == 2 and "--device expects auto, cpu or cuda" in r.stderr
    r = run(pivot_bin, "logits", "--synthetic", "nosuch", "--tokens", "1", "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "unknown shape" in r.stderr


@pytest.mark.parametrize("cmd", ["generate", "logits", "eval"])
def test_device_cuda_without_gpu_is_one_line(pivot_bin, smol_model, tmp_path, cmd):
    if has_gpu(pivot_bin):
        pytest.skip("a GPU is present: the no-GPU error cannot be exercised here")
    args = {"generate": ["generate", "--prompt", "hi", "--max-tokens", "2"],
            "logits": ["logits", "--tokens", "1,2", "--out", str(tmp_path / "x")],
            "eval": ["eval", "--task", "copy", "--samples", "1", "--length", "32"]}[cmd]
    r = run(pivot_bin, *args, "--model", str(smol_model), "--device", "cuda")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pivot {cmd}: --device cuda: no usable CUDA device" in lines[0], r.stderr
    assert r.stdout == ""


def test_device_auto_runs_without_gpu(pivot_bin, smol_model):
    r = run(pivot_bin, "generate", "--prompt", "The capital of France is", "--max-tokens", "3",
            "--temperature", "0", "--model", str(smol_model), "--device", "auto")
    assert r.returncode == 0, r.stderr
