"""`pivot serve`: /v1/completions with echo + logprobs scores the prompt too
(OpenAI's legacy API and vLLM): the prompt's tokens lead the logprobs, the
first with a null logprob. Checked against `pivot logits` on the same ids."""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from server_util import Server, pivot_path, REPO

openai = pytest.importorskip("openai")
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct.Q4_1"
PROMPT = "The quick brown fox jumps over the lazy dog. Then it ran into the forest and"


@pytest.fixture(scope="module")
def srv():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    # a small prefill chunk spreads the prompt over several steps, so the
    # prompt logprobs of more than one LLM_LOGITS_ALL chunk are joined
    s = Server("--model", str(MODEL), "--ctx", "256", "--prefill-chunk", "8")
    yield s
    s.stop()


def test_echo_logprobs_cover_the_prompt(srv, tmp_path):
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="x", max_retries=0, timeout=120)
    r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=3, echo=True, logprobs=2,
                                  temperature=0)
    ch = r.choices[0]
    n_prompt = r.usage.prompt_tokens
    assert n_prompt > 16 and r.usage.completion_tokens == 3
    assert ch.text.startswith(PROMPT)
    lp = ch.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n_prompt + 3
    assert len(lp.text_offset) == n_prompt + 3 and lp.text_offset[0] == 0
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for v, t in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert math.isfinite(v) and v <= 0 and len(t) == 2, t  # logprobs=2: two, not fewer

    st, _, b = srv.request("POST", "/tokenize", {"prompt": PROMPT})
    ids = json.loads(b)["tokens"]
    assert st == 200 and len(ids) == n_prompt
    out = tmp_path / "logits.f32"
    g = subprocess.run([str(pivot_path()), "logits", "--model", str(MODEL), "--threads", "2",
                        "--tokens", ",".join(map(str, ids)), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert g.returncode == 0, g.stderr
    rows = np.fromfile(out, dtype=np.float32).reshape(n_prompt, -1).astype(np.float64)
    for i in range(1, n_prompt):
        row = rows[i - 1]
        mx = row.max()
        want = row[ids[i]] - (mx + math.log(np.exp(row - mx).sum()))
        assert abs(lp.token_logprobs[i] - want) < 1e-3, (i, lp.token_logprobs[i], want)

    # without echo only the generated tokens are scored
    r2 = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=3, logprobs=2,
                                   temperature=0)
    assert len(r2.choices[0].logprobs.tokens) == 3
    assert r2.choices[0].logprobs.token_logprobs == pytest.approx(lp.token_logprobs[n_prompt:], abs=1e-3)
