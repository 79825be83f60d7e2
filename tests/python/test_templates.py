"""`pivot template` against jinja2: chat templates of other families (the
kind GGUF files ship in tokenizer.chat_template) written into small test
GGUFs, rendered by Pivot's own Jinja interpreter, compared byte for byte
with jinja2 configured as Hugging Face's apply_chat_template configures it
(trim_blocks, lstrip_blocks, loopcontrols, tojson = json.dumps with
ensure_ascii=False, raise_exception, strftime_now).

The template texts below are those of the named model families (tools
included where the family renders them)."""
from __future__ import annotations

import copy
import json
import subprocess
from datetime import datetime

import pytest

import synth

jinja2 = pytest.importorskip("jinja2")
import jinja2.ext  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

MISTRAL_V3 = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

# SmolLM3-style: a namespace flag, string methods, date from strftime_now.
SMOL3ISH = r"""{%- set ns = namespace(system=none, think=true) -%}
{%- for m in messages if m.role == 'system' -%}
  {%- set ns.system = m.content | trim -%}
  {%- if m.content.endswith('/no_think') %}{% set ns.think = false %}{% endif -%}
{%- endfor -%}
<|im_start|>system
## Metadata

Knowledge Cutoff Date: June 2025
Today Date: {{ strftime_now("%d %B %Y") }}
Reasoning Mode: {{ "/think" if ns.think else "/no_think" }}
{% if ns.system is not none %}
## Custom Instructions

{{ ns.system.replace('/no_think', '').rstrip() }}
{% endif %}
<|im_end|>
{% for m in messages if m.role != 'system' -%}
<|im_start|>{{ m.role }}
{{ m.content.split('</think>')[-1].strip() }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if not ns.think %}<think>

</think>
{% endif %}{% endif %}"""

# Hermes-2-Pro-style tool use: a recursive macro turning JSON Schema types
# into Python type names, a dict literal over several lines, items filter.
HERMES = r"""{%- macro json_to_python_type(json_spec) %}
{%- set basic_type_map = {
    "string": "str",
    "number": "float",
    "integer": "int",
    "boolean": "bool"
} %}

{%- if basic_type_map[json_spec.type] is defined %}
    {{- basic_type_map[json_spec.type] }}
{%- elif json_spec.type == "array" %}
    {{- "list[" +  json_to_python_type(json_spec["items"]) + "]"}}
{%- elif json_spec.type == "object" %}
    {%- if json_spec.additionalProperties is defined %}
        {{- "dict[str, " + json_to_python_type(json_spec.additionalProperties) + ']'}}
    {%- else %}
        {{- "dict" }}
    {%- endif %}
{%- elif json_spec.type is iterable %}
    {{- "Union[" }}
    {%- for t in json_spec.type %}
      {{- json_to_python_type({"type": t}) }}
      {%- if not loop.last %}
        {{- "," }}
    {%- endif %}
    {%- endfor %}
    {{- "]" }}
{%- else %}
    {{- "Any" }}
{%- endif %}
{%- endmacro %}


{{- bos_token }}
{%- if tools %}
{{- '<|im_start|>system
' }}
{{- "You are a function calling AI model. Here are the available tools: <tools> " }}
{%- for tool in tools %}
    {%- if tool.function is defined %}
        {%- set tool = tool.function %}
    {%- endif %}
    {{- '{"type": "function", "function": ' }}
    {{- '{"name": "' + tool.name + '", ' }}
    {{- '"description": "' + tool.name + '(' }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {{- param_name + ": " + json_to_python_type(param_fields) }}
        {%- if not loop.last %}
            {{- ", " }}
        {%- endif %}
    {%- endfor %}
    {{- ")" }}
    {{- " - " + tool.description + "

" }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {%- if loop.first %}
            {{- "    Args:
" }}
        {%- endif %}
        {{- "        " + param_name + "(" + json_to_python_type(param_fields) + "): " + param_fields.description|trim }}
    {%- endfor %}
    {{- '", "parameters": ' }}
    {%- if tool.parameters.properties | length == 0 %}
        {{- "{}" }}
    {%- else %}
        {{- tool.parameters|tojson }}
    {%- endif %}
    {{- "}" }}
    {%- if not loop.last %}
        {{- "
" }}
    {%- endif %}
{%- endfor %}
{{- " </tools>" }}
{{- '<|im_end|>
' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or message.role == "system" or (message.role == "assistant" and message.tool_calls is not defined) %}
        {{- '<|im_start|>' + message.role + '
' + message.content + '<|im_end|>' + '
' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
    {%- for tool_call in message.tool_calls %}
       {{- '
<tool_call>
' }}           {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '{' }}
            {{- '"name": "' }}
            {{- tool_call.name }}
            {{- '"' }}
            {{- ', '}}
            {%- if tool_call.arguments is defined %}
                {{- '"arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments|tojson }}
                {%- endif %}
            {%- endif %}
             {{- '}' }}
            {{- '
</tool_call>' }}
    {%- endfor %}
        {{- '<|im_end|>
' }}
    {%- elif message.role == "tool" %}
        {%- if loop.previtem and loop.previtem.role != "tool" %}
            {{- '<|im_start|>tool
' }}
        {%- endif %}
        {{- '<tool_response>
' }}
        {{- message.content }}
        {%- if not loop.last %}
            {{- '
</tool_response>
' }}
        {%- else %}
            {{- '
</tool_response>' }}
        {%- endif %}
        {%- if not loop.last and loop.nextitem.role != "tool" %}
            {{- '<|im_end|>' }}
        {%- elif loop.last %}
            {{- '<|im_end|>' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant
' }}
{%- endif %}
"""

TEMPLATES = {"qwen2.5": QWEN25, "hermes": HERMES, "llama3.1": LLAMA31, "mistral-v3": MISTRAL_V3, "gemma": GEMMA,
             "phi3": PHI3, "smollm3-ish": SMOL3ISH}
BOS, EOS = "<|im_start|>", "<|im_end|>"  # the synthetic vocabulary's BOS/EOS texts

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

PLAIN = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse. "}, {"role": "user", "content": " Hi  "},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2? Ünïcode ✓"}],
    [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"},
     {"role": "user", "content": "d \"quoted\" {{ not a tag }}"}],
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


def hf_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
    return env


def reference(template: str, messages, tools, agp: bool) -> str:
    """What transformers' apply_chat_template renders: tool-call arguments
    given as JSON text are parsed into objects first."""
    msgs = copy.deepcopy(messages)
    for m in msgs:
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    kw = {"messages": msgs, "add_generation_prompt": agp, "bos_token": BOS, "eos_token": EOS}
    if tools is not None:
        kw["tools"] = tools
    return hf_env().from_string(template).render(**kw)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tmpl")
    out = {}
    for name, text in TEMPLATES.items():
        spec = synth.SynthSpec(n_layer=1, chat_template=text)
        out[name] = synth.write_model(d / f"{name}.gguf", spec)
    return out


def render(pivot_bin, tmp_path, model, messages, tools=None, agp=True):
    mf = tmp_path / "messages.json"
    mf.write_text(json.dumps(messages))
    cmd = [str(pivot_bin), "template", "--model", str(model), "--messages", str(mf),
           "--add-generation-prompt", "1" if agp else "0"]
    if tools is not None:
        tf = tmp_path / "tools.json"
        tf.write_text(json.dumps(tools))
        cmd += ["--tools", str(tf)]
    return subprocess.run(cmd, capture_output=True, timeout=60)


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("case", range(len(PLAIN)))
@pytest.mark.parametrize("agp", [True, False])
def test_plain_conversations_match_jinja2(pivot_bin, models, tmp_path, name, case, agp):
    msgs = PLAIN[case]
    if name == "gemma" and msgs[0]["role"] == "system":
        msgs = msgs[1:]  # gemma refuses system turns (tested below)
    want = reference(TEMPLATES[name], msgs, None, agp)
    r = render(pivot_bin, tmp_path, models[name], msgs, agp=agp)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == want


@pytest.mark.parametrize("name", TOOL_CAPABLE)
def test_tools_and_tool_turns_match_jinja2(pivot_bin, models, tmp_path, name):
    want = reference(TEMPLATES[name], TOOL_CONV, TOOLS, True)
    assert "get_weather" in want
    r = render(pivot_bin, tmp_path, models[name], TOOL_CONV, tools=TOOLS)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == want


def test_raise_exception_is_a_clear_error(pivot_bin, models, tmp_path):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(jinja2.exceptions.TemplateError):
        reference(GEMMA, msgs, None, True)
    r = render(pivot_bin, tmp_path, models["gemma"], msgs)
    assert r.returncode != 0
    assert "System role not supported" in r.stderr.decode()


def test_unsupported_construct_falls_back_with_a_warning(pivot_bin, tmp_path):
    src = ("{% for m in messages %}{% set sep = loop.cycle('', '') %}<|im_start|>{{ m.role }}\n"
           "{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    model = synth.write_model(tmp_path / "macro.gguf", synth.SynthSpec(n_layer=1, chat_template=src))
    msgs = PLAIN[0]
    r = render(pivot_bin, tmp_path, model, msgs)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "warning" in err and "cycle" in err and "line 1" in err
    # the built-in ChatML rendering, which here agrees with jinja2's
    assert r.stdout.decode() == reference(src, msgs, None, True)


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
    s = Server("--model", str(models["qwen2.5"]), "--max-batch", "2")
    try:
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
    finally:
        s.stop()


def test_server_warns_and_serves_with_the_builtin_fallback(tmp_path):
    """A template outside the subset: `pivot serve` says so on stderr, naming
    the construct, and chat requests are rendered by the built-in ChatML."""
    from server_util import Server
    src = ("{% for m in messages %}{% set sep = loop.cycle('', '') %}<|im_start|>{{ m.role }}\n"
           "{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    model = synth.write_model(tmp_path / "cycle.gguf", synth.SynthSpec(n_layer=1, chat_template=src))
    s = Server("--model", str(model), "--max-batch", "2")
    try:
        body = {"messages": PLAIN[0], "max_tokens": 1, "temperature": 0}
        st, _, data = s.request("POST", "/v1/chat/completions", body)
        assert st == 200, data
        log = s.log_text()
        assert "warning" in log and "'cycle'" in log and "built-in chatml" in log, log
    finally:
        s.stop()
