#!/usr/bin/env python3
"""Decode speed with a json_schema grammar vs without, on the same prompts.

Starts `pivot serve` (the default model), then for each prompt and round
sends the same chat request twice, once free and once with
response_format json_schema (alternating which goes first, so drifting load
on a shared machine hits both alike), one request at a time, streamed.
Decode tok/s of one request = (completion tokens - 1) / (last chunk - first
chunk): prefill and the first token are left out, the grammar's mask cost
(walks on cache misses, the mask itself) is in. Free runs use ignore_eos so
they decode as long as the constrained ones; every pair is cut to the same
max_tokens.

  .venv/bin/python bench/structured_speed.py [--pivot build/cli/pivot] \
      [--rounds 2] [--max-tokens 64] [--threads 2]

Prints one line per request and the medians and their ratio."""
from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

from bench_server import MODEL, REPO, serve

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "kind": {"enum": ["person", "animal", "thing"]},
        "about": {"type": "string"},
    },
    "required": ["name", "age", "tags", "kind", "about"],
    "additionalProperties": False,
}
PROMPTS = ["Describe a cat as JSON.", "Describe the Eiffel Tower as JSON.",
           "Describe a teacher as JSON.", "Describe a bicycle as JSON."]


def one(base, prompt, max_tokens, constrained):
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if constrained:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "x", "schema": SCHEMA}}
    else:
        body["ignore_eos"] = True
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t_first = t_last = None
    tokens = 0
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ev.get("choices") and ev["choices"][0]["delta"].get("content"):
                t_last = time.perf_counter()
                t_first = t_first or t_last
    if tokens < 2 or t_last is None or t_last <= t_first:
        return tokens, None
    return tokens, (tokens - 1) / (t_last - t_first)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pivot", default=str(REPO / "build" / "cli" / "pivot"))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    speeds = {False: [], True: []}
    with serve("--ctx", "1024", binary=a.pivot, model=a.model, threads=a.threads) as srv:
        one(srv.base, "Warm up.", 4, True)  # builds the vocabulary's byte table once
        for rnd in range(a.rounds):
            for i, p in enumerate(PROMPTS):
                order = (False, True) if (rnd + i) % 2 == 0 else (True, False)
                for constrained in order:
                    n, tps = one(srv.base, p, a.max_tokens, constrained)
                    tag = "json_schema" if constrained else "free"
                    print(f"{tag:12s} {n:4d} tokens  {tps or 0:7.1f} tok/s  {p}")
                    if tps:
                        speeds[constrained].append(tps)
    free, cons = statistics.median(speeds[False]), statistics.median(speeds[True])
    print(f"median decode tok/s: free {free:.1f}, json_schema {cons:.1f}, "
          f"ratio {cons / free:.3f}")


if __name__ == "__main__":
    main()
