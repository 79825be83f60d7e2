"""Small random GGUF models for testing the engine against ref_llama.

Each model is tiny (2 layers, vocab 300) but exercises the real code paths:
every weight type the engine reads, GQA (4 query heads over 2 KV heads),
tied and separate output matrices, qwen2's Q/K/V biases and NEOX RoPE.

Weights are random with standard deviations chosen so that activations stay
O(1) and the logits have a spread of a few units: argmax is then a
meaningful check, not a coin toss between near-equal logits.

K-quants (Q4_K, Q6_K) are not quantizable by the gguf package, so their
blocks are random bytes with the fp16 super-block scales set afterwards to
hit the target spread; any bytes are a valid block for these formats.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"]
# (name, gguf architecture, tied output)
ARCHES = [("llama_tied", "llama", True), ("llama_out", "llama", False), ("qwen2", "qwen2", True)]

N_VOCAB = 300
N_SPECIAL = 3  # <|endoftext|> <|im_start|> <|im_end|>


@dataclass(frozen=True)
class SynthSpec:
    arch: str = "llama"
    wtype: str = "F32"
    tied: bool = True
    n_layer: int = 2
    n_embd: int = 256  # multiple of 256 so K-quants fit; head_dim 64 like SmolLM2
    n_ff: int = 512
    n_head: int = 4
    n_head_kv: int = 2
    n_vocab: int = N_VOCAB
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    seed: int = 0
    chat_template: str | None = None  # tokenizer.chat_template, when set


# ---- tokenizer metadata ------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_CORPUS = (
    "the quick brown fox jumps over the lazy dog and the cat sat on the mat "
    "in the morning there is a lot of rain and the wind is strong "
    "then they went to the market to buy bread and the other things they need "
)


def _train_bpe(n_merges: int) -> list[tuple[str, str]]:
    """A tiny byte-level BPE trainer on a fixed corpus: the merges are then
    consistent (every merge result is itself a token) by construction."""
    b2u = bytes_to_unicode()
    words = [" " + w if i else w for i, w in enumerate(_CORPUS.split())]
    seqs = [[b2u[b] for b in w.encode()] for w in words]
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        # Most frequent, ties by lexical order, so the output is stable.
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for i, s in enumerate(seqs):
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and (s[j], s[j + 1]) == best:
                    out.append(joined)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out
    return merges


def tokenizer_vocab(n_vocab: int):
    """(tokens, token_types, merges) for a valid gpt2-style vocabulary."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    b2u = bytes_to_unicode()
    byte_toks = [b2u[b] for b in range(256)]
    n_merges = n_vocab - len(specials) - len(byte_toks)
    if n_merges < 0:
        raise ValueError("n_vocab must be at least 259")
    merges = _train_bpe(n_merges)
    merged = [a + b for a, b in merges]
    tokens = specials + byte_toks + merged
    # If the corpus ran out of pairs, pad with unreachable normal tokens.
    k = 0
    while len(tokens) < n_vocab:
        tokens.append(f"<pad_{k}>")
        k += 1
    types = [int(gguf.TokenType.CONTROL)] * len(specials) + \
        [int(gguf.TokenType.NORMAL)] * (len(tokens) - len(specials))
    assert len(set(tokens)) == len(tokens), "duplicate tokens"
    return tokens, types, [f"{a} {b}" for a, b in merges]


# ---- weights -----------------------------------------------------------------

def _kquant_random(rows: int, cols: int, qtype: QT, std: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Random but valid K-quant blocks whose dequantized values have about
    the given standard deviation. Returns uint8 (rows, bytes_per_row)."""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    assert cols % bs == 0
    nb = rows * cols // bs
    blk = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)

    def set_f16(col: int, v: float):
        blk[:, col:col + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)

    if qtype == QT.Q4_K:
        # d, dmin at bytes 0..3; value = d*sc*q - dmin*m with sc, m 6-bit.
        # dmin = 7.5 d roughly centres the values (E[sc*q] ~ 7.5 E[m]).
        set_f16(0, 1.0)
        set_f16(2, 7.5)
        s = float(dequantize(blk, qtype).std())
        set_f16(0, std / s)
        set_f16(2, 7.5 * std / s)
    elif qtype == QT.Q6_K:
        # int8 scales at bytes 192..207, d at 208; value = d*scale*(q-32).
        blk[:, 192:208] = rng.integers(-32, 33, size=(nb, 16)).astype(np.int8).view(np.uint8)
        set_f16(208, 1.0)
        s = float(dequantize(blk, qtype).std())
        set_f16(208, std / s)
    else:
        raise ValueError(f"no random generator for {qtype.name}")
    return blk.reshape(rows, cols // bs * ts)


def _add_matrix(w: gguf.GGUFWriter, name: str, rows: int, cols: int, wtype: str,
                std: float, rng: np.random.Generator):
    """Adds a (rows, cols) weight (ne = [cols, rows]) of the given type."""
    qt = QT[wtype]
    if qt in (QT.Q4_K, QT.Q6_K):
        w.add_tensor(name, _kquant_random(rows, cols, qt, std, rng), raw_dtype=qt)
        return
    x = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
    if qt == QT.F32:
        w.add_tensor(name, x)
    elif qt == QT.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:  # BF16 and the legacy quants: the gguf package quantizes them
        w.add_tensor(name, quantize(x, qt), raw_dtype=qt)


def _add_vector(w, name, n, mean, std, rng):
    w.add_tensor(name, (mean + rng.standard_normal(n) * std).astype(np.float32))


def write_model(path: str | os.PathLike, spec: SynthSpec) -> str:
    rng = np.random.default_rng(spec.seed)
    s = spec
    hd = s.n_embd // s.n_head
    w = gguf.GGUFWriter(str(path), s.arch)
    w.add_name(f"synth-{s.arch}-{s.wtype}")
    w.add_context_length(512)
    w.add_block_count(s.n_layer)
    w.add_embedding_length(s.n_embd)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_rope_freq_base(s.rope_base)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(s.n_vocab)

    tokens, types, merges = tokenizer_vocab(s.n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    if s.chat_template is not None:
        w.add_chat_template(s.chat_template)

    # std 0.05 over fan-in 256 gives projections of std ~0.8; the embedding
    # (also the tied output) at 0.15 gives logits of std ~2.4.
    _add_matrix(w, "token_embd.weight", s.n_vocab, s.n_embd, s.wtype, 0.15, rng)
    for il in range(s.n_layer):
        p = f"blk.{il}."
        _add_vector(w, p + "attn_norm.weight", s.n_embd, 1.0, 0.1, rng)
        _add_matrix(w, p + "attn_q.weight", s.n_head * hd, s.n_embd, s.wtype, 0.05, rng)
        _add_matrix(w, p + "attn_k.weight", s.n_head_kv * hd, s.n_embd, s.wtype, 0.05, rng)
        _add_matrix(w, p + "attn_v.weight", s.n_head_kv * hd, s.n_embd, s.wtype, 0.05, rng)
        if s.arch == "qwen2":
            _add_vector(w, p + "attn_q.bias", s.n_head * hd, 0.0, 0.2, rng)
            _add_vector(w, p + "attn_k.bias", s.n_head_kv * hd, 0.0, 0.2, rng)
            _add_vector(w, p + "attn_v.bias", s.n_head_kv * hd, 0.0, 0.2, rng)
        _add_matrix(w, p + "attn_output.weight", s.n_embd, s.n_head * hd, s.wtype, 0.05, rng)
        _add_vector(w, p + "ffn_norm.weight", s.n_embd, 1.0, 0.1, rng)
        _add_matrix(w, p + "ffn_gate.weight", s.n_ff, s.n_embd, s.wtype, 0.05, rng)
        _add_matrix(w, p + "ffn_up.weight", s.n_ff, s.n_embd, s.wtype, 0.05, rng)
        _add_matrix(w, p + "ffn_down.weight", s.n_embd, s.n_ff, s.wtype, 0.05, rng)
    _add_vector(w, "output_norm.weight", s.n_embd, 1.0, 0.1, rng)
    if not s.tied:
        _add_matrix(w, "output.weight", s.n_vocab, s.n_embd, s.wtype, 0.15, rng)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def spec_for(arch_name: str, wtype: str, seed: int = 0) -> SynthSpec:
    for name, arch, tied in ARCHES:
        if name == arch_name:
            return SynthSpec(arch=arch, wtype=wtype, tied=tied,
                             rope_base=1e6 if arch == "qwen2" else 1e4,
                             rms_eps=1e-6 if arch == "qwen2" else 1e-5,
                             seed=seed)
    raise KeyError(arch_name)


def case_seed(*parts) -> int:
    """The seed of one test case's model or tokens, from its names (the
    reference tests and scripts/gen_llamacpp_fixtures.py must agree)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def case_model(path: str | os.PathLike, arch_name: str, wtype: str) -> str:
    """Writes the model of the (arch, type) test case."""
    return write_model(path, spec_for(arch_name, wtype, seed=case_seed(arch_name, wtype)))


def case_tokens(arch_name: str, wtype: str, n: int) -> list[int]:
    """The prompt of the (arch, type) test case: n random token ids."""
    rng = np.random.default_rng(case_seed("tokens", arch_name, wtype))
    return rng.integers(0, N_VOCAB, n).tolist()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write a small random GGUF model")
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama_tied", choices=[a[0] for a in ARCHES])
    ap.add_argument("--type", default="F32", choices=TYPES)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(write_model(a.out, spec_for(a.arch, a.type, a.seed)))
