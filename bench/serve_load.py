"""Load `pivot serve` at fixed concurrency with the openai SDK and report
requests/s and output tokens/s (vLLM bench serve's definitions: output
throughput = sum of output tokens / wall time), and the most requests the
server ran at once (its /metrics).

  .venv/bin/python bench/serve_load.py --base http://127.0.0.1:8080/v1 \
      --concurrency 1 4 16 --requests 32 --max-tokens 32
  .venv/bin/python bench/serve_load.py --serve [--threads 2]   # starts its own
"""
from __future__ import annotations

import argparse
import threading
import time

from bench_server import PeakWatch, client, serve


def run(client, model, conc, n_req, max_tokens):
    lock = threading.Lock()
    todo = list(range(n_req))
    toks, ttfts = [], []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            t0 = time.perf_counter()
            first = None
            n = 0
            for c in client.completions.create(model=model, prompt=f"Write a story, part {i}:",
                                               max_tokens=max_tokens, temperature=0.8, seed=i,
                                               stream=True, stream_options={"include_usage": True},
                                               extra_body={"ignore_eos": True}):
                if c.choices and first is None:
                    first = time.perf_counter() - t0
                if c.usage:
                    n = c.usage.completion_tokens
            with lock:
                toks.append(n)
                ttfts.append(first or 0)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    ttfts.sort()
    return n_req / dt, sum(toks) / dt, ttfts[len(ttfts) // 2], dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--api-key", default="none")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--serve", action="store_true",
                    help="start a pivot serve of the default model (PIVOT_BIN) instead of --base")
    ap.add_argument("--threads", default="2", help="with --serve")
    a = ap.parse_args()
    if a.serve:
        with serve("--max-batch", str(max(a.concurrency)), threads=a.threads) as srv:
            load(srv.base, a)
    else:
        load(a.base, a)


def load(base, a):
    sdk, model = client(base, timeout=600, api_key=a.api_key)
    print(f"model {model}, {a.requests} requests x {a.max_tokens} output tokens (ignore_eos)")
    print("concurrency  req/s   out tok/s  median TTFT  wall s  peak running")
    for c in a.concurrency:
        with PeakWatch(base.rstrip("/").removesuffix("/v1")) as peak:
            rps, tps, ttft, dt = run(sdk, model, c, a.requests, a.max_tokens)
        print(f"{c:11d}  {rps:5.2f}  {tps:9.1f}  {ttft * 1e3:8.0f} ms  {dt:6.1f}  {peak.peak:12.0f}")


if __name__ == "__main__":
    main()
