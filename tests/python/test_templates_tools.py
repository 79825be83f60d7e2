"""Tools in chat templates, against jinja2 (template_util.py): templates
that render `tools` and tool turns themselves (Qwen2.5, Llama-3.1,
Mistral v3, Hermes) byte for byte; templates that do not (Phi-3) get
Pivot's generic tool format in the system turn; the server's prompt for a
request with tools is the template's own rendering."""
from __future__ import annotations

import json
import subprocess

import pytest

from chat_templates import QWEN25, TEMPLATES
from template_util import PLAIN, models, reference, render  # noqa: F401 (models: a fixture)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two integers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": ["number", "string"], "default": 1.5},
            "tags": {"type": "array", "items": {"type": "string"}, "description": " labels "},
            "meta": {"type": "object", "additionalProperties": {"type": "boolean"}}},
            "required": ["a", "b"]}}},
]

CALL_ID = "abcDEF123"  # 9 characters, as Mistral's template insists
TOOL_CONV = [
    {"role": "system", "content": "Use tools when useful."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": CALL_ID, "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": CALL_ID, "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "21.5 °C and clear."},
    {"role": "user", "content": "And 2+3?"},
]
TOOL_CAPABLE = ["qwen2.5", "llama3.1", "mistral-v3", "hermes"]


@pytest.mark.parametrize("name", TOOL_CAPABLE)
def test_tools_and_tool_turns_match_jinja2(pivot_bin, models, tmp_path, name):
    want = reference(TEMPLATES[name], TOOL_CONV, TOOLS, True)
    assert "get_weather" in want
    r = render(pivot_bin, tmp_path, models[name], TOOL_CONV, tools=TOOLS)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == want


def test_generic_tool_format_for_templates_without_tools(pivot_bin, models, tmp_path):
    r = render(pivot_bin, tmp_path, models["phi3"], TOOL_CONV, tools=TOOLS)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.startswith("<|system|>\nUse tools when useful.\n\nYou can call the following tools:\n")
    assert json.dumps(TOOLS[0]["function"], separators=(",", ":"), ensure_ascii=False) in out
    assert '{"tool_call": {"name": "<tool name>", "arguments": {<the arguments>}}}' in out
    assert '<|assistant|>\n{"tool_call":{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}}<|end|>' in out
    assert ('<|user|>\n{"tool_response":{"tool_call_id":"abcDEF123","name":"get_weather",'
            '"content":"{\\"temp\\": 21.5, \\"sky\\": \\"clear\\"}"}}<|end|>') in out


def test_bad_tools_file_is_a_usage_error(pivot_bin, models, tmp_path):
    r = render(pivot_bin, tmp_path, models["qwen2.5"], PLAIN[0], tools=[{"type": "function"}])
    assert r.returncode == 2
    assert "tools[0].function" in r.stderr.decode()


def test_server_renders_tools_through_the_template(pivot_bin, models, tmp_path):
    """The server's prompt for a request with tools is the template's own
    rendering (the Qwen2.5 template reads `tools`), the same text
    `pivot template` prints: its token count is the request's prompt_tokens."""
    from server_util import Server
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    conv = [{"role": "user", "content": "Hi"}]  # small: the synthetic model has 512 positions
    want = reference(QWEN25, conv, tools, True)
    with Server("--model", str(models["qwen2.5"]), "--max-batch", "2") as s:
        r = subprocess.run([str(pivot_bin), "tokenize", "--model", str(models["qwen2.5"]),
                            "--special", "--prompt", want], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        n_want = len(r.stdout.decode().strip().split(","))
        body = {"messages": conv, "tools": tools, "max_tokens": 1, "temperature": 0}
        st, _, data = s.request("POST", "/v1/chat/completions", body)
        assert st == 200, data
        assert json.loads(data)["usage"]["prompt_tokens"] == n_want
        body["tool_choice"] = "none"  # tools not offered: the template renders without them
        st, _, data = s.request("POST", "/v1/chat/completions", body)
        assert st == 200, data
        assert json.loads(data)["usage"]["prompt_tokens"] < n_want
