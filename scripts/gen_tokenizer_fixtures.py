#!/usr/bin/env python3
"""Generate the tokenizer and chat-template fixtures under tests/fixtures/tokenizer/.

Run from the repo root with the dev venv:
    .venv/bin/python scripts/gen_tokenizer_fixtures.py

References (never our own C code):
  * byte-level BPE ids: llama.cpp through llama-cpp-python, loading the SmolLM2
    GGUF with vocab_only=True.  For the "llama-bpe" and "qwen2" pre-tokenizers a
    temporary copy of the GGUF metadata (no tensors) with tokenizer.ggml.pre
    changed is tokenized the same way.
  * SentencePiece ids: the `sentencepiece` package itself, on a tiny BPE model
    trained here (byte_fallback on); the vocabulary is written into a small
    synthetic GGUF (spm-tiny.gguf) that the C tests load.  llama.cpp's ids on
    that GGUF are recorded too, as a cross-check of the two references.
  * pre-tokenizer splits: the original regexes run by the `regex` package
    (SmolLM: digits split off first, then the GPT-2 regex on the rest), so the
    scanners are checked even where SmolLM2's vocabulary hides a difference
    (it has no multi-digit tokens, so Llama-3 and Qwen2 give the same ids).
  * chat templates: jinja2 rendering of the real SmolLM2 template text and of
    two hand-written minimal templates (Llama-3, Mistral [INST]).

Outputs: bpe.json, spm.json, spm-tiny.gguf, chat.json.
"""
import json
import os
import sys
import tempfile

import gguf
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

# Each string exercises one thing the pre-tokenizer or BPE can get wrong.
STRINGS = [
    "Hello world",
    "Hello, world!",
    "",
    " ",
    "  ",
    "a",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "double  space between",
    "tab\there",
    "tabs\t\t\tand spaces \t mixed",
    "line1\nline2",
    "para1\n\npara2",
    "crlf\r\nline",
    "\n\n\n",
    " \n \n ",
    "ends with newline\n",
    "spaces before newline   \nx",
    "12345",
    "3.14159265358979",
    "1234567890123456789",
    "I have 1,000,000 dollars and 42 cents.",
    "version 2.0.1-rc3",
    " 7 8 9",
    "Punctuation!!! ??? ... ;;; :-)",
    "quotes \"double\" and 'single' and `back`",
    "brackets (a) [b] {c} <d>",
    "email: someone@example.com, url: https://example.org/path?q=1&r=2",
    "I'm, you're, he's, we'll, they've, I'd, don't",
    "I'M YOU'RE HE'S WE'LL THEY'VE I'D DON'T",
    "It's 'quoted' and 'S alone",
    "rock 'n' roll",
    "Emoji: 😀😃😄 🤗",
    "Family: 👨‍👩‍👧‍👦 and flag 🇫🇷 and thumbs 👍🏽",
    "日本語のテキストです。",
    "中文字符和English混合",
    "한국어 텍스트",
    "café résumé naïve",
    "cafe\u0301 re\u0301sume\u0301 (decomposed)",
    "Ünïcödé ÀÉÎÕÜ ß ẞ",
    "Ελληνικά και русский текст",
    "مرحبا بالعالم",
    "שלום עולם",
    "हिन्दी पाठ",
    "ไทย ภาษา",
    "def foo(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "    indented code with 4 spaces",
    "<|im_start|>user\nhello<|im_end|>",
    "literal <|im_start|> in text",
    "<|endoftext|>",
    "math: x² + y³ = z½ ½ ⅓ ① ⑫ Ⅻ",
    "fullwidth １２３ ＡＢＣ",
    "Arabic-Indic digits ٠١٢٣٤٥ and Devanagari ०१२",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "em\u2003space and thin\u2009space",
    "zero\u200bwidth",
    "MiXeD CaSe WoRdS",
    "snake_case_identifier and camelCaseIdentifier",
    "$100 + €50 = ¥?",
    "a\tb\nc\rd\fe\vf",
    "-----=====+++++",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "x" * 40,
    "hello 123abc456 def",
    # Strings where the GPT-2, Llama-3 and Qwen2 regexes part ways.
    "\n\n  \n x",
    "hello!!!\n\nworld",
    " \t\tword",
    "'Twas the night; 'TIS true, 'Ll see",
    "abc\r\n\r\n def",
    "$1234567 and 99999 items",
    "x=1;\n\ty=22;\n",
    "end.  \n",
    "__init__(self)",
    "...and then",
    "a  \t b",
]

SPM_TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog.
A tokenizer splits text into pieces; pieces become ids.
SentencePiece treats the input as a raw stream and encodes spaces as a meta symbol.
Byte fallback turns unknown characters into byte tokens.
Hello world, hello tokenizer, hello again.
Numbers like 12345 and 678 appear in text, and so do dates: 2024-06-01.
Small models learn merges from frequent pairs of symbols.
the the the and and and of of of to to to in in in is is is
""" * 4

SPM_STRINGS = [
    "Hello world",
    "hello tokenizer",
    "The quick brown fox",
    "",
    " ",
    "a",
    "  two leading spaces",
    "trailing ",
    "double  space",
    "new\nline",
    "12345 678",
    "unknown chars: é ß 日本 😀",
    "Zebra quizzes vexed jumpy fowl",
    "<s> and </s> are control tokens",
    "pieces become ids",
    "tab\tseparated",
]


def copy_vocab_gguf(src, dst, pre):
    """Write dst with all of src's metadata (no tensors), tokenizer.ggml.pre = pre."""
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val = f.contents()
        if name == "tokenizer.ggml.pre":
            val = pre
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, val, vtype, sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_ids(path, texts):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]


GPT2_PAT = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
            r"""|\s+(?!\S)|\s+""")
LLAMA3_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
              r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PAT = LLAMA3_PAT.replace(r"\p{N}{1,3}", r"\p{N}")


def regex_splits(text, pre):
    import regex

    if pre == "smollm":
        out = []
        for chunk in regex.split(r"(\p{N})", text):
            if chunk:
                out += regex.findall(GPT2_PAT, chunk)
        return out
    pat = {"gpt-2": GPT2_PAT, "llama-bpe": LLAMA3_PAT, "qwen2": QWEN2_PAT}[pre]
    pieces = regex.findall(pat, text)
    assert "".join(pieces) == text, (pre, text)
    return pieces


def gen_bpe():
    import llama_cpp
    import regex

    cases = {"smollm": llama_cpp_ids(MODEL, STRINGS)}
    with tempfile.TemporaryDirectory() as td:
        for pre in ("llama-bpe", "qwen2", "gpt-2"):
            p = os.path.join(td, pre + ".gguf")
            copy_vocab_gguf(MODEL, p, pre)
            cases[pre] = llama_cpp_ids(p, STRINGS)
    # Parsing of special tokens, also from llama.cpp (special=True).
    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    special = ["<|im_start|>user\nhello<|im_end|>", "literal <|im_start|> in text",
               "<|endoftext|><|im_end|>x<|im_start|>"]
    special_ids = [llm.tokenize(s.encode(), add_bos=False, special=True) for s in special]
    out = {
        "reference": "llama.cpp via llama-cpp-python %s, Llama(vocab_only=True).tokenize("
                     "text, add_bos=False, special=False)" % llama_cpp.__version__,
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "strings": STRINGS,
        "ids": cases,
        "special": {"strings": special, "ids": special_ids},
        "splits_reference": "regex %s findall with the original patterns" % regex.__version__,
        "splits": {pre: [regex_splits(t, pre) for t in STRINGS]
                   for pre in ("smollm", "llama-bpe", "qwen2", "gpt-2")},
    }
    with open(os.path.join(OUT, "bpe.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)


def gen_spm():
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as td:
        txt = os.path.join(td, "train.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write(SPM_TRAIN_TEXT)
        prefix = os.path.join(td, "tiny")
        # identity normalization and no whitespace squeezing: what a GGUF
        # "llama" tokenizer does (it has no normalizer).
        spm.SentencePieceTrainer.train(
            input=txt, model_prefix=prefix, model_type="bpe", vocab_size=400,
            byte_fallback=True, character_coverage=1.0,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, split_digits=False, bos_id=1, eos_id=2, unk_id=0,
            num_threads=1, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        n = sp.get_piece_size()
        tokens, scores, types = [], [], []
        for i in range(n):
            tokens.append(sp.id_to_piece(i))
            scores.append(sp.get_score(i))
            if sp.is_unknown(i):
                t = 2
            elif sp.is_control(i):
                t = 3
            elif sp.is_byte(i):
                t = 6
            elif sp.is_unused(i):
                t = 5
            else:
                t = 1
            types.append(t)
        gpath = os.path.join(OUT, "spm-tiny.gguf")
        w = gguf.GGUFWriter(gpath, "llama")
        # Minimal hparams so llama.cpp can open the file vocab_only.
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_block_count(1)
        w.add_feed_forward_length(8)
        w.add_head_count(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_add_space_prefix(True)
        w.add_add_bos_token(True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        ids = [sp.encode(s) for s in SPM_STRINGS]
        pieces = [sp.encode(s, out_type=str) for s in SPM_STRINGS]
    try:
        lc = llama_cpp_ids(gpath, SPM_STRINGS)
    except Exception as e:  # cross-check only
        print("llama.cpp could not load spm-tiny.gguf:", e, file=sys.stderr)
        lc = None
    out = {
        "reference": "sentencepiece %s encode() on the model trained by this script"
                     % spm.__version__,
        "strings": SPM_STRINGS,
        "ids": ids,
        "pieces": pieces,
        "llama_cpp_ids": lc,
    }
    if lc is not None:
        agree = sum(1 for a, b in zip(ids, lc) if a == b)
        print("spm: llama.cpp agrees with sentencepiece on %d/%d" % (agree, len(ids)))
    with open(os.path.join(OUT, "spm.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}")

# Mistral v0.1-style: system prompt (if any) prefixed to the first user turn.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set sys = messages[0]['content'] + '\\n\\n' %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for message in msgs %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first %}{{ '[INST] ' + sys + message['content'] + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}")


def gen_chat():
    import jinja2

    r = gguf.GGUFReader(MODEL)
    smol = r.fields["tokenizer.chat_template"].contents()
    env = jinja2.Environment()
    convs = [
        [{"role": "user", "content": "Hi!"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "And 3+3?"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "multi\nline"},
         {"role": "assistant", "content": "ok"}],
    ]
    cases = []
    for name, src, bos, eos in (("smollm2", smol, "", ""),
                                ("llama3", LLAMA3_TEMPLATE, "", ""),
                                ("mistral", MISTRAL_TEMPLATE, "", "</s>")):
        tpl = env.from_string(src)
        for conv in convs:
            for agp in (True, False):
                # BOS is the caller's job in Pivot (tok_add_bos), so render
                # with an empty bos_token.
                text = tpl.render(messages=conv, add_generation_prompt=agp, bos_token=bos,
                                  eos_token=eos)
                cases.append({"template": name, "messages": conv,
                              "add_generation_prompt": agp, "expected": text})
    out = {
        "reference": "jinja2 %s rendering of the template text" % jinja2.__version__,
        "templates": {"smollm2": smol, "llama3": LLAMA3_TEMPLATE, "mistral": MISTRAL_TEMPLATE},
        "cases": cases,
    }
    with open(os.path.join(OUT, "chat.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)


def main():
    os.makedirs(OUT, exist_ok=True)
    gen_bpe()
    gen_spm()
    gen_chat()
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
