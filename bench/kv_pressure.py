#!/usr/bin/env python3
"""KV on demand under load: N concurrent chat requests *without* max_tokens
(how the OpenAI SDKs send them) against `pivot serve`, one server per
configuration, one after the other.

For each configuration it reports: peak running requests (polled from
/metrics), throughput (output tokens/s over the run), TTFT and TPOT p50/p99
(streamed, per request), preemptions, elastic compressions and the bytes
they saved (from /metrics deltas), errors. A benchmark, not a test.

  .venv/bin/python bench/kv_pressure.py --suite default   # 32 and 64 short chats, default flags + --ctx 2048
  .venv/bin/python bench/kv_pressure.py --suite tight     # --kv-memory 44M, ~900-token prompts, max_tokens 128

Prompts are slices of the GPL-3 text (/usr/share/common-licenses/GPL-3) followed by a
question, so every request differs and the model answers in prose."""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from bench_server import MODEL, REPO, PeakWatch, client, metrics, serve

TEXT = Path("/usr/share/common-licenses/GPL-3").read_text()


TOPICS = ["the moon", "bread", "rivers", "chess", "volcanoes", "bees", "the violin", "glaciers",
          "paper", "trains", "tea", "owls", "bridges", "salt", "comets", "maps"]
ASKS = ["What is {}? Answer in two sentences.", "Give one fact about {}.",
        "Why do people like {}? Be brief.", "Describe {} in one sentence."]


def prompt(i: int, chars: int) -> str:
    if chars == 0:  # a short question, as a chat user would send
        return ASKS[(i // len(TOPICS)) % len(ASKS)].format(TOPICS[i % len(TOPICS)])
    start = (i * 997) % max(1, len(TEXT) - chars)
    return TEXT[start:start + chars] + "\n\nSummarize the text above in a few sentences."


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(binary: str, model: str, threads: str, flags: list[str], n: int, chars: int,
        policy: str | None, extra: dict) -> dict:
    with serve(*flags, binary=binary, model=model, threads=threads) as srv:
        base = srv.base
        sdk, name = client(base, timeout=1800)
        m0 = metrics(base)
        res, errs = [], []

        def one(i):
            t0 = time.time()
            first, toks = None, 0
            body = dict(extra)
            if policy:
                body["kv_policy"] = policy
            try:
                st = sdk.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": prompt(i, chars)}],
                    temperature=0, stream=True, stream_options={"include_usage": True},
                    extra_body=body)
                for ch in st:
                    if ch.choices and ch.choices[0].delta.content and first is None:
                        first = time.time()
                    if ch.usage:
                        toks = ch.usage.completion_tokens
                t1 = time.time()
                res.append((first - t0 if first else t1 - t0,
                            (t1 - first) / (toks - 1) if first and toks > 1 else 0, toks))
            except Exception as e:  # noqa: BLE001 - counted and reported
                errs.append(repr(e))

        with PeakWatch(base) as peak:
            t0 = time.time()
            ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.time() - t0
        m1 = metrics(base)
        d = {k: m1.get(k, 0) - m0.get(k, 0) for k in
             ("pivot:num_preemptions_total", "pivot:kv_elastic_compressions_total",
              "pivot:kv_elastic_saved_bytes_total", "pivot:kv_elastic_demoted_tokens_total")}
        ttft = [r[0] for r in res]
        tpot = [r[1] for r in res if r[1]]
        out_tok = sum(r[2] for r in res)
        return {"flags": " ".join(["--threads", threads, *flags]), "policy": policy or "(server)", "n": n,
                "extra": extra, "ok": len(res), "errors": len(errs), "error_samples": errs[:3],
                "peak_running": int(peak.peak), "wall_s": round(wall, 2),
                "output_tok_s": round(out_tok / wall, 1), "output_tokens": out_tok,
                "ttft_p50_ms": round(1e3 * pct(ttft, 0.5)), "ttft_p99_ms": round(1e3 * pct(ttft, 0.99)),
                "tpot_p50_ms": round(1e3 * pct(tpot, 0.5), 1),
                "tpot_p99_ms": round(1e3 * pct(tpot, 0.99), 1),
                "preemptions": int(d["pivot:num_preemptions_total"]),
                "elastic_compressions": int(d["pivot:kv_elastic_compressions_total"]),
                "elastic_tokens": int(d["pivot:kv_elastic_demoted_tokens_total"]),
                "elastic_bytes": int(d["pivot:kv_elastic_saved_bytes_total"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=str(REPO / "build" / "cli" / "pivot"))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--suite", choices=["default", "tight"], default="default")
    ap.add_argument("--threads", default=str(os.cpu_count() or 2))
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    rows = []
    if a.suite == "default":
        # default flags but --ctx 2048: a chat that loops would otherwise run
        # to the model's 8,192 tokens; reserving 2,048 tokens per request
        # (the old admission) still admits only 21 full requests in 1 GiB
        for n in (32, 64):
            for pol in ("full", "mikv"):
                rows.append(run(a.binary, a.model, a.threads, ["--ctx", "2048"], n, 0, pol, {}))
                print(json.dumps(rows[-1]), flush=True)
    else:
        # ~900-token prompts: two full requests (15 pages = 22.1 MB each) fit
        # 44M with the watermark and must preempt as they grow; max_tokens
        # bounds the run (answers to a long text otherwise run to --ctx)
        tight = ["--ctx", "2048", "--kv-memory", "44M", "--max-batch", "16"]
        for pol, el in (("full", True), ("mikv", False), ("mikv", True)):
            rows.append(run(a.binary, a.model, a.threads, tight, 16, 4000, pol,
                            {"kv_elastic": el, "max_tokens": 128}))
            print(json.dumps(rows[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
