"""What a client or a GGUF can make the prompt renderer do (review findings):
a chat template that builds a self-containing list, loops without end or grows
a string without bound is a 400 naming the limit, and the server still
answers; thousands of tool results whose ids match no call render in linear
time (they were rescanned against every earlier call). Against the real
`pivot serve` on synthetic GGUFs with those templates."""
from __future__ import annotations

import json
import time

import pytest

import synth
from server_util import Server

CHATML_TAIL = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BAD = {
    "self": ("{% set x = [] %}{% set _ = x.append(x) %}{{ x }}" + CHATML_TAIL, "nested deeper"),
    # 60 empty ifs per iteration: work that allocates little, so the step
    # bound (not the memory one) ends it
    "loop": ("{% set r = range(1000) %}{% for i in r %}{% for j in r %}" + "{% if 0 %}{% endif %}" * 60
             + "{% endfor %}{% endfor %}" + CHATML_TAIL, "steps"),
    "memory": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
               + CHATML_TAIL, "MiB of values"),
    "grow": ("{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}"
             "{% set ns.s = ns.s ~ ns.s %}{% endfor %}" + CHATML_TAIL, "longer than"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_runaway_template_is_a_400_and_the_server_lives(tmp_path, kind):
    src, why = BAD[kind]
    model = synth.write_model(tmp_path / f"{kind}.gguf", synth.SynthSpec(n_layer=1, chat_template=src))
    s = Server("--model", str(model), "--max-batch", "2")
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        st, _, data = s.request("POST", "/v1/chat/completions", body, timeout=60)
        assert st == 400, data
        err = json.loads(data)["error"]
        assert err["param"] == "messages" and why in err["message"], err
        assert s.get("/health")[0] == 200
        # the plain completions path never renders the template
        st, _, data = s.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert st == 200, data
    finally:
        s.stop()


def test_many_unanswered_tool_results_render_in_linear_time():
    n = 10000  # 2 MB of messages; the old per-message rescan took ~40 s here
    msgs = [{"role": "user", "content": "go"}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": f"f{i % 7}", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": "unknown", "content": "ok"})
    s = Server()
    try:
        t0 = time.time()
        st, _, data = s.request("POST", "/tokenize", {"messages": msgs}, timeout=120)
        took = time.time() - t0
        assert st == 200, data[:300]
        assert json.loads(data)["count"] > 10 * n
        # not a benchmark: a bound two orders of magnitude above the linear
        # renderer, well below the quadratic one's ~40 s on this machine
        assert took < 20, took
        assert s.get("/health")[0] == 200
    finally:
        s.stop()
