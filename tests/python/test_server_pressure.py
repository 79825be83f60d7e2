"""KV on demand against the real `pivot serve` (engine/eng_mem.c): admission by
prompt bytes, preemption (recompute) with the same greedy tokens and an
unbroken stream, elastic compression to the floor only where allowed,
cancelling a preempted request, SIGTERM drain with preempted requests, and
the request-path fixes found with it (empty prompt, chunked 413).

Sizes: SmolLM2-135M holds 1.47 MB of FP16 KV per 64-token page, so with
--kv-memory 4600K three pages fit: two requests of ~110 tokens each must
preempt one of them once they pass 64 tokens. Tiny workloads (2 CPU cores)."""
from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from server_util import default_server, openai_client, raw_post, recv_all, serve_default, wait_until

PROMPTS = ["The history of the printing press begins",
           "A recipe for bread needs flour, water and",
           "The three laws of motion state that"]
N_OUT = 100
TIGHT = "4600K"  # 3.2 FP16 pages


@pytest.fixture(scope="module")
def tight():
    """A server where full must preempt: 3 FP16 pages for up to 4 sequences."""
    yield from serve_default("--ctx", "512", "--max-batch", "4", "--kv-memory", TIGHT)


def model_of(srv):
    return json.loads(srv.get("/v1/models")[2])["data"][0]["id"]


def body(prompt, **kw):
    return {"prompt": prompt, "max_tokens": N_OUT, "temperature": 0, "ignore_eos": True, **kw}


def complete(srv, **b):
    st, _, raw = srv.request("POST", "/v1/completions", b, timeout=300)
    assert st == 200, raw
    return json.loads(raw)


def concurrently(fns):
    out = [None] * len(fns)
    errs = []

    def run(i, f):
        try:
            out[i] = f()
        except Exception as e:  # noqa: BLE001 - re-raised below in the test thread
            errs.append(e)

    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for i, t in enumerate(ts):
        t.start()
        time.sleep(0.05)  # admission order = submission order; all overlap (a quiet machine
        # decodes 100 tokens in well under a second, so a longer gap let the first finish)
    for t in ts:
        t.join(300)
    assert not errs, errs
    return out


def kv_idle(srv):
    """Nothing held but the prefix cache's unused blocks (they count as free)."""
    m = srv.metrics()
    return (m["pivot:kv_cache_bytes_used"] == 0
            and m["pivot:kv_pool_used_bytes"] == m["pivot:prefix_cache_bytes"]
            and m["pivot:prefix_cache_bytes_in_use"] == 0
            and m["pivot:kv_cache_bytes_reserved"] == 0 and m["pivot:num_requests_running"] == 0
            and m["pivot:num_requests_waiting"] == 0)


def test_preempted_greedy_requests_equal_unpreempted(tight):
    p0 = tight.metrics()["pivot:num_preemptions_total"]
    got = concurrently([lambda p=p: complete(tight, **body(p)) for p in PROMPTS])
    pre = [g["usage"]["kv_cache"]["preemptions"] for g in got]
    assert max(pre) >= 1, f"nothing was preempted: {pre}"
    assert pre[0] == 0, "the oldest request is never preempted"
    assert tight.metrics()["pivot:num_preemptions_total"] >= p0 + max(pre)
    for p, g in zip(PROMPTS, got):
        alone = complete(tight, **body(p))
        assert alone["usage"]["kv_cache"]["preemptions"] == 0
        assert g["usage"]["completion_tokens"] == N_OUT
        assert g["choices"][0]["text"] == alone["choices"][0]["text"], p
        assert not g["usage"]["kv_cache"]["compressed"], "full was compressed"
    wait_until(lambda: kv_idle(tight), 10, "KV bytes back to 0")


def test_streams_of_preempted_requests_have_no_gap_or_duplicate(tight):
    client = openai_client(tight, timeout=300, api_key="x", max_retries=2)  # the SDK's default

    def stream(p):
        text, usage = [], None
        for ch in client.completions.create(model=model_of(tight), prompt=p, max_tokens=N_OUT, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}):
            if ch.choices:
                text.append(ch.choices[0].text)
            if ch.usage:
                usage = ch.usage
        return "".join(text), usage

    got = concurrently([lambda p=p: stream(p) for p in PROMPTS])
    assert max(u.model_extra["kv_cache"]["preemptions"] for _, u in got) >= 1
    for p, (text, usage) in zip(PROMPTS, got):
        assert usage.completion_tokens == N_OUT
        alone = complete(tight, **body(p))["choices"][0]["text"]
        assert text == alone, f"stream differs from the unpreempted text for {p!r}"
    wait_until(lambda: kv_idle(tight), 10, "KV bytes back to 0")


def test_cancelling_a_preempted_request_frees_everything(tight):
    p0 = tight.metrics()["pivot:num_preemptions_total"]
    first = raw_post(tight.port, "/v1/completions", body(PROMPTS[0], stream=True), timeout=300)
    first.recv(1)  # admitted and streaming: it is the older one
    second = raw_post(tight.port, "/v1/completions", body(PROMPTS[1], stream=True), timeout=300)
    tight.wait_metrics(lambda m: m["pivot:num_preemptions_total"] > p0
                       and m["pivot:num_requests_waiting"] >= 1, 120, "a preemption")
    second.close()  # the preempted one leaves while it waits
    out = recv_all(first).decode()
    first.close()
    assert "data: [DONE]" in out
    wait_until(lambda: kv_idle(tight), 20, "KV bytes and queues back to 0")
    m = tight.metrics()
    assert m["pivot:request_success_total:abort"] >= 1


@pytest.fixture(scope="module")
def elastic_srv():
    """mikv,budget=0.5 requests of ~300 tokens in a pool where three of them
    fit only if the later ones are compressed to the floor (probe below)."""
    yield from serve_default("--ctx", "512", "--max-batch", "4", "--kv-memory", "7M")


MIKV = {"kv_policy": "mikv,budget=0.5", "max_tokens": 280}


def test_elastic_compression_instead_of_preemption(elastic_srv):
    s = elastic_srv
    got = concurrently([lambda p=p: complete(s, **body(p, **MIKV)) for p in PROMPTS])
    kv = [g["usage"]["kv_cache"] for g in got]
    assert any(k["compressed"] for k in kv), f"no compression: {kv}"
    assert sum(k["preemptions"] for k in kv) == 0, f"elastic should have avoided it: {kv}"
    for k in kv:
        assert k["tokens_dropped"] == 0
        if k["compressed"]:
            # floor 0 = sinks 4 + recent 16: never below, and the budget went there
            assert k["tokens_high"] == 20, k
            assert k["elastic_tokens_demoted"] > 0 and k["elastic_bytes_saved"] > 0
    m = s.metrics()
    assert m["pivot:kv_elastic_compressions_total"] >= 1
    assert m["pivot:kv_elastic_saved_bytes_total"] > 0
    wait_until(lambda: kv_idle(s), 10, "KV bytes back to 0")


def test_opted_out_requests_are_never_compressed(elastic_srv):
    s = elastic_srv
    reqs = [body(PROMPTS[0], **MIKV, kv_elastic=False), body(PROMPTS[1], **MIKV, kv_elastic=False),
            body(PROMPTS[2], **MIKV, kv_elastic=False)]
    got = concurrently([lambda b=b: complete(s, **b) for b in reqs])
    kv = [g["usage"]["kv_cache"] for g in got]
    assert not any(k["compressed"] for k in kv), kv
    assert sum(k["preemptions"] for k in kv) >= 1, f"the pool should have forced preemption: {kv}"
    # full under the same pressure with elastic on: test_preempted_greedy_requests_equal_unpreempted
    st, _, raw = s.request("POST", "/v1/completions", {"prompt": "x", "kv_elastic": "yes"})
    assert st == 400 and json.loads(raw)["error"]["param"] == "kv_elastic"
    wait_until(lambda: kv_idle(s), 10, "KV bytes back to 0")


def test_sigterm_drain_waits_for_preempted_requests():
    with default_server("--ctx", "512", "--max-batch", "4", "--kv-memory", TIGHT) as s:
        socks = []
        # Sent back to back: both must be past one page while the other still
        # runs (4 pages in 3.2). A 0.3 s gap let the first finish before the
        # second grew on a quiet machine (CI, 2026-12-04), with no preemption.
        for p in PROMPTS[:2]:
            socks.append(raw_post(s.port, "/v1/completions", body(p), timeout=300))
            time.sleep(0.02)
        s.wait_metrics(lambda m: m["pivot:num_preemptions_total"] >= 1, 120, "a preemption")
        s.proc.send_signal(signal.SIGTERM)
        for sk in socks:
            out = recv_all(sk).decode()
            sk.close()
            assert out.startswith("HTTP/1.1 200"), out[:200]
            b = json.loads(out.split("\r\n\r\n", 1)[1])
            assert b["usage"]["completion_tokens"] == N_OUT
        assert s.proc.wait(timeout=60) == 0


def test_chat_without_max_tokens_runs_up_to_max_batch():
    """8 chat requests without max_tokens all run at once: admission by
    prompt, not by the whole context. Reserving the context (512 tokens =
    8 pages = 11.8 MB each) would have let 4 of them into 48 MB."""
    with default_server("--max-batch", "8", "--ctx", "512", "--kv-memory", "48M") as s:
        client = openai_client(s, timeout=300, api_key="x", max_retries=2)  # the SDK's default
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], int(s.metrics()["pivot:num_requests_running"]))
                time.sleep(0.05)

        w = threading.Thread(target=watch)
        w.start()

        def chat(i):
            return client.chat.completions.create(
                model=model_of(s), messages=[{"role": "user", "content": f"Write a short poem number {i}."}],
                temperature=0, extra_body={"min_tokens": 30})

        got = concurrently([lambda i=i: chat(i) for i in range(8)])
        stop.set()
        w.join(10)
        assert all(g.choices[0].message.content for g in got)
        assert peak[0] == 8, f"peak running {peak[0]}, expected all 8 at once"


def test_empty_prompt_continues_from_bos(tight):
    b = complete(tight, prompt="", max_tokens=4, temperature=0)
    assert b["usage"]["prompt_tokens"] == 1 and b["usage"]["completion_tokens"] == 4


def test_chunk_larger_than_max_body_is_refused_at_once(tight):
    sk = socket.create_connection(("127.0.0.1", tight.port), timeout=5)
    t0 = time.time()
    sk.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc")
    out = sk.recv(4096).decode()
    sk.close()
    assert out.startswith("HTTP/1.1 413"), out[:200]
    assert time.time() - t0 < 4, "the 413 waited for the request timeout"
