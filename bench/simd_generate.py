"""`pivot generate` prompt and decode speed at two CPU kernel levels in one
run: PIVOT_SIMD=<base> (default avx2) against the build's own choice
(PIVOT_SIMD unset: avx512vnni on a CPU with AVX512-VNNI), alternating the
order every round so that the load of a shared machine hits both alike.

usage: .venv/bin/python bench/simd_generate.py [--model PATH] [--threads 2] [--base-env VAR=VAL]
           [--prompt-chars 580] [--gen 128] [--reps 5] [--base avx2]
PIVOT_BIN picks the binary. Greedy, EOS ignored: every run generates --gen
tokens. Prints each run, then medians and the ratio default / base."""
import argparse
import os
import re
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ap = argparse.ArgumentParser()
ap.add_argument("--model", default=str(REPO / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--pivot", default=os.environ.get("PIVOT_BIN", str(REPO / "build/cli/pivot")))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--prompt-chars", type=int, default=580)
ap.add_argument("--gen", type=int, default=128)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--base", default="avx2")
ap.add_argument("--base-env", default=None,
                help="VAR=VALUE for the base runs instead of PIVOT_SIMD=--base, "
                     "e.g. PIVOT_PREFETCH=0 (the other runs leave VAR unset)")
a = ap.parse_args()
if a.base_env:
    BASE_VAR, BASE_VAL = a.base_env.split("=", 1)
    a.base = a.base_env
else:
    BASE_VAR, BASE_VAL = "PIVOT_SIMD", a.base

TEXT = ("The quick brown fox jumps over the lazy dog while the river runs to the sea. " * 200)
PROMPT = TEXT[: a.prompt_chars]


def run(level):
    env = dict(os.environ)
    env.pop("PIVOT_SIMD", None)
    env.pop(BASE_VAR, None)
    if level != "default":
        env[BASE_VAR] = BASE_VAL
    r = subprocess.run([a.pivot, "generate", "--model", a.model, "--threads", str(a.threads),
                        "--prompt", PROMPT, "--max-tokens", str(a.gen), "--temperature", "0",
                        "--ignore-eos"], capture_output=True, text=True, check=True, env=env)
    m = re.search(r"prompt (\d+) tokens in ([\d.]+) ms.*decode ([\d.]+) ms for (\d+) steps", r.stderr)
    n_p, t_p, t_d, steps = int(m[1]), float(m[2]), float(m[3]), int(m[4])
    return n_p, n_p / t_p * 1e3, steps / t_d * 1e3


levels = [a.base, "default"]
res = {lv: [] for lv in levels}
n_prompt = 0
for i in range(a.reps):
    for lv in (levels if i % 2 == 0 else levels[::-1]):
        n_prompt, p, d = run(lv)
        res[lv].append((p, d))
        print(f"round {i} {lv:<8} prompt {p:7.1f} tok/s  decode {d:6.1f} tok/s", flush=True)

med = {lv: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
       for lv, v in res.items()}
print(f"\n{Path(a.model).name}, {a.threads} threads, prompt {n_prompt} tokens, {a.gen} generated, "
      f"median of {a.reps}, alternating")
print(f"{BASE_VAR:<10} {'prompt tok/s':>13} {'decode tok/s':>13}")
for lv in levels:
    print(f"{lv:<10} {med[lv][0]:>13.1f} {med[lv][1]:>13.1f}")
print(f"{'ratio':<10} {med['default'][0] / med[a.base][0]:>13.3f} "
      f"{med['default'][1] / med[a.base][1]:>13.3f}")
# per-round ratios (each round's pair ran back to back): their median is
# less sensitive to load that drifts over the whole run
rp = [d[0] / b[0] for b, d in zip(res[a.base], res["default"])]
rd = [d[1] / b[1] for b, d in zip(res[a.base], res["default"])]
print(f"{'paired':<10} {statistics.median(rp):>13.3f} {statistics.median(rd):>13.3f}"
      "   (median of per-round ratios)")
