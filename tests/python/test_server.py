"""`pivot serve` end to end: the real binary on a loopback port, driven by the
official openai SDK, raw HTTP and signals. Keep workloads tiny (2 CPU cores)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from server_util import Server, pivot_path, raw_post, recv_all, recv_until, REPO

openai = pytest.importorskip("openai")
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct.Q4_1"
KEY = "sk-test-123"


@pytest.fixture(scope="module")
def srv():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--api-key", KEY, "--ctx", "512", "--max-body", "65536",
               "--max-batch", "16")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    return openai.OpenAI(base_url=srv.base + "/v1", api_key=KEY, max_retries=0, timeout=60)


def auth():
    return {"Authorization": f"Bearer {KEY}"}


# ---- the SDK ----

def test_completions_sdk(client):
    r = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8,
                                  temperature=0)
    assert r.object == "text_completion" and r.model == NAME
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 8
    kv = r.usage.model_extra["kv_cache"]
    assert kv["policy"] == "full" and kv["bytes_fp16"] > 0 and kv["bytes_stored"] >= kv["bytes_fp16"]
    assert kv["tokens_high"] == 5 + 8 - 1 and kv["tokens_low"] == 0 and kv["tokens_dropped"] == 0


def test_completions_stream_include_usage(client):
    chunks = list(client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    # without include_usage there is no usage chunk
    chunks = list(client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=4,
                                            temperature=0, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == text[:len("".join(c.choices[0].text for c in chunks))]


def test_chat_sdk_and_stream(client):
    msgs = [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    full = r.choices[0].message.content
    assert r.choices[0].message.role == "assistant" and full.strip()
    g = subprocess.run([str(pivot_path()), "generate", "--model", str(MODEL), "--chat", "--system",
                        msgs[0]["content"], "--prompt", msgs[1]["content"], "--max-tokens", "16",
                        "--temperature", "0", "--threads", "2"], capture_output=True, text=True,
                       timeout=120)
    assert g.returncode == 0 and g.stdout.rstrip("\n") == full  # same template, same tokens
    assert "<|im_end|>" not in full and "<|im_start|>" not in full
    chunks = list(client.chat.completions.create(model=NAME, messages=msgs, max_tokens=16,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens


def test_greedy_matches_pivot_generate(client):
    prompt = "The history of the Roman Empire"
    r = client.completions.create(model=NAME, prompt=prompt, max_tokens=24, temperature=0,
                                  extra_body={"ignore_eos": True})
    g = subprocess.run([str(pivot_path()), "generate", "--model", str(MODEL), "--prompt", prompt,
                        "--max-tokens", "24", "--temperature", "0", "--threads", "2",
                        "--ignore-eos"], capture_output=True, text=True, timeout=120)
    assert g.returncode == 0, g.stderr
    assert g.stdout.rstrip("\n") == r.choices[0].text


def test_sampling_fields_logprobs_stop_n(client):
    r = client.completions.create(model=NAME, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0,
                                  stop=[" 7"], logprobs=2, echo=True, n=2, seed=5, user="u",
                                  extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.0,
                                              "min_tokens": 1, "unknown_knob": 1})
    assert len(r.choices) == 2
    for ch in r.choices:
        assert ch.text.startswith("1, 2, 3, 4,") and " 7" not in ch.text
        assert ch.finish_reason == "stop"
        assert len(ch.logprobs.tokens) == len(ch.logprobs.token_logprobs) >= 1
        # echo: the prompt's first token has nothing to be scored from
        assert ch.logprobs.token_logprobs[0] is None and ch.logprobs.top_logprobs[0] is None
        # logprobs=2: exactly two alternatives per scored token, never fewer
        assert all(len(t) == 2 for t in ch.logprobs.top_logprobs[1:]), ch.logprobs.top_logprobs
        assert all(lp <= 0 for lp in ch.logprobs.token_logprobs[1:])
    # stop_token_ids: stop at the first generated token
    first = client.completions.create(model=NAME, prompt="Hello", max_tokens=1, temperature=0)
    tid = client.post("/../tokenize", cast_to=object, body={"prompt": first.choices[0].text,
                                                           "add_special_tokens": False})["tokens"][0]
    r = client.completions.create(model=NAME, prompt="Hello", max_tokens=8, temperature=0,
                                  extra_body={"stop_token_ids": [tid]})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    c = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    lp = c.choices[0].logprobs.content
    assert len(lp) >= 1 and len(lp[0].top_logprobs) == 3 and lp[0].logprob <= 0


def test_sixteen_concurrent_streams(client, srv):
    results: dict[int, tuple[int, int]] = {}

    def one(i):
        n_text, usage = 0, -1
        for c in client.completions.create(model=NAME, prompt=f"Story number {i}:", max_tokens=12,
                                           temperature=0.8, seed=i, stream=True,
                                           stream_options={"include_usage": True},
                                           extra_body={"ignore_eos": True}):
            if c.choices:
                n_text += 1
            if c.usage:
                usage = c.usage.completion_tokens
        results[i] = (n_text, usage)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert len(results) == 16
    assert all(u == 12 and n >= 1 for n, u in results.values()), results
    m = srv.metrics()
    assert m["pivot:num_requests_running"] == 0 and m["pivot:kv_cache_bytes_used"] == 0


def test_disconnect_mid_stream_frees_memory(srv):
    before = srv.metrics().get("pivot:request_success_total:abort", 0)
    s = raw_post(srv.port, "/v1/completions", {"model": NAME, "prompt": "Count forever:",
                                                "max_tokens": 400, "stream": True,
                                                "ignore_eos": True},
                 headers=auth(), timeout=30)
    recv_until(s, lambda got: got.count(b"data: ") >= 3)
    m = srv.metrics()
    assert m["pivot:num_requests_running"] == 1 and m["pivot:kv_cache_bytes_used"] > 0
    s.close()
    m = srv.wait_metrics(lambda m: m["pivot:num_requests_running"] == 0, 10,
                         "the disconnected stream to leave the batch")
    assert m["pivot:kv_cache_bytes_used"] == 0 and m["pivot:kv_cache_bytes_reserved"] == 0
    assert m["pivot:request_success_total:abort"] == before + 1
    assert m["pivot:generation_tokens_total"] > 0


# ---- plain endpoints ----

def test_health_models_metrics_tokenize(srv):
    st, _, b = srv.get("/health")
    assert st == 200 and json.loads(b)["status"] == "ok"
    st, _, b = srv.get("/v1/models", headers=auth())
    assert st == 200 and json.loads(b)["data"][0]["id"] == NAME
    st, h, b = srv.get("/metrics")
    assert st == 200 and h["Content-Type"].startswith("text/plain")
    text = b.decode()
    for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
                 "prompt_tokens_total", "generation_tokens_total", "kv_cache_bytes_saved",
                 "time_to_first_token_seconds_bucket", "time_per_output_token_seconds_count",
                 "e2e_request_latency_seconds_sum"):
        assert "pivot:" + name in text
    st, _, b = srv.request("POST", "/tokenize", {"prompt": "The capital of France is"}, headers=auth())
    toks = json.loads(b)["tokens"]
    assert st == 200 and len(toks) == 5
    st, _, b = srv.request("POST", "/detokenize", {"tokens": toks}, headers=auth())
    assert st == 200 and json.loads(b)["prompt"] == "The capital of France is"


def test_metrics_token_counters_equal_usage(client, srv):
    """After N requests the counters moved by exactly the responses' usage
    (and N requests, all ok): not only present, but right."""
    before = srv.metrics()
    usages = []
    r = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=6,
                                  temperature=0)
    usages.append(r.usage)
    r = client.completions.create(model=NAME, prompt="Once upon a time there was", max_tokens=5,
                                  temperature=0.7, seed=3, extra_body={"ignore_eos": True})
    usages.append(r.usage)
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi!"}],
                                       max_tokens=7, temperature=0)
    usages.append(r.usage)
    chunks = list(client.completions.create(model=NAME, prompt="Stream me", max_tokens=4,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}))
    usages.append(chunks[-1].usage)
    after = srv.metrics()
    d = lambda k: after.get(k, 0) - before.get(k, 0)
    assert all(u.prompt_tokens > 0 and u.completion_tokens > 0 for u in usages), usages
    assert d("pivot:prompt_tokens_total") == sum(u.prompt_tokens for u in usages)
    assert d("pivot:generation_tokens_total") == sum(u.completion_tokens for u in usages)
    assert d("pivot:request_success_total:ok") == len(usages)
    assert d("pivot:request_success_total:abort") == 0
    assert d("pivot:request_success_total:error") == 0
    assert d("pivot:e2e_request_latency_seconds_count") == len(usages)
    assert d("pivot:time_to_first_token_seconds_count") == len(usages)


def test_keepalive_pipelining_and_chunked_body(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    body = b'{"prompt": "Hi", "max_tokens": 2, "temperature": 0}'
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    req = (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
           b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.sendall(req)
    data = recv_all(s)
    s.close()
    assert data.count(b"HTTP/1.1 200 OK") == 3, data
    assert b'"text_completion"' in data


# ---- errors: the envelope and the code ----

def err(st, b):
    e = json.loads(b)["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"]
    return st, e


def test_error_statuses(srv):
    post = lambda path, body, **kw: err(*srv.request("POST", path, body, headers={**auth(), **kw.get("h", {})})[::2])
    st, e = post("/v1/completions", b"{not json")
    assert st == 400 and e["code"] == "invalid_json" and e["type"] == "invalid_request_error"
    st, e = post("/v1/completions", {"prompt": "x", "temperature": "hot"})
    assert st == 400 and e["param"] == "temperature"
    st, e = post("/v1/completions", {"prompt": "x", "top_p": 1.5})
    assert st == 400 and e["param"] == "top_p"
    st, e = post("/v1/chat/completions", {"messages": "hi"})
    assert st == 400 and e["param"] == "messages"
    st, e = post("/v1/completions", {"prompt": "word " * 400, "max_tokens": 200})
    assert st == 400 and e["code"] == "context_length_exceeded" and "512" in e["message"]
    st, e = post("/v1/completions", {"prompt": "x", "kv_policy": "nonsense"})
    assert st == 400 and e["param"] == "kv_policy"
    st, e = post("/v1/completions", {"prompt": "x", "model": "gpt-4"})
    assert st == 404 and e["code"] == "model_not_found"
    st, h, b = srv.request("POST", "/v1/completions", {"prompt": "x"}, headers={"Authorization": "Bearer nope"})
    st, e = err(st, b)
    assert st == 401 and e["type"] == "authentication_error"
    st, h, b = srv.request("POST", "/v1/completions", {"prompt": "x"})
    assert st == 401
    st, _, b = srv.get("/nope")
    st, e = err(st, b)
    assert st == 404
    # a path longer than the router's buffer (found by fuzz/http: it indexed past it)
    for long_path in ("/v1/" + "a" * 292 + "/", "/" + "b" * 400 + "?x=1", "/health" + "/" * 300):
        st, _, b = srv.get(long_path)
        st, e = err(st, b)
        assert st == 404 and "no route" in e["message"]
    st, _, b = srv.get("/health/")
    assert st == 200
    st, h, b = srv.get("/v1/completions", headers=auth())
    st, e = err(st, b)
    assert st == 405 and h.get("Allow") == "POST"
    st, h, b = srv.request("POST", "/v1/completions", b"prompt=x",
                           headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"})
    st, e = err(st, b)
    assert st == 415
    st, h, b = srv.request("POST", "/v1/completions", {"prompt": "x" * 70000}, headers=auth())
    st, e = err(st, b)
    assert st == 413


def test_queue_full_gives_429():
    s = Server("--model", str(MODEL), "--max-batch", "1", "--max-queue", "1")
    try:
        body = {"prompt": "Go", "max_tokens": 60, "ignore_eos": True}
        out = []
        ts = [threading.Thread(target=lambda: out.append(s.request("POST", "/v1/completions", body)))
              for _ in range(2)]
        for t in ts:
            t.start()
        s.wait_metrics(lambda m: m["pivot:num_requests_running"] == 1 and
                       m["pivot:num_requests_waiting"] == 1, 10,
                       "one request running and one waiting")
        st, h, b = s.request("POST", "/v1/completions", body)
        st, e = err(st, b)
        assert st == 429 and e["type"] == "rate_limit_error" and h.get("Retry-After")
        for t in ts:
            t.join(timeout=60)
        assert [o[0] for o in out] == [200, 200]
    finally:
        s.stop()


def test_sigterm_drains_and_exits_zero():
    s = Server("--model", str(MODEL), "--drain-timeout", "30")
    try:
        sock = raw_post(s.port, "/v1/completions",
                        {"prompt": "Tell me", "max_tokens": 24, "stream": True, "ignore_eos": True,
                         "stream_options": {"include_usage": True}}, timeout=60)
        got = recv_until(sock, lambda got: b"data: " in got)
        s.proc.send_signal(signal.SIGTERM)
        got += recv_all(sock)
        assert b"data: [DONE]" in got
        assert b'"completion_tokens":24' in got
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2)
    finally:
        s.stop()
