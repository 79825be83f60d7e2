"""What the chat template tests share (test_templates.py: the families'
plain conversations and the fallback; test_templates_tools.py: tools and
the generic tool format): jinja2 configured as Hugging Face's
apply_chat_template configures it (trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps with ensure_ascii=False,
raise_exception, strftime_now), the test GGUFs carrying the templates of
chat_templates.py, and `pivot template` run on them."""
from __future__ import annotations

import copy
import json
import subprocess
from datetime import datetime

import pytest

import synth
from chat_templates import BOS, EOS, TEMPLATES

jinja2 = pytest.importorskip("jinja2")
import jinja2.ext  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

PLAIN = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse. "}, {"role": "user", "content": " Hi  "},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2? Ünïcode ✓"}],
    [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"},
     {"role": "user", "content": "d \"quoted\" {{ not a tag }}"}],
]


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
    """One synthetic GGUF per template of chat_templates.TEMPLATES (import
    this fixture into the test module)."""
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
