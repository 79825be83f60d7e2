"""Which KV heads copy? Per (layer, KV head) induction score of SmolLM2 on
random-word copy samples (BOS, L random word tokens, the same L again; the
shape of `pivot eval --task copy`), from the float32 numpy reference
(tests/python/ref_llama.py): for every query in the second copy at position t
(whose token repeats position t - L), the attention probability its heads put
on position t - L + 1 (the token that followed last time: what an induction
head retrieves), averaged over the KV group's query heads, the positions and
the samples. Also the previous-token score (attention on position t - 1 from
every t), the heads that let an induction head's key say which token came
before.

  .venv/bin/python bench/eval/heads/induction.py [--samples 4] [--length 512] [--seed 1]

Prints the heads ranked, and a JSON list [[layer, head, score], ...] last."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "python"))
import ref_llama  # noqa: E402


def word_tokens(vocab: list[str]) -> list[int]:
    """' ' + 3..10 lowercase letters (the eval's rule; SentencePiece/BPE
    space markers are mapped to ' ')."""
    out = []
    for i, p in enumerate(vocab):
        s = p.replace("\u0120", " ").replace("\u2581", " ")
        if 4 <= len(s) <= 11 and s[0] == " " and all("a" <= ch <= "z" for ch in s[1:]):
            out.append(i)
    return out


def scores(m: ref_llama.RefModel, toks: np.ndarray, L: int) -> np.ndarray:
    c = m.cfg
    n = len(toks)
    x = m.w("token_embd.weight")[toks].astype(np.float32)
    cos, sin = m._rope_tables(np.arange(n))
    group = c.n_head // c.n_head_kv
    causal = np.triu(np.ones((n, n), dtype=bool), k=1)
    qpos = np.arange(n - L, n - 1)  # queries in the second copy (not the last)
    kpos = qpos - L + 1
    out = np.zeros((2, c.n_layer, c.n_head_kv))
    for il in range(c.n_layer):
        p = f"blk.{il}."
        h = m._rmsnorm(x, m.w(p + "attn_norm.weight"))
        q = m._rope(m._linear(h, p + "attn_q").reshape(n, c.n_head, c.head_dim), cos, sin)
        k = m._rope(m._linear(h, p + "attn_k").reshape(n, c.n_head_kv, c.head_dim), cos, sin)
        v = m._linear(h, p + "attn_v").reshape(n, c.n_head_kv, c.head_dim)
        kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        s = np.einsum("qhd,khd->hqk", q, kk).astype(np.float64) / np.sqrt(c.head_dim)
        s[:, causal] = -np.inf
        s -= s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        ind = pr[:, qpos, kpos].mean(axis=1)  # (n_head,)
        out[0, il] = ind.reshape(c.n_head_kv, group).mean(axis=1)
        prev = pr[:, np.arange(1, n), np.arange(0, n - 1)].mean(axis=1)  # on the previous token
        out[1, il] = prev.reshape(c.n_head_kv, group).mean(axis=1)
        att = np.einsum("hqk,khd->qhd", pr.astype(np.float32), vv).reshape(n, -1)
        x = x + m._linear(att, p + "attn_output")
        h = m._rmsnorm(x, m.w(p + "ffn_norm.weight"))
        g = m._linear(h, p + "ffn_gate").astype(np.float64)
        x = x + m._linear((g / (1 + np.exp(-g))).astype(np.float32) * m._linear(h, p + "ffn_up"),
                          p + "ffn_down")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    m = ref_llama.load(a.model)
    words = word_tokens(m.vocab())
    bos = int(ref_llama._field(m.reader, "tokenizer.ggml.bos_token_id", 1))
    rng = np.random.default_rng(a.seed)
    L = (a.length - 1) // 2
    tot = 0
    for _ in range(a.samples):
        w = rng.choice(words, size=L)
        toks = np.concatenate([[bos], w, w]).astype(np.int64)
        tot = tot + scores(m, toks, L)
    tot /= a.samples
    for name, t in (("induction", tot[0]), ("previous-token", tot[1])):
        rank = sorted(((t[l, h], l, h) for l in range(t.shape[0]) for h in range(t.shape[1])),
                      reverse=True)
        print(name + ":")
        for s, l, h in rank[:12]:
            print(f"  layer {l:2d} head {h}: {s:.3f}")
        print(json.dumps([[l, h, round(float(s), 4)] for s, l, h in rank]))


if __name__ == "__main__":
    main()
