"""Writes the fuzzers' seed corpora and the tiny chat model the HTTP fuzzer
serves, into OUT (a build directory; nothing here is committed):

  OUT/tiny-chat.gguf         1-layer Llama, vocab 300, ChatML template: the
                             model fuzz_http's in-process server decodes with
  OUT/corpus/gguf/           a smaller model of the same kind + spm-tiny.gguf
  OUT/corpus/http/           raw HTTP requests: every route, pipelining,
                             chunked bodies, streaming, errors
  OUT/corpus/api/            request bodies (first byte: which parser)
  OUT/corpus/tokenizer/      texts (first byte: vocabulary, parse_special)

Deterministic: the same files every run. Uses tests/python/synth.py's
tokenizer and weight writers so the model is one the engine really loads."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import gguf

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "python"))
import synth  # noqa: E402

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_tiny(path: Path, n_embd: int, n_head: int, n_head_kv: int, n_ff: int,
               n_layer: int, wtype: str, ctx: int) -> None:
    rng = np.random.default_rng(7)
    hd = n_embd // n_head
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("fuzz-tiny")
    w.add_context_length(ctx)
    w.add_block_count(n_layer)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(synth.N_VOCAB)
    tokens, types, merges = synth.tokenizer_vocab(synth.N_VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    synth._add_matrix(w, "token_embd.weight", synth.N_VOCAB, n_embd, wtype, 0.15, rng)
    for il in range(n_layer):
        p = f"blk.{il}."
        synth._add_vector(w, p + "attn_norm.weight", n_embd, 1.0, 0.1, rng)
        synth._add_matrix(w, p + "attn_q.weight", n_head * hd, n_embd, wtype, 0.05, rng)
        synth._add_matrix(w, p + "attn_k.weight", n_head_kv * hd, n_embd, wtype, 0.05, rng)
        synth._add_matrix(w, p + "attn_v.weight", n_head_kv * hd, n_embd, wtype, 0.05, rng)
        synth._add_matrix(w, p + "attn_output.weight", n_embd, n_head * hd, wtype, 0.05, rng)
        synth._add_vector(w, p + "ffn_norm.weight", n_embd, 1.0, 0.1, rng)
        synth._add_matrix(w, p + "ffn_gate.weight", n_ff, n_embd, wtype, 0.05, rng)
        synth._add_matrix(w, p + "ffn_up.weight", n_ff, n_embd, wtype, 0.05, rng)
        synth._add_matrix(w, p + "ffn_down.weight", n_embd, n_ff, wtype, 0.05, rng)
    synth._add_vector(w, "output_norm.weight", n_embd, 1.0, 0.1, rng)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def http(method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         chunked: bool = False) -> bytes:
    h = {"Host": "x"}
    if body is not None:
        h["Content-Type"] = "application/json"
        if chunked:
            h["Transfer-Encoding"] = "chunked"
        else:
            h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    if body is not None and chunked:
        mid = len(body) // 2
        body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n"
                        for p in (body[:mid], body[mid:]) if p) + b"0\r\n\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    # head_dim 64 like the real models the kernels are tuned for
    write_tiny(out / "tiny-chat.gguf", 128, 2, 1, 256, 1, "Q8_0", 128)

    cg = out / "corpus" / "gguf"
    cg.mkdir(parents=True, exist_ok=True)
    write_tiny(cg / "mini-f16.gguf", 32, 2, 1, 64, 1, "F16", 64)
    write_tiny(cg / "mini-q8.gguf", 64, 1, 1, 64, 1, "Q8_0", 64)
    shutil.copy(REPO / "tests" / "fixtures" / "tokenizer" / "spm-tiny.gguf", cg / "spm-tiny.gguf")

    cmpl = {"prompt": "the quick brown fox", "max_tokens": 4, "temperature": 0}
    chat = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    full = {"prompt": [[5, 6, 7], "a b"], "n": 2, "max_tokens": 3, "logprobs": 2, "echo": True,
            "stop": ["\n", "the"], "seed": 3, "top_k": 5, "top_p": 0.9, "min_p": 0.1,
            "presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1,
            "stop_token_ids": [2], "ignore_eos": True, "min_tokens": 1, "user": "u",
            "kv_policy": "full", "model": "tiny-chat", "stream": False}
    bodies = {"cmpl": cmpl, "chat": chat, "full": full,
              "chat_lp": {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                          "logprobs": True, "top_logprobs": 3},
              "tok": {"prompt": "hello world", "add_special_tokens": False},
              "tok_msgs": {"messages": [{"role": "user", "content": "x"}]},
              "detok": {"tokens": [100, 200, 3]}}
    ch = out / "corpus" / "http"
    ch.mkdir(parents=True, exist_ok=True)
    seeds = {
        "health": http("GET", "/health"),
        "metrics_models": http("GET", "/metrics") + http("GET", "/v1/models"),
        "cmpl": http("POST", "/v1/completions", json.dumps(cmpl).encode()),
        "chat_stream": http("POST", "/v1/chat/completions", json.dumps(chat).encode()),
        "full_chunked": http("POST", "/v1/completions", json.dumps(full).encode(), chunked=True),
        "tokenize": http("POST", "/tokenize", json.dumps(bodies["tok"]).encode()),
        "tok_msgs": http("POST", "/tokenize", json.dumps(bodies["tok_msgs"]).encode()),
        "detokenize": http("POST", "/detokenize", json.dumps(bodies["detok"]).encode()),
        "pipelined": http("GET", "/health") + http("POST", "/v1/completions", json.dumps(cmpl).encode())
        + http("GET", "/nope"),
        "bad_method": http("DELETE", "/v1/completions"),
        "bad_ctype": http("POST", "/tokenize", b"{}", {"Content-Type": "text/plain"}),
        "auth": http("GET", "/v1/models", headers={"Authorization": "Bearer k"}),
        "bad_json": http("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": }'),
        "http10": b"GET /health HTTP/1.0\r\n\r\n",
        "garbage": b"\x00\xff GARBAGE\r\n\r\n",
    }
    # first byte: harness mode (see fuzz_http.c): 0 wait for answers, 1 half-close at once
    for k, v in seeds.items():
        (ch / k).write_bytes(b"\x00" + v)
    (ch / "cmpl_halfclose").write_bytes(b"\x01" + seeds["cmpl"])

    ca = out / "corpus" / "api"
    ca.mkdir(parents=True, exist_ok=True)
    sel = {"cmpl": 0, "full": 0, "chat": 1, "chat_lp": 1, "tok": 2, "tok_msgs": 2, "detok": 3}
    for k, v in bodies.items():
        (ca / k).write_bytes(bytes([sel[k]]) + json.dumps(v).encode())

    ct = out / "corpus" / "tokenizer"
    ct.mkdir(parents=True, exist_ok=True)
    texts = ["Hello, world! The quick brown fox.", "<|im_start|>user\nhi<|im_end|>",
             "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600 \u0645\u0631\u062d\u0628\u0627",
             "   leading spaces\n\n\ttabs 12345 3.14 don't I'm",
             "\u2581\u2581 <0x41> <s> </s>"]
    for i, t in enumerate(texts):
        for sel_b in (0, 1, 2, 3):
            (ct / f"t{i}_{sel_b}").write_bytes(bytes([sel_b]) + t.encode())
    (ct / "invalid_utf8").write_bytes(b"\x00\xff\xfe\xc3\x28\xe2\x82 ok \xf0\x9f")
    print(out)


if __name__ == "__main__":
    main()
