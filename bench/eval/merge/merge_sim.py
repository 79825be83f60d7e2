"""What if the heads that cannot keep their history merged it instead of
dropping it? A simulation on the float32 numpy reference (tests/python/
ref_llama.py), no quantization: random-word copy samples (BOS, L random word
tokens, the same L again: `pivot eval --task copy`'s shape), teacher-forced
top-1 accuracy on the second copy, for
  full    every head sees every token;
  drop    the copying heads (--keep, layer.head) see every token, every other
          KV head only the first 4 (sinks) and the last W before each query:
          the width-0 heads of docs/KV_CACHE.md at the 0.125 target;
  merge   as drop, but the tokens a head no longer sees become one extra key:
          the mean of their keys with log(count) added to its logit, and the
          mean of their values (a first-order stand-in for the softmax over
          them: count * exp(q.mean_k) * mean_v).
  .venv/bin/python bench/eval/merge/merge_sim.py [--samples 8] [--length 1024] [--window 128]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "python"))
import ref_llama  # noqa: E402

sys.path.insert(0, str(REPO / "bench" / "eval" / "heads"))
from induction import word_tokens  # noqa: E402  (the eval's word rule)

SINKS = 4


def attend(q, k, v, scale, mode, window):
    """q (n, hd), k, v (n, hd) of one query head: the output (n, hd)."""
    n = q.shape[0]
    s = (q @ k.T).astype(np.float64) * scale
    idx = np.arange(n)
    causal = idx[None, :] > idx[:, None]
    if mode == "full":
        s[causal] = -np.inf
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return (p.astype(np.float32) @ v)
    # visible: j < SINKS or t - window < j <= t
    hidden = (idx[None, :] >= SINKS) & (idx[None, :] <= idx[:, None] - window)
    s[causal | hidden] = -np.inf
    if mode == "merge":
        # hidden tokens of query t: positions SINKS .. t - window (a prefix)
        cnt = np.clip(idx - window - SINKS + 1, 0, None)
        ck = np.cumsum(k.astype(np.float64), axis=0)
        cv = np.cumsum(v.astype(np.float64), axis=0)
        base_k = ck[SINKS - 1] if SINKS else 0
        base_v = cv[SINKS - 1] if SINKS else 0
        last = np.clip(idx - window, 0, n - 1)
        mk = np.where(cnt[:, None] > 0, (ck[last] - base_k) / np.maximum(cnt, 1)[:, None], 0)
        mv = np.where(cnt[:, None] > 0, (cv[last] - base_v) / np.maximum(cnt, 1)[:, None], 0)
        sm = np.where(cnt > 0, (q.astype(np.float64) * mk).sum(1) * scale + np.log(np.maximum(cnt, 1)), -np.inf)
        mx = np.maximum(s.max(axis=1), sm)
        p = np.exp(s - mx[:, None])
        pm = np.exp(sm - mx)
        z = p.sum(axis=1) + pm
        out = (p @ v.astype(np.float64) + pm[:, None] * mv) / z[:, None]
        return out.astype(np.float32)
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return (p.astype(np.float32) @ v)


def forward(m, toks, mode, window, keep):
    c = m.cfg
    n = len(toks)
    x = m.w("token_embd.weight")[toks].astype(np.float32)
    cos, sin = m._rope_tables(np.arange(n))
    group = c.n_head // c.n_head_kv
    scale = 1.0 / np.sqrt(c.head_dim)
    for il in range(c.n_layer):
        p = f"blk.{il}."
        h = m._rmsnorm(x, m.w(p + "attn_norm.weight"))
        q = m._rope(m._linear(h, p + "attn_q").reshape(n, c.n_head, c.head_dim), cos, sin)
        k = m._rope(m._linear(h, p + "attn_k").reshape(n, c.n_head_kv, c.head_dim), cos, sin)
        v = m._linear(h, p + "attn_v").reshape(n, c.n_head_kv, c.head_dim)
        att = np.zeros((n, c.n_head, c.head_dim), dtype=np.float32)
        for hq in range(c.n_head):
            hk = hq // group
            md = "full" if mode == "full" or (il, hk) in keep else mode
            att[:, hq] = attend(q[:, hq], k[:, hk], v[:, hk], scale, md, window)
        x = x + m._linear(att.reshape(n, -1), p + "attn_output")
        h = m._rmsnorm(x, m.w(p + "ffn_norm.weight"))
        g = m._linear(h, p + "ffn_gate").astype(np.float64)
        u = m._linear(h, p + "ffn_up")
        x = x + m._linear((g / (1 + np.exp(-g))).astype(np.float32) * u, p + "ffn_down")
    x = m._rmsnorm(x, m.w("output_norm.weight"))
    name = "output.weight" if m.has("output.weight") else "token_embd.weight"
    return x @ m.w(name).T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", default="18.2,17.1,23.0,23.2,20.2")
    ap.add_argument("--modes", default="full,drop,merge")
    a = ap.parse_args()
    keep = {tuple(int(t) for t in s.split(".")) for s in a.keep.split(",") if s}
    m = ref_llama.load(a.model)
    words = word_tokens(m.vocab())
    bos = int(ref_llama._field(m.reader, "tokenizer.ggml.bos_token_id", 1))
    rng = np.random.default_rng(a.seed)
    L = (a.length - 1) // 2
    modes = a.modes.split(",")
    acc = {md: [] for md in modes}
    for si in range(a.samples):
        w = rng.choice(words, size=L)
        toks = np.concatenate([[bos], w, w]).astype(np.int64)
        tgt = toks[L + 2:]            # second copy from its second token
        for md in modes:
            lg = forward(m, toks, md, a.window, keep)
            pred = lg[L + 1:-1].argmax(axis=1)
            acc[md].append(float((pred == tgt).mean()))
        print(f"sample {si}: " + "  ".join(f"{md} {acc[md][-1]:.3f}" for md in modes), flush=True)
    for md in modes:
        x = np.array(acc[md])
        ci = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0
        print(f"{md:6s} {x.mean():.3f} ± {ci:.3f}" + (f"  of full's {x.mean() / np.mean(acc['full']):.2f}" if 'full' in acc else ""))


if __name__ == "__main__":
    main()
