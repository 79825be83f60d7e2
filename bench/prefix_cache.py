#!/usr/bin/env python3
"""Automatic prefix caching under two workloads, prefix cache on vs off (and
llama.cpp's llama-server with its slot prompt cache when a binary is given),
one server at a time, same GGUF, same threads. A benchmark, not a test.

  multiturn  C conversations at once, T turns each; every turn resends the
             system prompt and the whole history (what chat clients do), so
             without a cache the prompt, and TTFT, grow with the turn
  sysprompt  N requests, K at a time, sharing one long system prompt
             (~1,500 tokens) + ~100 distinct tokens each

Per configuration: TTFT p50/p99 (streamed chat completions, first content
chunk), TTFT p50 per turn (multiturn), output tokens/s over the workload,
and the server's prefix-cache hits (/metrics) where it has them.

  .venv/bin/python bench/prefix_cache.py [--workload multiturn|sysprompt|both]
      [--llama-server PATH] [--threads 2] [--json OUT]"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "python"))
from server_util import free_port  # noqa: E402
from bench_server import client, metrics  # noqa: E402


MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = Path("/usr/share/common-licenses/GPL-3").read_text()
QUESTIONS = ["What is this text about?", "Who does it protect?", "Name one obligation it sets.",
             "What happens if someone breaks it?", "Summarize it in five words.",
             "Is it long?", "Who wrote it?", "What does 'convey' mean here?"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Srv:
    def __init__(self, kind, args, threads, binary=None):
        self.port = free_port()
        self.kind = kind
        if kind == "pivot":
            cmd = [str(REPO / "build" / "cli" / "pivot"), "serve", "--model", str(MODEL),
                   "--port", str(self.port), "--threads", str(threads), *args]
        else:
            cmd = [binary, "-m", str(MODEL), "--port", str(self.port), "-t", str(threads),
                   "-tb", str(threads), *args]
        self.log = open(f"/tmp/prefix_bench_{kind}_{self.port}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        t0 = time.time()
        while time.time() - t0 < 120:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{cmd} did not start")
        self.client, self.model = client(self.base)

    def hits(self):
        if self.kind != "pivot":
            return None
        return metrics(self.base).get("pivot:prefix_cache_hits_total")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def chat(self, msgs, max_tokens):
        """(ttft seconds, output text, output tokens)"""
        t0 = time.time()
        ttft, parts, n = None, [], 0
        stream = self.client.chat.completions.create(
            model=self.model, messages=msgs, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True})
        for ch in stream:
            if ch.choices and ch.choices[0].delta.content:
                if ttft is None:
                    ttft = time.time() - t0
                parts.append(ch.choices[0].delta.content)
            if ch.usage:
                n = ch.usage.completion_tokens
        return (ttft if ttft is not None else time.time() - t0), "".join(parts), n


def multiturn(srv, convs, turns, max_tokens):
    ttft = [[] for _ in range(turns)]
    out_tokens = [0]
    lock = threading.Lock()

    def conv(c):
        start = 3000 + c * 2500
        msgs = [{"role": "system", "content": "You answer questions about this text.\n\n" +
                 TEXT[start:start + 1100]}]
        for t in range(turns):
            msgs.append({"role": "user", "content": QUESTIONS[(c + t) % len(QUESTIONS)]})
            dt, text, n = srv.chat(msgs, max_tokens)
            msgs.append({"role": "assistant", "content": text})
            with lock:
                ttft[t].append(dt)
                out_tokens[0] += n

    t0 = time.time()
    th = [threading.Thread(target=conv, args=(c,)) for c in range(convs)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    wall = time.time() - t0
    flat = [x for t in ttft for x in t]
    return {"ttft_p50": pct(flat, 50), "ttft_p99": pct(flat, 99),
            "ttft_p50_by_turn": [pct(t, 50) for t in ttft],
            "tokens_per_s": out_tokens[0] / wall, "wall_s": wall}


def sysprompt(srv, n, conc, max_tokens):
    system = "You are a careful assistant. Reference text:\n\n" + TEXT[:6200]
    ttft, out_tokens, lock, nxt = [], [0], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            start = 20000 + i * 523
            user = TEXT[start:start + 380] + "\n\n" + QUESTIONS[i % len(QUESTIONS)]
            dt, _, k = srv.chat([{"role": "system", "content": system},
                                 {"role": "user", "content": user}], max_tokens)
            with lock:
                ttft.append(dt)
                out_tokens[0] += k

    t0 = time.time()
    th = [threading.Thread(target=worker) for _ in range(conc)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    wall = time.time() - t0
    return {"ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99),
            "tokens_per_s": out_tokens[0] / wall, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="both", choices=["multiturn", "sysprompt", "both"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--convs", type=int, default=3)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--llama-server", help="a llama-server binary (its slot prompt cache)")
    ap.add_argument("--configs", default="pivot-full-on,pivot-full-off,pivot-mikv-on,pivot-mikv-off")
    ap.add_argument("--json")
    a = ap.parse_args()
    slots = max(a.convs, a.concurrency)
    cfgs = {
        "pivot-full-on": ("pivot", ["--ctx", "4096", "--max-batch", str(slots)]),
        "pivot-full-off": ("pivot", ["--ctx", "4096", "--max-batch", str(slots),
                                     "--prefix-cache", "off"]),
        "pivot-mikv-on": ("pivot", ["--ctx", "4096", "--max-batch", str(slots),
                                    "--kv-policy", "mikv"]),
        "pivot-mikv-off": ("pivot", ["--ctx", "4096", "--max-batch", str(slots),
                                     "--kv-policy", "mikv", "--prefix-cache", "off"]),
        "llama-server": ("llama", ["-np", str(slots), "-c", str(4096 * slots),
                                   "--cache-reuse", "256"]),
    }
    names = [n for n in a.configs.split(",") if n] + (["llama-server"] if a.llama_server else [])
    res = {}
    for name in names:
        kind, args = cfgs[name]
        srv = Srv(kind, args, a.threads, a.llama_server)
        try:
            srv.chat([{"role": "user", "content": "Hi"}], 4)  # warm-up, not measured
            r = {}
            h0 = srv.hits()
            if a.workload in ("multiturn", "both"):
                r["multiturn"] = multiturn(srv, a.convs, a.turns, a.max_tokens)
            h1 = srv.hits()
            if a.workload in ("sysprompt", "both"):
                r["sysprompt"] = sysprompt(srv, a.requests, a.concurrency, a.max_tokens)
            h2 = srv.hits()
            if h0 is not None:
                r["hits"] = {"multiturn": h1 - h0, "sysprompt": h2 - h1}
            res[name] = r
            print(name, json.dumps(r, indent=1), flush=True)
        finally:
            srv.stop()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
