"""Function calling through the official openai SDK against `pivot serve`
with the default model (SmolLM2, whose template does not render tools, so
the generic tool format of docs/API.md is used): requests with tools and
every tool_choice, tool messages, the shape of tool_calls in responses and
streams, and a 400 naming `param` for every malformed tool input."""
from __future__ import annotations

import json

import pytest

from server_util import MODEL_NAME as NAME, reassemble_tool_stream, server_fixtures

openai = pytest.importorskip("openai")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
TOOLS = [WEATHER, ADD]
# A prompt the model answers with a call in the generic format (greedy).
ECHO = ('Reply with exactly this JSON and nothing else: '
        '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}')
PROMPTS = [ECHO, "What is the weather in Paris?", "Add 2 and 3.", "Say hello."]


srv, client = server_fixtures("--ctx", "1024", "--max-batch", "8")


def chat(client, prompt, **kw):
    kw.setdefault("max_tokens", 40)
    return client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": prompt}], tools=TOOLS, temperature=0,
        **kw)


def check_calls(msg, finish, allowed=("get_weather", "add")):
    """A response's tool calls are well formed (or there are none)."""
    if not msg.tool_calls:
        assert finish in ("stop", "length") and msg.content is not None
        return False
    assert finish == "tool_calls" and msg.content is None
    ids = set()
    for c in msg.tool_calls:
        assert c.type == "function" and c.id.startswith("call_") and len(c.id) > 10
        ids.add(c.id)
        assert c.function.name in allowed
        assert isinstance(json.loads(c.function.arguments), dict)
    assert len(ids) == len(msg.tool_calls)
    return True


def test_a_call_is_returned_as_tool_calls(client):
    r = chat(client, ECHO)
    ch = r.choices[0]
    assert check_calls(ch.message, ch.finish_reason)
    c = ch.message.tool_calls[0]
    assert c.function.name == "get_weather"
    assert json.loads(c.function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("choice", ["auto", "required", "none",
                                    {"type": "function", "function": {"name": "add"}}])
def test_tool_choice_variants(client, choice):
    for p in PROMPTS[:2]:
        r = chat(client, p, tool_choice=choice)
        ch = r.choices[0]
        allowed = ("add",) if isinstance(choice, dict) else ("get_weather", "add")
        got = check_calls(ch.message, ch.finish_reason, allowed)
        if choice == "none":
            assert not got  # tools are not offered: the JSON stays content
            assert ch.message.content


def test_parallel_tool_calls_false_accepted(client):
    r = chat(client, ECHO, parallel_tool_calls=False)
    ch = r.choices[0]
    if check_calls(ch.message, ch.finish_reason):
        assert len(ch.message.tool_calls) == 1


@pytest.mark.parametrize("prompt", PROMPTS)
def test_stream_reassembles_to_the_same_answer(client, prompt):
    r = chat(client, prompt)
    content, calls, finish = reassemble_tool_stream(chat(client, prompt, stream=True))
    ch = r.choices[0]
    assert finish == ch.finish_reason
    if ch.message.tool_calls:
        assert content == ""
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == \
            [(c.function.name, json.loads(c.function.arguments)) for c in ch.message.tool_calls]
        assert all(c["id"].startswith("call_") for c in calls)
    else:
        assert calls == [] and content == ch.message.content


def test_echo_prompt_streams_a_call(client):
    content, calls, finish = reassemble_tool_stream(chat(client, ECHO, stream=True))
    assert finish == "tool_calls" and len(calls) == 1 and calls[0]["name"] == "get_weather"


def test_tool_messages_are_accepted(client):
    msgs = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"},
    ]
    r = client.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, temperature=0,
                                       max_tokens=24)
    ch = r.choices[0]
    check_calls(ch.message, ch.finish_reason)
    assert r.usage.prompt_tokens > 100  # the tools and the earlier call are in the prompt


BAD = [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [WEATHER, {"type": "function", "function": {"name": "x", "parameters": "str"}}]},
     "tools[1].function.parameters"),
    ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]},
     "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x"},
                   {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
     "messages[1].tool_calls"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls"),
]


@pytest.mark.parametrize("extra,param", BAD)
def test_bad_tool_input_is_400_with_param(client, extra, param):
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    body.update(extra)
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(**body)
    err = ei.value.body
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error" and err["message"]


def test_bad_input_envelope_over_raw_http(srv):
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    st, _, data = srv.request("POST", "/v1/chat/completions", body)
    assert st == 400
    e = json.loads(data)["error"]
    assert e["param"] == "tool_choice" and "nope" in e["message"]
