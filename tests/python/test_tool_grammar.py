"""Forced tool calls end to end: with tool_choice "required" or a named
function, `pivot serve` constrains decoding with a grammar of the call
(docs/API.md, "Tools"), so even the default model (SmolLM2-135M) always
returns a call whose arguments validate against the tool's parameters.

- ~10 varied prompts x required / named choice, with tools whose parameters
  use a nested object, enums, an array of integers and a $ref into $defs;
  every answer has tool_calls, finish_reason "tool_calls", and arguments
  that validate with the `jsonschema` package;
- parallel_tool_calls false: exactly one call;
- streamed answers reassemble to the same calls as the non-streamed ones
  (greedy decoding);
- response_format together with a forcing tool_choice: the call wins;
- a tool whose parameters the compiler rejects, or that are not an object
  schema, is a 400 naming tools[i].function.parameters, for any tool_choice.
Driven through the official openai SDK; requests go concurrently so the
server batches them."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from server_util import MODEL_NAME as NAME, reassemble_tool_stream, server_fixtures

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")


def tool(name, desc, params):
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}


BOOK = tool("book_flight", "Book a flight", {
    "type": "object",
    "properties": {
        "route": {"type": "object",
                  "properties": {"from": {"type": "string", "maxLength": 40},
                                 "to": {"type": "string"}},
                  "required": ["from", "to"]},
        "cabin": {"type": "string", "enum": ["economy", "business", "first"]},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
    },
    "required": ["route", "cabin", "passengers"]})
STATS = tool("stats", "Summary statistics of a list of integers", {
    "type": "object",
    "properties": {"values": {"type": "array", "items": {"type": "integer"}, "minItems": 1,
                              "maxItems": 8},
                   "measure": {"enum": ["mean", "median", "max"]}},
    "required": ["values", "measure"]})
# $ref into $defs: the server must resolve it inside the call wrapper
CONTACT = tool("add_contact", "Save a contact", {
    "type": "object",
    "$defs": {"phone": {"type": "object",
                        "properties": {"kind": {"enum": ["home", "work", "mobile"]},
                                       "number": {"type": "string"}},
                        "required": ["kind", "number"]}},
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                   "phones": {"type": "array", "items": {"$ref": "#/$defs/phone"}, "maxItems": 3}},
    "required": ["name", "phones"]})
TOOLS = [BOOK, STATS, CONTACT]
# What GRAM_LOOSE accepts but does not enforce (grammar/gram.h): the calls
# are validated against the parameters without these keywords, which is
# what the grammar guarantees (OpenAI does not enforce them outside strict
# mode either).
UNENFORCED = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
              "minLength", "maxLength", "pattern", "uniqueItems", "minProperties",
              "maxProperties"}


def enforced(schema):
    if isinstance(schema, dict):
        return {k: enforced(v) if k not in ("enum", "const") else v
                for k, v in schema.items() if k not in UNENFORCED}
    if isinstance(schema, list):
        return [enforced(v) for v in schema]
    return schema


PARAMS = {t["function"]["name"]: enforced(t["function"]["parameters"]) for t in TOOLS}

PROMPTS = [
    "Book me a business flight from Paris to Tokyo for two people.",
    "What is the median of 3, 9, 4 and 12?",
    "Save Ana's mobile number, 555-0101.",
    "Say hello.",
    "Write a haiku about the sea.",
    "I need three economy seats from Berlin to Rome.",
    "Find the max of 1, 2, 3.",
    "Add my colleague Bob, work phone 020 7946 0000, he is 41.",
    "What's 2+2?",
    "Translate 'good morning' into French.",
]
NAMED = [{"type": "function", "function": {"name": n}} for n in PARAMS]


srv, client = server_fixtures("--ctx", "2048", "--max-batch", "16", timeout=300)


def chat(client, prompt, **kw):
    kw.setdefault("max_tokens", 300)
    kw.setdefault("tools", TOOLS)
    # One call per answer: with parallel calls the model decides when the
    # array ends, and a greedy 135M model tends to repeat calls until the
    # budget closes the array (test_parallel_calls covers that case).
    kw.setdefault("parallel_tool_calls", False)
    # Breaks the loops a greedy small model falls into inside a string
    # ("Paris_to_Tokyo_to_Tokyo_..."), which the grammar cannot forbid.
    kw.setdefault("extra_body", {"repetition_penalty": 1.2})
    return client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": prompt}], temperature=0, **kw)


def check_forced(r, allowed):
    """The answer is one or more calls of allowed tools whose arguments
    validate against the tool's parameters; returns [(name, args)]."""
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", (ch.finish_reason, ch.message.content)
    assert ch.message.content is None and ch.message.tool_calls
    out = []
    for c in ch.message.tool_calls:
        assert c.type == "function" and c.id.startswith("call_")
        assert c.function.name in allowed
        args = json.loads(c.function.arguments)
        jsonschema.validate(args, PARAMS[c.function.name])
        out.append((c.function.name, args))
    return out


def run_all(fn, items):
    with ThreadPoolExecutor(8) as ex:
        return list(ex.map(fn, items))


def test_required_always_returns_one_valid_call(client):
    rs = run_all(lambda p: chat(client, p, tool_choice="required"), PROMPTS)
    for p, r in zip(PROMPTS, rs):
        assert len(check_forced(r, PARAMS)) == 1, p


@pytest.mark.parametrize("choice", NAMED, ids=lambda c: c["function"]["name"])
def test_named_choice_always_calls_that_tool(client, choice):
    name = choice["function"]["name"]
    prompts = PROMPTS[NAMED.index(choice)::2][:5]  # 5 prompts, varied per tool
    rs = run_all(lambda p: chat(client, p, tool_choice=choice), prompts)
    for p, r in zip(prompts, rs):
        assert [n for n, _ in check_forced(r, (name,))] == [name], p


def test_parallel_calls(client):
    """Parallel calls allowed: one call or an array of calls, each valid. A
    small model may repeat calls; the mask closes the array in time for
    max_tokens (docs/API.md), so every answer is whole calls."""
    rs = run_all(lambda p: chat(client, p, tool_choice="required", parallel_tool_calls=True,
                                max_tokens=200), PROMPTS[:4])
    for r in rs:
        assert len(check_forced(r, PARAMS)) >= 1
        assert r.usage.completion_tokens <= 200


@pytest.mark.parametrize("choice", ["required", NAMED[1]], ids=["required", "named"])
def test_stream_reassembles_to_the_same_call(client, choice):
    prompts = PROMPTS[:3]
    plain = run_all(lambda p: chat(client, p, tool_choice=choice), prompts)
    streamed = run_all(
        lambda p: reassemble_tool_stream(chat(client, p, tool_choice=choice, stream=True)), prompts)
    for r, (content, calls, finish) in zip(plain, streamed):
        want = check_forced(r, PARAMS)
        assert finish == "tool_calls" and content == ""
        assert all(c["id"] and c["id"].startswith("call_") for c in calls)
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == want


def test_forced_call_wins_over_response_format(client):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    r = chat(client, PROMPTS[0], tool_choice=NAMED[0], response_format=rf)
    assert check_forced(r, ("book_flight",))
    # the format is still checked: a bad one is a 400 even when the call wins
    bad = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "nope"}}}
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, PROMPTS[0], tool_choice="required", response_format=bad)
    assert ei.value.body["param"].startswith("response_format")


BAD_PARAMS = [
    {"type": "string"},                                              # not an object schema
    {"properties": {"a": {"type": "string"}}},                        # no type: object
    {"type": "object", "properties": {"a": {"type": "strnig"}}},      # unknown type
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}},  # dangling $ref
    {"type": "object", "properties": {"a": {"not": {"type": "null"}}}},  # outside the subset
    {"type": "object", "required": "a"},                             # required not an array
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
@pytest.mark.parametrize("choice", ["auto", "required", None])
def test_invalid_parameter_schema_is_400(client, params, choice):
    kw = {"tool_choice": choice} if choice else {}
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, "hi", tools=[BOOK, tool("bad", "x", params)], max_tokens=4, **kw)
    err = ei.value.body
    assert err["param"] == "tools[1].function.parameters", err
    assert err["type"] == "invalid_request_error" and "'bad'" in err["message"]
    assert err["code"] == "invalid_function_parameters"


def test_narrowing_keywords_and_empty_parameters_are_accepted(client):
    """minimum / maxLength / pattern pass unenforced (GRAM_LOOSE); {} is any object."""
    loose = tool("loose", "x", {"type": "object", "properties": {
        "s": {"type": "string", "pattern": "^[a-z]+$", "minLength": 1},
        "n": {"type": "number", "exclusiveMinimum": 0}}, "required": ["s"]})
    empty = tool("empty", "no arguments", {})
    r = chat(client, "Call loose.", tools=[loose, empty],
             tool_choice={"type": "function", "function": {"name": "loose"}}, max_tokens=200)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert "s" in json.loads(ch.message.tool_calls[0].function.arguments)
    r = chat(client, "Call empty.", tools=[loose, empty],
             tool_choice={"type": "function", "function": {"name": "empty"}}, max_tokens=200)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert isinstance(json.loads(ch.message.tool_calls[0].function.arguments), dict)


def test_required_over_many_tools_calls_one_of_them(client):
    """Past 8 tools the call's name is held to the tools' names and its
    arguments to any object (docs/API.md): still always a call."""
    many = TOOLS + [tool(f"noop_{i}", f"Does nothing #{i}", {}) for i in range(7)]
    names = {t["function"]["name"] for t in many}
    rs = run_all(lambda p: chat(client, p, tools=many, tool_choice="required"), PROMPTS[:4])
    for r in rs:
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls", ch.message.content
        for c in ch.message.tool_calls:
            assert c.function.name in names
            assert isinstance(json.loads(c.function.arguments), dict)
