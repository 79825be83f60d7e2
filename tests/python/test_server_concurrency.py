"""`pivot serve` under concurrency: what one request gets must not depend on
what else is in the batch or the queue. The real binary on a loopback port,
the default model; workloads are tiny (2 shared CPU cores).

- the same prompts, at temperature 0 and at temperature > 0 with a fixed seed
  per request, sent one at a time and then 16 at once, give the same text per
  prompt. The prompts are distinct, so a row of logits sampled into the wrong
  sequence (or one sequence's sampler state used for another) shows as a
  changed text, not only as a wrong token count;
- admission by KV bytes: a request that can never fit --kv-memory is a 400;
  several that fit alone but not together all complete, with the same text as
  alone, some having waited in the queue;
- a request cancelled while queued (its client went away) leaves the queue,
  is counted nowhere, and the server keeps serving;
- min_tokens keeps EOS and stop_token_ids from ending a choice early."""
from __future__ import annotations

import json
import threading
import time

import pytest

from server_util import Server, pivot_path, raw_post, recv_until, REPO

MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TOPICS = ["the sea", "a red fox", "old trains", "winter bread", "a quiet library", "the moon",
          "copper wire", "mountain goats", "a jazz band", "the desert", "paper boats",
          "a lighthouse", "green tea", "city pigeons", "a broken clock", "summer rain"]
PROMPTS = [f"Write one sentence about {t}:" for t in TOPICS]
N_TOK = 12


def need_model():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")


@pytest.fixture(scope="module")
def srv():
    need_model()
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "16")
    yield s
    s.stop()


def complete(srv, body, timeout=120):
    st, _, b = srv.request("POST", "/v1/completions", body, timeout=timeout)
    assert st == 200, b
    return json.loads(b)


def stream_text(srv, body, timeout=120):
    """The text of a streamed completion, read off the SSE chunks, and its usage."""
    s = raw_post(srv.port, "/v1/completions",
                 {**body, "stream": True, "stream_options": {"include_usage": True}},
                 timeout=timeout)
    try:
        got = recv_until(s, lambda g: b"data: [DONE]" in g)
    finally:
        s.close()
    text, usage = "", None
    for line in got.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        c = json.loads(line[6:])
        if c["choices"]:
            text += c["choices"][0]["text"]
        if c.get("usage"):
            usage = c["usage"]
    return text, usage


def all_at_once(fn, items):
    """Runs fn(item) for every item in its own thread, all released together
    by a barrier; returns the results in item order."""
    out: dict[int, object] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(len(items))

    def one(i, item):
        gate.wait(timeout=30)
        try:
            out[i] = fn(item)
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    ts = [threading.Thread(target=one, args=(i, it)) for i, it in enumerate(items)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "a request thread hung"
    if errors:
        raise errors[0]
    return [out[i] for i in range(len(items))]


class PeakWatcher:
    """Polls /metrics in the background; keeps the peaks of running and
    waiting requests, and of reserved KV bytes."""

    def __init__(self, srv):
        self.srv, self.stop_ev = srv, threading.Event()
        self.running = self.waiting = self.reserved = 0.0
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop_ev.is_set():
            try:
                m = self.srv.metrics()
            except OSError:
                time.sleep(0.01)
                continue
            self.running = max(self.running, m["pivot:num_requests_running"])
            self.waiting = max(self.waiting, m["pivot:num_requests_waiting"])
            self.reserved = max(self.reserved, m["pivot:kv_cache_bytes_reserved"])
            time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=10)
        return self


def body_for(i, sampled):
    b = {"prompt": PROMPTS[i], "max_tokens": N_TOK, "ignore_eos": True}
    return {**b, "temperature": 0.9, "top_p": 0.95, "seed": 1000 + i} if sampled else \
        {**b, "temperature": 0}


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_sixteen_at_once_equal_one_at_a_time(srv, sampled):
    alone = [complete(srv, body_for(i, sampled)) for i in range(16)]
    texts = [r["choices"][0]["text"] for r in alone]
    assert all(r["usage"]["completion_tokens"] == N_TOK for r in alone)
    # distinct prompts give distinct texts, so a swap between rows is visible
    assert len(set(texts)) == 16, texts

    # half streamed, half not: the two paths share the batch
    def one(i):
        if i % 2:
            return stream_text(srv, body_for(i, sampled))
        r = complete(srv, body_for(i, sampled))
        return r["choices"][0]["text"], r["usage"]

    watch = PeakWatcher(srv)
    together = all_at_once(one, list(range(16)))
    watch.stop()
    for i, (text, usage) in enumerate(together):
        assert usage["completion_tokens"] == N_TOK, (i, usage)
        assert text == texts[i], f"prompt {i} ({PROMPTS[i]!r}) alone {texts[i]!r}, batched {text!r}"
    assert watch.running > 1, "the 16 requests never shared a batch"
    m = srv.metrics()
    assert m["pivot:num_requests_running"] == 0 and m["pivot:kv_cache_bytes_used"] == 0


# SmolLM2-135M's FP16 KV cache takes 1,474,560 bytes per page of 64 tokens
# (measured: usage.kv_cache.bytes_stored of any sequence up to 64 tokens), so
# 3 MiB admits two such sequences at a time and a 205-token one never.
KV_SMALL = "3M"
PAGE = 1474560


@pytest.fixture(scope="module")
def small():
    need_model()
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "8", "--kv-memory", KV_SMALL)
    yield s
    s.stop()


def test_request_larger_than_kv_memory_is_400(small):
    st, _, b = small.request("POST", "/v1/completions",
                             {"prompt": PROMPTS[0], "max_tokens": 200, "ignore_eos": True})
    e = json.loads(b)["error"]
    assert st == 400 and e["code"] == "kv_memory_exceeded", (st, e)
    assert e["type"] == "invalid_request_error" and str(3 * 2**20) in e["message"], e
    # and the server is unharmed: a request that fits runs
    r = complete(small, {"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0})
    assert r["usage"]["completion_tokens"] >= 1


def test_admission_by_kv_bytes_queues_then_completes(small):
    # prompt ~9 tokens + 40 new: one page each; two fit in 3 MiB, five do not
    bodies = [{"prompt": PROMPTS[i], "max_tokens": 40, "temperature": 0, "ignore_eos": True}
              for i in range(5)]
    alone = [complete(small, b) for b in bodies]
    assert all(r["usage"]["kv_cache"]["bytes_stored"] == PAGE for r in alone), \
        [r["usage"]["kv_cache"] for r in alone]
    watch = PeakWatcher(small)
    together = all_at_once(lambda b: complete(small, b), bodies)
    watch.stop()
    for a, t in zip(alone, together):
        assert t["choices"][0]["text"] == a["choices"][0]["text"]
        assert t["usage"]["completion_tokens"] == 40
    assert watch.waiting >= 1, "no request ever waited for KV memory"
    assert watch.running <= 2, f"{watch.running} requests admitted into 3 MiB of KV"
    assert watch.reserved <= 3 * 2**20
    m = small.metrics()
    assert m["pivot:num_requests_waiting"] == 0 and m["pivot:kv_cache_bytes_reserved"] == 0


def test_cancel_while_queued():
    """One sequence slot: a long stream runs, a second request queues behind
    it, and its client goes away. The queued request leaves the queue at once,
    never reaches the engine (no outcome, no tokens counted), the running one
    is undisturbed, and the server serves on. The runner is long (480 tokens)
    so that a fast machine cannot finish it before the checks, and is closed
    by the test, so that a slow one does not wait for it."""
    need_model()
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "1")
    try:
        tokens = lambda text: len(json.loads(s.request("POST", "/tokenize", {"prompt": text})[2])
                                  ["tokens"])
        before = s.metrics()
        runner = raw_post(s.port, "/v1/completions",
                          {"prompt": PROMPTS[1], "max_tokens": 480, "temperature": 0,
                           "ignore_eos": True, "stream": True}, timeout=60)
        recv_until(runner, lambda g: b"data: " in g)
        queued_prompt = " ".join(PROMPTS[4:8])  # a length of its own, to show if counted
        queued = raw_post(s.port, "/v1/completions",
                          {"prompt": queued_prompt, "max_tokens": 40, "ignore_eos": True},
                          timeout=60)
        s.wait_metrics(lambda m: m["pivot:num_requests_waiting"] == 1, 10,
                       "the second request to queue behind the first")
        queued.close()  # the client goes away while its request waits
        m = s.wait_metrics(lambda m: m["pivot:num_requests_waiting"] == 0, 10,
                           "the cancelled request to leave the queue")
        assert m["pivot:num_requests_running"] == 1, "the running stream was disturbed"
        got = recv_until(runner, lambda g: g.count(b"data: ") >= 3)
        assert b"[DONE]" not in got
        runner.close()
        s.wait_metrics(lambda m: m["pivot:num_requests_running"] == 0, 10,
                       "the closed stream to leave the batch")
        # the server keeps serving, the same answer twice
        body = {"prompt": PROMPTS[2], "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        r, r2 = complete(s, body), complete(s, body)
        assert r["choices"][0]["text"] == r2["choices"][0]["text"]
        m = s.metrics()
        d = lambda k: m.get(k, 0) - before.get(k, 0)
        # the queued request never reached the engine: no outcome, no prompt
        # tokens; the runner is one abort, the last two are ok
        assert d("pivot:request_success_total:ok") == 2
        assert d("pivot:request_success_total:abort") == 1
        assert d("pivot:request_success_total:error") == 0
        assert d("pivot:prompt_tokens_total") == tokens(PROMPTS[1]) + 2 * tokens(PROMPTS[2]), \
            (d("pivot:prompt_tokens_total"), tokens(queued_prompt))
        assert m["pivot:num_requests_waiting"] == 0 and m["pivot:kv_cache_bytes_reserved"] == 0
    finally:
        s.stop()


def test_min_tokens_holds_off_eos_and_stop_ids(srv):
    chat = lambda **kw: json.loads(srv.request("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "Say hi."}], "temperature": 0,
        "max_tokens": 64, **kw})[2])
    r = chat()
    k = r["usage"]["completion_tokens"]
    assert r["choices"][0]["finish_reason"] == "stop" and k < 60, r  # ends on EOS by itself
    r = chat(min_tokens=k + 4)
    assert r["usage"]["completion_tokens"] >= k + 4, r
    # the greedy first token as a stop id: without min_tokens it ends at once
    first = complete(srv, {"prompt": PROMPTS[3], "max_tokens": 1, "temperature": 0})
    st, _, b = srv.request("POST", "/tokenize", {"prompt": first["choices"][0]["text"],
                                                 "add_special_tokens": False})
    tid = json.loads(b)["tokens"][0]
    body = {"prompt": PROMPTS[3], "max_tokens": 8, "temperature": 0, "stop_token_ids": [tid]}
    r = complete(srv, body)
    assert r["choices"][0]["finish_reason"] == "stop" and r["usage"]["completion_tokens"] == 1
    r = complete(srv, {**body, "min_tokens": 3, "logprobs": 1})
    n = r["usage"]["completion_tokens"]
    assert n >= 3, r
    # the stop id was masked for the first 3 tokens: its piece is not among them
    pieces = r["choices"][0]["logprobs"]["tokens"]
    assert len(pieces) == n and first["choices"][0]["text"] not in pieces[:3], pieces
    # after min_tokens the stop id ends the choice again (or max_tokens does)
    fin = r["choices"][0]["finish_reason"]
    assert fin == "length" and n == 8 or fin == "stop" and first["choices"][0]["text"] == pieces[-1]
