"""`pivot template` against jinja2 for the chat templates of other families
(chat_templates.py) written into small test GGUFs: Pivot's own Jinja
interpreter must render them byte for byte as jinja2 does (configured as
Hugging Face's apply_chat_template, template_util.py); a template outside
the subset is a warning naming the construct and the built-in fallback.
Tools and the generic tool format: test_templates_tools.py."""
from __future__ import annotations

import pytest

import synth
from chat_templates import GEMMA, TEMPLATES
from template_util import PLAIN, jinja2, models, reference, render  # noqa: F401 (models: a fixture)

# A template outside the subset (loop.cycle): Pivot falls back to ChatML.
CYCLE = ("{% for m in messages %}{% set sep = loop.cycle('', '') %}<|im_start|>{{ m.role }}\n"
         "{{ m.content }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


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


def test_raise_exception_is_a_clear_error(pivot_bin, models, tmp_path):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(jinja2.exceptions.TemplateError):
        reference(GEMMA, msgs, None, True)
    r = render(pivot_bin, tmp_path, models["gemma"], msgs)
    assert r.returncode != 0
    assert "System role not supported" in r.stderr.decode()


def test_unsupported_construct_falls_back_with_a_warning(pivot_bin, tmp_path):
    model = synth.write_model(tmp_path / "macro.gguf", synth.SynthSpec(n_layer=1, chat_template=CYCLE))
    msgs = PLAIN[0]
    r = render(pivot_bin, tmp_path, model, msgs)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "warning" in err and "cycle" in err and "line 1" in err
    # the built-in ChatML rendering, which here agrees with jinja2's
    assert r.stdout.decode() == reference(CYCLE, msgs, None, True)


def test_server_warns_and_serves_with_the_builtin_fallback(tmp_path):
    """A template outside the subset: `pivot serve` says so on stderr, naming
    the construct, and chat requests are rendered by the built-in ChatML."""
    from server_util import Server
    model = synth.write_model(tmp_path / "cycle.gguf", synth.SynthSpec(n_layer=1, chat_template=CYCLE))
    with Server("--model", str(model), "--max-batch", "2") as s:
        body = {"messages": PLAIN[0], "max_tokens": 1, "temperature": 0}
        st, _, data = s.request("POST", "/v1/chat/completions", body)
        assert st == 200, data
        log = s.log_text()
        assert "warning" in log and "'cycle'" in log and "built-in chatml" in log, log
