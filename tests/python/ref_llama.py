"""Independent numpy reference forward pass for llama / qwen2 GGUF models.

Written from the math, not from the engine's C code, so that the two can be
compared: weights come from the `gguf` package's own dequantizers, and every
step is plain numpy. Speed matters only enough to run SmolLM2-135M on a
60-token prompt in a few seconds: each tensor is dequantized once and the
model object is cached per file.

Layout facts this relies on (checked against SmolLM2: token_embd has
ne = [576, 49152] and comes out of the reader as a (49152, 576) array):
a GGUF tensor with ne = [in, out] is the numpy matrix W of shape (out, in),
so a linear layer is x @ W.T.

RoPE: GGUF `llama` files store Q/K rows permuted so that rotating adjacent
pairs (x[2i], x[2i+1]) is right; qwen2 rotates (x[i], x[i + d/2]) (NEOX).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import gguf
from gguf.quants import dequantize

NEOX_ARCHS = {"qwen2", "qwen2moe", "qwen3", "gptneox", "phi2", "phi3", "stablelm"}


@dataclass(frozen=True)
class Config:
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    rope_base: float
    rms_eps: float
    n_vocab: int
    neox: bool


def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def tensor_to_numpy(t) -> np.ndarray:
    """Dequantized float32 array of a ReaderTensor, in numpy (row-major) order:
    shape = reversed(ne)."""
    arr = dequantize(t.data, t.tensor_type)
    shape = tuple(int(n) for n in reversed(t.shape))
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)


class RefModel:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        r = gguf.GGUFReader(self.path)
        self.reader = r
        arch = _field(r, "general.architecture")
        if arch is None:
            raise ValueError("no general.architecture")

        def a(key, default=None):
            return _field(r, f"{arch}.{key}", default)

        self._tensors = {t.name: t for t in r.tensors}
        n_embd = int(a("embedding_length"))
        n_head = int(a("attention.head_count"))
        head_dim = n_embd // n_head
        emb = self._tensors["token_embd.weight"]
        self.cfg = Config(
            arch=arch,
            n_layer=int(a("block_count")),
            n_embd=n_embd,
            n_ff=int(a("feed_forward_length")),
            n_head=n_head,
            n_head_kv=int(a("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            rope_dim=int(a("rope.dimension_count", head_dim)),
            rope_base=float(a("rope.freq_base", 10000.0)),
            rms_eps=float(a("attention.layer_norm_rms_epsilon", 1e-5)),
            n_vocab=int(emb.shape[1]),
            neox=arch in NEOX_ARCHS,
        )
        self._cache: dict[str, np.ndarray] = {}

    # -- weights --------------------------------------------------------------

    def has(self, name: str) -> bool:
        return name in self._tensors

    def w(self, name: str) -> np.ndarray:
        """Dequantized tensor, computed once."""
        x = self._cache.get(name)
        if x is None:
            x = tensor_to_numpy(self._tensors[name])
            self._cache[name] = x
        return x

    def vocab(self) -> list[str]:
        return list(_field(self.reader, "tokenizer.ggml.tokens", []))

    # -- math -------------------------------------------------------------

    def _rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.cfg.rms_eps)).astype(x.dtype) * w

    def _rope_tables(self, pos: np.ndarray):
        c = self.cfg
        half = c.rope_dim // 2
        # theta_i = pos * base^(-2i/d), computed in float64 like the ideal.
        inv = c.rope_base ** (-2.0 * np.arange(half, dtype=np.float64) / c.rope_dim)
        ang = pos.astype(np.float64)[:, None] * inv[None, :]  # (n, half)
        return np.cos(ang), np.sin(ang)

    def _rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """x: (n, heads, head_dim). Rotates the first rope_dim dims of each head."""
        c = self.cfg
        half = c.rope_dim // 2
        out = x.astype(np.float64).copy()
        cs, sn = cos[:, None, :], sin[:, None, :]
        if c.neox:
            a = out[..., :half].copy()
            b = out[..., half:c.rope_dim].copy()
            out[..., :half] = a * cs - b * sn
            out[..., half:c.rope_dim] = a * sn + b * cs
        else:
            a = out[..., 0:c.rope_dim:2].copy()
            b = out[..., 1:c.rope_dim:2].copy()
            out[..., 0:c.rope_dim:2] = a * cs - b * sn
            out[..., 1:c.rope_dim:2] = a * sn + b * cs
        return out.astype(x.dtype)

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        y = x @ self.w(name + ".weight").T
        if self.has(name + ".bias"):
            y = y + self.w(name + ".bias")
        return y

    def forward(self, tokens, dtype=np.float32, on_probs=None) -> np.ndarray:
        """Logits for every position of `tokens` (full causal prompt from
        position 0). Returns (n_tokens, n_vocab) float32. on_probs(layer, pr),
        when given, sees each layer's attention probabilities (float64,
        [n_head][query][key])."""
        c = self.cfg
        toks = np.asarray(list(tokens), dtype=np.int64)
        if toks.ndim != 1 or len(toks) == 0:
            raise ValueError("tokens must be a non-empty list")
        if toks.min() < 0 or toks.max() >= c.n_vocab:
            raise ValueError("token id out of range")
        n = len(toks)
        x = self.w("token_embd.weight")[toks].astype(dtype)  # (n, n_embd)
        cos, sin = self._rope_tables(np.arange(n))
        group = c.n_head // c.n_head_kv
        scale = 1.0 / np.sqrt(c.head_dim)
        causal = np.triu(np.ones((n, n), dtype=bool), k=1)  # True = masked

        for il in range(c.n_layer):
            p = f"blk.{il}."
            h = self._rmsnorm(x, self.w(p + "attn_norm.weight"))
            q = self._linear(h, p + "attn_q").reshape(n, c.n_head, c.head_dim)
            k = self._linear(h, p + "attn_k").reshape(n, c.n_head_kv, c.head_dim)
            v = self._linear(h, p + "attn_v").reshape(n, c.n_head_kv, c.head_dim)
            q = self._rope(q, cos, sin)
            k = self._rope(k, cos, sin)
            # Query head hq reads kv head hq // group (GQA).
            kk = np.repeat(k, group, axis=1)  # (n, n_head, hd)
            vv = np.repeat(v, group, axis=1)
            s = np.einsum("qhd,khd->hqk", q, kk).astype(np.float64) * scale
            s[:, causal] = -np.inf
            s -= s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            if on_probs is not None:
                on_probs(il, pr)
            att = np.einsum("hqk,khd->qhd", pr.astype(dtype), vv)
            att = att.reshape(n, c.n_head * c.head_dim)
            x = x + self._linear(att, p + "attn_output")

            h = self._rmsnorm(x, self.w(p + "ffn_norm.weight"))
            g = self._linear(h, p + "ffn_gate")
            u = self._linear(h, p + "ffn_up")
            g64 = g.astype(np.float64)
            act = (g64 / (1.0 + np.exp(-g64))).astype(dtype) * u  # silu(g) * u
            x = x + self._linear(act, p + "ffn_down")

        x = self._rmsnorm(x, self.w("output_norm.weight"))
        out_name = "output.weight" if self.has("output.weight") else "token_embd.weight"
        logits = x @ self.w(out_name).T
        return np.asarray(logits, dtype=np.float32)

    def induction_scores(self, tokens, first: int, length: int) -> np.ndarray:
        """Copy probe (what `pivot heads` measures, cache/kv_probe.h): tokens
        hold `length` tokens from position `first`, then the same again. For
        every query of the second copy at t (but the last), the probability
        its heads put on t - length + 1, averaged over the KV group's query
        heads and the queries: (n_layer, n_head_kv) in float64. Row [1] of
        the result is the previous-token score (attention on t - 1 from every
        t) of the same heads; row [2] the attention the second copy's queries
        put on tokens more than 64 positions back (the first 4 excluded: sinks),
        what a head that kept only a window would lose."""
        c = self.cfg
        n = len(tokens)
        group = c.n_head // c.n_head_kv
        qpos = np.arange(first + length, first + 2 * length - 1)
        out = np.zeros((3, c.n_layer, c.n_head_kv))
        far = np.zeros((n, n), dtype=bool)  # [query, key]: key in [4, t - 64)
        for t in range(first + length, n):
            far[t, 4:max(4, t - 64)] = True

        def per_kv_head(x):  # (n_head,) -> (n_head_kv,): the mean over a group
            return x.reshape(c.n_head_kv, group).mean(axis=1)

        def on_probs(il, pr):
            out[0, il] = per_kv_head(pr[:, qpos, qpos - length + 1].mean(axis=1))
            out[1, il] = per_kv_head(pr[:, np.arange(1, n), np.arange(0, n - 1)].mean(axis=1))
            out[2, il] = per_kv_head((pr * far[None]).sum(axis=-1)[:, first + length:].mean(axis=1))

        self.forward(tokens, on_probs=on_probs)
        return out

    def greedy(self, tokens, n_new: int) -> list[int]:
        """Greedy continuation by re-running the full prompt (no KV cache:
        the reference stays as simple as possible)."""
        toks = list(tokens)
        for _ in range(n_new):
            toks.append(int(np.argmax(self.forward(toks)[-1])))
        return toks[len(tokens):]


@functools.lru_cache(maxsize=8)
def load(path: str) -> RefModel:
    """One RefModel per file, so tensors are dequantized once per session."""
    return RefModel(path)


def logits(path, tokens, dtype=np.float32) -> np.ndarray:
    return load(str(path)).forward(tokens, dtype=dtype)


def compare(got: np.ndarray, ref: np.ndarray, tie_rel: float = 3e-2) -> dict:
    """Per-position agreement figures between two (n, vocab) logit arrays.

    agree: same argmax. agree_tie: same argmax, or the engine's pick is within
    tie_rel * rms(ref row) of the reference's top logit. Random models and
    long prompts have near-ties that any rounding flips; counting those as
    failures would make a correct engine fail by luck, while a real bug
    (wrong scales, wrong RoPE) moves the logits far more than that.
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shape {got.shape} vs {ref.shape}")
    rel = np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-30)
    pick = np.argmax(got, axis=1)
    top = np.argmax(ref, axis=1)
    agree = pick == top
    rows = np.arange(len(ref))
    rms = np.sqrt(np.mean(ref ** 2, axis=1))
    margin = ref[rows, top] - ref[rows, pick]
    agree_tie = agree | (margin <= tie_rel * rms)
    return {
        "n": int(got.shape[0]),
        "rel_l2": rel,
        "rel_max": float(rel.max()),
        "rel_mean": float(rel.mean()),
        "agree": agree,
        "agree_frac": float(agree.mean()),
        "agree_tie_frac": float(agree_tie.mean()),
        "finite": bool(np.isfinite(got).all()),
    }


if __name__ == "__main__":
    import sys

    m = load(sys.argv[1])
    ids = [int(t) for t in sys.argv[2].split(",")]
    lg = m.forward(ids)
    print(m.cfg)
    print("argmax per position:", np.argmax(lg, axis=1).tolist())
