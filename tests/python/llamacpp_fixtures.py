"""llama.cpp's logits for the synthetic F32 models, kept in the repo.

llama-cpp-python is not installed in CI (it builds llama.cpp from source),
so the comparison of the reference and the engine with llama.cpp uses logits
that scripts/gen_llamacpp_fixtures.py computed once with it. Each case keeps
a digest of the model's tensors and hyperparameters and of its prompt: if
synth.py (or numpy's random streams) ever produce a different model, the
stored logits no longer belong to it and the test says so instead of
comparing against the wrong numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np

import synth

PATH = Path(__file__).resolve().parent.parent / "fixtures" / "llamacpp" / "synth-f32-logits.npz"
WTYPE = "F32"
N_TOKENS = 20  # test_reference.N_SYNTH_TOKENS: the same prompts


def model_digest(path, tokens) -> str:
    """sha256 of what decides the logits: every tensor (name, type, shape,
    bytes), the metadata outside general.* (the writer's own), the prompt."""
    r = gguf.GGUFReader(str(path))
    h = hashlib.sha256()
    for name in sorted(f for f in r.fields if not f.startswith(("GGUF.", "general."))):
        h.update(f"{name}={r.fields[name].contents()!r}\n".encode())
    for t in sorted(r.tensors, key=lambda t: t.name):
        h.update(f"{t.name}:{t.tensor_type.name}:{list(map(int, t.shape))}\n".encode())
        h.update(np.ascontiguousarray(t.data).tobytes())
    h.update(("tokens=" + ",".join(map(str, tokens))).encode())
    return h.hexdigest()


def llama_cpp_logits(lc, path, tokens) -> np.ndarray:
    """llama.cpp's logits at every position; lc is the llama_cpp module."""
    # F32 KV cache so that F32 models are compared without fp16 rounding.
    llm = lc.Llama(model_path=str(path), logits_all=True, n_ctx=256, n_batch=256,
                   n_threads=2, verbose=False, type_k=0, type_v=0)
    llm.reset()
    llm.eval(list(tokens))
    return np.array(llm.scores[:len(tokens)], dtype=np.float32)


def save(cases: dict[str, tuple[np.ndarray, str]], version: str, path: Path = PATH) -> None:
    """cases: arch name -> (logits (N_TOKENS, n_vocab) float32, digest)."""
    arrays = {"llama_cpp_version": np.array(version)}
    for arch, (lg, digest) in cases.items():
        arrays[f"{arch}.logits"] = np.asarray(lg, dtype=np.float32)
        arrays[f"{arch}.digest"] = np.array(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load(path: Path = PATH) -> dict:
    """{"version": str, arch: (logits, digest), ...}"""
    with np.load(path, allow_pickle=False) as z:
        out = {"version": str(z["llama_cpp_version"])}
        for arch, _, _ in synth.ARCHES:
            out[arch] = (z[f"{arch}.logits"], str(z[f"{arch}.digest"]))
    return out
