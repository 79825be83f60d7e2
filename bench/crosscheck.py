"""Cross-check `pivot bench` against an independent client: the official
openai SDK in threads, measuring with vLLM bench serve's definitions (TTFT =
send -> first chunk with choices, ITL = gaps between such chunks, TPOT =
(E2E - TTFT) / (output tokens - 1), output throughput = sum of usage
completion_tokens / duration). Both clients send the same prompts (a JSONL
file written here) to the same server, alternating, `--rounds` times each.

  .venv/bin/python bench/crosscheck.py --base http://127.0.0.1:8080 \
      --concurrency 1 4 --num-prompts 16 --input-len 64 --output-len 32
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parent.parent
WORDS = "the of and to in is that for it as was with be by on not he this are or".split()


def sdk_run(client, model, prompts, conc, out_len):
    lock = threading.Lock()
    todo = list(range(len(prompts)))
    rows = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            t0 = time.perf_counter()
            first = last = None
            itl, n = [], 0
            for c in client.completions.create(model=model, prompt=prompts[i], max_tokens=out_len,
                                               temperature=0, stream=True,
                                               stream_options={"include_usage": True},
                                               extra_body={"ignore_eos": True}):
                now = time.perf_counter()
                if c.choices:
                    if first is None:
                        first = now - t0
                    else:
                        itl.append(now - last)
                    last = now
                if c.usage:
                    n = c.usage.completion_tokens
            e2e = time.perf_counter() - t0
            with lock:
                rows.append((first, e2e, n, itl))

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dur = time.perf_counter() - t0
    ttft = [r[0] for r in rows]
    tpot = [(r[1] - r[0]) / (r[2] - 1) for r in rows if r[2] > 1]
    itl = [g for r in rows for g in r[3]]
    return {"output_throughput": sum(r[2] for r in rows) / dur,
            "request_throughput": len(rows) / dur,
            "mean_ttft_ms": statistics.mean(ttft) * 1e3,
            "median_ttft_ms": statistics.median(ttft) * 1e3,
            "mean_tpot_ms": statistics.mean(tpot) * 1e3,
            "mean_itl_ms": statistics.mean(itl) * 1e3,
            "mean_e2el_ms": statistics.mean(r[1] for r in rows) * 1e3}


def pivot_run(pivot, base, model, ds, n, conc, out_len):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([pivot, "bench", "--url", base, "--model", model, "--dataset", ds,
                    "--num-prompts", str(n), "--concurrency", str(conc), "--output-len",
                    str(out_len), "--ignore-eos", "--json", out], check=True,
                   stdout=subprocess.DEVNULL)
    d = json.loads(Path(out).read_text())
    os.unlink(out)
    return d


KEYS = ["output_throughput", "request_throughput", "mean_ttft_ms", "median_ttft_ms",
        "mean_tpot_ms", "mean_itl_ms", "mean_e2el_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key", default="none")
    ap.add_argument("--pivot", default=os.environ.get("PIVOT_BIN",
                                                      str(REPO / "build/cli/pivot")))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base + "/v1", api_key=a.api_key, max_retries=0,
                           timeout=600)
    model = client.models.list().data[0].id
    rng = random.Random(a.seed)
    prompts = [" ".join(rng.choice(WORDS) for _ in range(a.input_len))
               for _ in range(a.num_prompts)]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}) + "\n")
        ds = f.name
    print(f"model {model}; {a.num_prompts} prompts x {a.input_len} words, {a.output_len} "
          f"output tokens (ignore_eos), greedy; {a.rounds} alternating rounds per client")
    print(f"{'conc':>4} {'client':<12}" + "".join(f"{k:>20}" for k in KEYS))
    for c in a.concurrency:
        res = {"pivot bench": [], "openai SDK": []}
        for _ in range(a.rounds):
            res["pivot bench"].append(pivot_run(a.pivot, a.base, model, ds, a.num_prompts, c,
                                                a.output_len))
            res["openai SDK"].append(sdk_run(client, model, prompts, c, a.output_len))
        for name, runs in res.items():
            vals = [statistics.mean(r[k] for r in runs) for k in KEYS]
            print(f"{c:>4} {name:<12}" + "".join(f"{v:>20.2f}" for v in vals))
    os.unlink(ds)


if __name__ == "__main__":
    main()
