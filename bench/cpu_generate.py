"""Prompt and decode speed of `pivot generate` vs llama.cpp (llama-cpp-python)
on the same GGUF, same thread count, same machine, alternating runs.

usage: .venv/bin/python bench/cpu_generate.py [--model PATH] [--threads 2]
                                               [--prompt-tokens 128] [--gen 128] [--reps 3]
Needs llama-cpp-python in .venv for the peer column (pip install llama-cpp-python);
without it only Pivot is measured. Greedy decoding, EOS ignored, so both
generate exactly --gen tokens."""
import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ap = argparse.ArgumentParser()
ap.add_argument("--model", default=str(REPO / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--pivot", default=os.environ.get("PIVOT_BIN", str(REPO / "build/cli/pivot")))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--prompt-tokens", type=int, default=128)
ap.add_argument("--gen", type=int, default=128)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()

# A prompt of exactly N tokens: repeat a sentence, then cut by token count.
text = "The quick brown fox jumps over the lazy dog while the river runs to the sea. " * 64
ids = subprocess.run([a.pivot, "tokenize", "--model", a.model, "--prompt", text],
                     capture_output=True, text=True, check=True).stdout.strip().split(",")
ids = [int(x) for x in ids[: a.prompt_tokens]]

try:
    from llama_cpp import Llama
    peer = Llama(a.model, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=1024,
                 n_batch=512, verbose=False)
except ImportError:
    peer = None


def run_pivot():
    r = subprocess.run([a.pivot, "generate", "--model", a.model, "--threads", str(a.threads),
                        "--prompt", PROMPT, "--max-tokens", str(a.gen), "--temperature", "0",
                        "--ignore-eos"], capture_output=True, text=True, check=True)
    m = re.search(r"prompt (\d+) tokens in ([\d.]+) ms.*decode ([\d.]+) ms for (\d+) steps", r.stderr)
    n_p, t_p, t_d, steps = int(m[1]), float(m[2]), float(m[3]), int(m[4])
    return n_p / t_p * 1e3, steps / t_d * 1e3


def run_peer():
    peer.reset()
    t0 = time.perf_counter()
    peer.eval(ids)
    t1 = time.perf_counter()
    tok = int(peer.scores[peer.n_tokens - 1].argmax())
    for _ in range(a.gen - 1):
        peer.eval([tok])
        tok = int(peer.scores[peer.n_tokens - 1].argmax())
    t2 = time.perf_counter()
    return len(ids) / (t1 - t0), (a.gen - 1) / (t2 - t1)


# Detokenize the id prefix through llama.cpp when available, else use the text cut by
# characters; Pivot reports the prompt length it actually used.
PROMPT = peer.detokenize(ids).decode() if peer else text[: a.prompt_tokens * 4]

res = {"pivot": [], "llama.cpp": []}
for _ in range(a.reps):
    res["pivot"].append(run_pivot())
    if peer:
        res["llama.cpp"].append(run_peer())

print(f"model {Path(a.model).name}, {a.threads} threads, prompt {len(ids)} tokens, "
      f"{a.gen} generated, median of {a.reps}")
print(f"{'engine':<10} {'prompt tok/s':>13} {'decode tok/s':>13}")
for k, v in res.items():
    if v:
        print(f"{k:<10} {statistics.median(x[0] for x in v):>13.1f} "
              f"{statistics.median(x[1] for x in v):>13.1f}")
if res["llama.cpp"]:
    pp = statistics.median(x[0] for x in res["pivot"]) / statistics.median(x[0] for x in res["llama.cpp"])
    dd = statistics.median(x[1] for x in res["pivot"]) / statistics.median(x[1] for x in res["llama.cpp"])
    print(f"{'ratio':<10} {pp:>13.2f} {dd:>13.2f}   (Pivot / llama.cpp)")
