"""Which KV heads copy? Per (layer, KV head) induction score of SmolLM2 on
random-word copy samples (BOS, L random word tokens, the same L again; the
shape of `pivot eval --task copy`), from the float32 numpy reference
(tests/python/ref_llama.py): for every query in the second copy at position t
(whose token repeats position t - L), the attention probability its heads put
on position t - L + 1 (the token that followed last time: what an induction
head retrieves), averaged over the KV group's query heads, the positions and
the samples. Also the previous-token score (attention on position t - 1 from
every t), the heads that let an induction head's key say which token came
before; and how much attention goes more than 64 tokens back (what a
window-only head would lose).

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
    """(3, layers, KV heads): induction, previous-token and far-attention
    scores of one probe (BOS, then two copies of L tokens)."""
    return m.induction_scores(toks, len(toks) - 2 * L, L)


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
    far = tot[2]
    print(f"far attention (keys > 64 back, sinks excluded, second-copy queries): median "
          f"{np.median(far):.3f}, heads above 0.1: {(far > 0.1).sum()} of {far.size}")


if __name__ == "__main__":
    main()
