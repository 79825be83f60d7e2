"""Does watching a sequence's KV map slow its decoding? Starts `pivot serve`,
then decodes the same long request (a ~1,000-token prompt, 128 new tokens,
greedy, ignore_eos) alternately unwatched and watched by the KV map's event
stream (GET /v1/kv/sequences/{id}/events, one snapshot every --interval-ms),
and reports the decode rate (tokens after the first / time after the first,
from the client's side) of each, median over --reps pairs.

  PIVOT_BIN=build/cli/pivot .venv/bin/python bench/kvmap_overhead.py \
      --policy mikv --reps 5 --interval-ms 250 100
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request

from bench_server import serve
PROMPT = "Summarize this: " + " ".join(
    f"Item {i} in the ledger is a crate of {i % 7 + 2} copper pipes shipped to the north depot."
    for i in range(45))


def watch(base, rid, interval_ms, counts):
    url = f"{base}/v1/kv/sequences/{rid}/events?interval_ms={interval_ms}"
    with urllib.request.urlopen(url, timeout=600) as r:
        for line in r:
            if line.startswith(b"data: {"):
                counts.append(len(line))


def cpu_s(pid):
    """CPU seconds (user + system) the server process has used so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one(base, policy, max_tokens, interval_ms, pid=None):
    """Decode rate (tok/s after the first token), snapshots received, their
    mean size, and the server's CPU ms per generated token."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": True, "kv_policy": policy,
            "stream_options": {"include_usage": True}}
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    counts, th, t_first, t_last, n = [], None, None, None, 0
    c0 = cpu_s(pid) if pid else 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if not line.startswith(b"data: {"):
                continue
            c = json.loads(line[6:])
            if interval_ms and th is None:
                th = threading.Thread(target=watch, args=(base, c["id"], interval_ms, counts))
                th.start()
            if c.get("choices") and c["choices"][0]["delta"].get("content"):
                t_last = time.perf_counter()
                t_first = t_first or t_last
            if c.get("usage"):
                n = c["usage"]["completion_tokens"]
    if th:
        th.join()
    cpu = (cpu_s(pid) - c0) * 1000 / n if pid else 0
    return ((n - 1) / (t_last - t_first), len(counts), (sum(counts) / len(counts) if counts else 0),
            cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="mikv")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--interval-ms", type=int, nargs="+", default=[250, 100])
    a = ap.parse_args()
    with serve("--ctx", "2048", threads=a.threads) as srv:  # PIVOT_BIN or the build's binary
        base, pid = srv.base, srv.proc.pid
        one(base, a.policy, 8, 0)  # warm-up
        rates, snaps, cpus = {}, {}, {}
        for _ in range(a.reps):  # interleaved, so drifts in machine load hit both
            for ms in [0] + a.interval_ms:
                r, k, size, cpu = one(base, a.policy, a.max_tokens, ms, pid)
                rates.setdefault(ms, []).append(r)
                snaps.setdefault(ms, []).append((k, size))
                cpus.setdefault(ms, []).append(cpu)
        base_rate = statistics.median(rates[0])
        base_cpu = statistics.median(cpus[0])
        print(f"policy {a.policy}, {a.max_tokens} new tokens after a ~1,000-token prompt, "
              f"{a.reps} reps, threads {a.threads}")
        print(f"{'watch':>12} {'median tok/s':>13} {'min..max':>16} {'vs unwatched':>13} "
              f"{'snapshots':>10} {'bytes/event':>12} {'CPU ms/token':>13} {'vs unwatched':>13}")
        for ms in [0] + a.interval_ms:
            med = statistics.median(rates[ms])
            k = statistics.median(x[0] for x in snaps[ms])
            size = statistics.median(x[1] for x in snaps[ms])
            name = "none" if ms == 0 else f"every {ms} ms"
            print(f"{name:>12} {med:13.2f} {min(rates[ms]):7.2f}..{max(rates[ms]):<7.2f} "
                  f"{100 * (med / base_rate - 1):+12.1f}% {k:10.0f} {size:12.0f} "
                  f"{statistics.median(cpus[ms]):13.2f} "
                  f"{100 * (statistics.median(cpus[ms]) / base_cpu - 1):+12.1f}%")


if __name__ == "__main__":
    main()
