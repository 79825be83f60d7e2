"""Shared fixtures for the reference tests: where the engine binary and the
default model are, and how to call the engine's developer subcommands.

The engine contract used here:
  pivot logits --model PATH --tokens 1,2,3 --out FILE [--threads N] [--split K]
      writes float32 little-endian logits, shape [n_tokens][n_vocab]
  pivot tokenize --model PATH --prompt TEXT
      prints the token ids comma-separated on one line
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

SMOL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TIMEOUT_S = 60

# Figures collected by the tests and printed once at the end, so they show
# in the summary whether or not pytest runs with -s.
_REPORT: list[str] = []


def report(line: str) -> None:
    print(line)
    _REPORT.append(line)


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("reference comparison figures")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _server_log_dir(tmp_path_factory):
    """`pivot serve` logs (server_util.Server) go under the pytest tmp dir."""
    import server_util
    server_util.LOG_DIR = tmp_path_factory.mktemp("serve-logs")
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the log tail of every server alive during it."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    import server_util
    for s in server_util.STARTED:
        if s.stopped_at is not None and s.stopped_at < call.start:
            continue
        text = s.log_text()
        rep.sections.append((f"pivot serve log {s.log_path} ({' '.join(s.cmd[1:])})",
                             text[-8000:] or "(empty)"))


def _pivot_path() -> Path:
    env = os.environ.get("PIVOT_BIN")
    return Path(env) if env else REPO / "build" / "cli" / "pivot"


@pytest.fixture(scope="session")
def pivot_bin() -> Path:
    p = _pivot_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.skip(f"engine binary not found at {p} (set PIVOT_BIN)")
    return p


@pytest.fixture(scope="session")
def smol_model() -> Path:
    if not SMOL.is_file():
        pytest.skip(f"model not found at {SMOL}")
    return SMOL


def _threads() -> str:
    return os.environ.get("PIVOT_THREADS", "2")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {r.returncode}\nstderr:\n{r.stderr[-4000:]}")
    return r


@pytest.fixture(scope="session")
def engine_logits(pivot_bin, tmp_path_factory):
    """engine_logits(model, tokens, split=None) -> (n_tokens, n_vocab) float32."""
    outdir = tmp_path_factory.mktemp("logits")
    counter = [0]

    def run(model, tokens, split: int | None = None) -> np.ndarray:
        counter[0] += 1
        out = outdir / f"logits{counter[0]}.bin"
        cmd = [str(pivot_bin), "logits", "--model", str(model),
               "--tokens", ",".join(str(int(t)) for t in tokens),
               "--out", str(out), "--threads", _threads()]
        if split is not None:
            cmd += ["--split", str(split)]
        _run(cmd)
        if not out.is_file():
            pytest.fail(f"{' '.join(cmd[:2])} exited 0 but wrote no {out}")
        raw = np.fromfile(out, dtype="<f4")
        n = len(tokens)
        assert raw.size > 0 and raw.size % n == 0, \
            f"logits file has {raw.size} floats, not a multiple of {n} tokens"
        return raw.reshape(n, raw.size // n)

    return run


@pytest.fixture(scope="session")
def engine_tokenize(pivot_bin):
    def run(model, text: str) -> list[int]:
        r = _run([str(pivot_bin), "tokenize", "--model", str(model), "--prompt", text])
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        ids = [int(x) for x in line.replace(",", " ").split()]
        assert ids, f"no token ids in output: {r.stdout!r}"
        return ids

    return run
