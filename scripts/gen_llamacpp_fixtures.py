"""Writes tests/fixtures/llamacpp/synth-f32-logits.npz: llama.cpp's logits
for the synthetic F32 models of tests/python/synth.py, the outside check of
the numpy reference (and through it of every engine test) that
tests/python/test_reference.py runs in CI without llama.cpp.

For each architecture case of synth.ARCHES (llama with tied output, llama
with its own output matrix, qwen2 with biases and NEOX RoPE) it writes the
case's F32 model and prompt (synth.case_model, synth.case_tokens: the same
seeds as the tests), runs llama.cpp on the prompt with an F32 KV cache and
stores its float32 logits at every position (20 x 300 per case, ~70 KB in
all) with a digest of the model and prompt (llamacpp_fixtures.model_digest)
and the llama-cpp-python version.

When to run it: after a change to synth.py's models or prompts (the test
then fails on the digest and names this script). It needs llama-cpp-python,
which the project does not install (pip builds llama.cpp from source, about
15 minutes on 2 cores, so CI does not):

    CMAKE_BUILD_PARALLEL_LEVEL=1 .venv/bin/pip install llama-cpp-python
    .venv/bin/python scripts/gen_llamacpp_fixtures.py [--out PATH]

It prints the reference's agreement with the new logits; that must be float
rounding (max rel L2 < 1e-4), else the reference (or llama.cpp) is wrong and
the file should not be committed."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))

import llama_cpp  # noqa: E402

import llamacpp_fixtures as fx  # noqa: E402
import ref_llama  # noqa: E402
import synth  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=fx.PATH)
    a = ap.parse_args()
    cases, worst = {}, 0.0
    with tempfile.TemporaryDirectory() as d:
        for arch, _, _ in synth.ARCHES:
            path = synth.case_model(Path(d) / f"{arch}-{fx.WTYPE}.gguf", arch, fx.WTYPE)
            toks = synth.case_tokens(arch, fx.WTYPE, fx.N_TOKENS)
            lg = fx.llama_cpp_logits(llama_cpp, path, toks)
            cases[arch] = (lg, fx.model_digest(path, toks))
            c = ref_llama.compare(lg, ref_llama.logits(path, toks))
            worst = max(worst, c["rel_max"])
            print(f"{arch}: logits {lg.shape}, reference max rel L2 {c['rel_max']:.2e}, "
                  f"argmax agree {100 * c['agree_frac']:.0f}%")
    fx.save(cases, llama_cpp.__version__, a.out)
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes, llama-cpp-python {llama_cpp.__version__})")
    if worst >= 1e-4:
        print(f"the reference is off by {worst:.2e}: do not commit this file", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
