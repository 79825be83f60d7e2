"""Automatic prefix caching against the real `pivot serve` (engine/eng_prefix.c,
cache/kv_prefix.c): greedy output identical with and without the cache (one
request, a repeated one, a multi-turn chat through the openai SDK, concurrent
requests sharing a prefix under memory pressure), hits counted in tokens,
the vLLM-named gauges the inference-gateway endpoint picker reads, equal to
Pivot's own, and KV bytes back to 0 with --prefix-cache off and after a flush.

Blocks are 64-token FP16 pages, and after the last whole one a sequence leaves
its tail (the tokens that did not fill a page, copied): a request of n prompt
tokens can reuse up to n - 1 of them (the last token is always computed).
Compressed policies keep snapshots at 64-token boundaries only."""
from __future__ import annotations

import json
import re
import threading

import openai
import pytest

from server_util import default_server, wait_until

BLOCK = 64
PARA = ("Ships carried grain, salt and timber along the coast, and every harbour kept a ledger "
        "of what arrived, what left and what was owed. ")


@pytest.fixture(scope="module")
def on():
    s = default_server("--ctx", "1024", "--max-batch", "4")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def off():
    s = default_server("--ctx", "1024", "--max-batch", "4", "--prefix-cache", "off")
    yield s
    s.stop()


LAST = {}  # the last response's usage


def complete(srv, prompt, n=16, **kw):
    st, _, raw = srv.request("POST", "/v1/completions",
                             {"prompt": prompt, "max_tokens": n, "temperature": 0, **kw},
                             timeout=300)
    assert st == 200, raw
    o = json.loads(raw)
    LAST["usage"] = o["usage"]
    return o["choices"][0]["text"], o["usage"]["prompt_tokens"]


def idle(srv):
    """Metrics once nothing runs (the gauges follow the decoder's steps)."""
    return srv.wait_metrics(lambda m: m["pivot:num_requests_running"] == 0
                            and m["pivot:prefix_cache_bytes_in_use"] == 0, 10, "an idle server")


def test_repeated_prompt_hits_whole_blocks_and_gives_the_same_tokens(on, off):
    prompt = "Ledger one. " + PARA * 12
    ref, n = complete(off, prompt)
    m0 = idle(on)
    cold, n1 = complete(on, prompt)
    m1 = idle(on)
    warm, _ = complete(on, prompt)
    # whole blocks and the tail after them: every token but the last
    assert LAST["usage"]["prompt_tokens_details"]["cached_tokens"] == n - 1
    m2 = idle(on)
    assert n1 == n and cold == ref and warm == ref, (ref, cold, warm)
    assert m1["pivot:prefix_cache_queries_total"] - m0["pivot:prefix_cache_queries_total"] == n
    assert m1["pivot:prefix_cache_hits_total"] == m0["pivot:prefix_cache_hits_total"]
    assert m2["pivot:prefix_cache_hits_total"] - m1["pivot:prefix_cache_hits_total"] == n - 1
    assert m2["pivot:prefix_cache_blocks"] >= (n - 1) // BLOCK


def test_cache_prompt_false_neither_reads_nor_counts(on):
    prompt = "Ledger two. " + PARA * 6
    complete(on, prompt)
    m0 = idle(on)
    complete(on, prompt, cache_prompt=False)
    complete(on, prompt, n=2, kv_policy="mikv", cache_prompt=False)
    m1 = idle(on)
    assert m1["pivot:prefix_cache_hits_total"] == m0["pivot:prefix_cache_hits_total"]
    assert m1["pivot:prefix_cache_queries_total"] == m0["pivot:prefix_cache_queries_total"]
    st, _, raw = on.request("POST", "/v1/completions", {"prompt": "x", "cache_prompt": "no"})
    assert st == 400 and b"cache_prompt" in raw


def test_compressed_policy_snapshots_hit_and_repeat_the_cold_output():
    """mikv: the prefill ends a call at the last block boundary and keeps a
    snapshot of the compressed state there; the same prompt again attaches it
    and computes the same tokens as the cold run (same call boundaries). The
    snapshots are all evictable (copied on attach) and flushed to 0 bytes."""
    srv = default_server("--ctx", "1024", "--max-batch", "2")
    try:
        prompt = "Ledger six. " + PARA * 12
        cold, n = complete(srv, prompt, kv_policy="mikv")
        assert LAST["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        m1 = idle(srv)
        assert m1["pivot:prefix_cache_bytes"] > 0 and m1["pivot:prefix_cache_blocks"] == 1
        assert m1["pivot:kv_pool_used_bytes"] == m1["pivot:prefix_cache_bytes"]
        warm, _ = complete(srv, prompt, kv_policy="mikv")
        hit = BLOCK * ((n - 1) // BLOCK)
        assert LAST["usage"]["prompt_tokens_details"]["cached_tokens"] == hit
        assert warm == cold, (cold, warm)
        m2 = idle(srv)
        assert m2["pivot:prefix_cache_hits_total"] - m1["pivot:prefix_cache_hits_total"] == hit
        # the same prompt under full is another cache (the policy seeds the chain)
        complete(srv, prompt, n=2)
        assert LAST["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        # a compressed snapshot of the prefix is smaller than full's pages of it
        m3 = idle(srv)
        full_bytes = m3["pivot:prefix_cache_bytes"] - m2["pivot:prefix_cache_bytes"]
        assert 0 < m2["pivot:prefix_cache_bytes"] < full_bytes / 2, (m2, full_bytes)
        # one system prompt, three questions: the second request publishes
        # where it leaves the first one's path, the third starts there
        head = "Ledger seven. " + PARA * 8
        got = []
        for q in ("Who kept the ledger?", "What did the ships carry?", "Where did they sail?"):
            # long questions: the first request's last boundary lies in its own
            complete(srv, head + (q + " ") * 12, n=2, kv_policy="mikv")
            got.append(LAST["usage"]["prompt_tokens_details"]["cached_tokens"])
        assert got[:2] == [0, 0] and got[2] >= 2 * BLOCK, got
        st, _, raw = srv.request("POST", "/v1/cache/flush", {})
        assert st == 202
        srv.wait_metrics(lambda m: m["pivot:kv_pool_used_bytes"] == 0
                         and m["pivot:prefix_cache_bytes"] == 0, 10, "a flushed cache")
    finally:
        srv.stop()


def test_compressed_policy_keeps_one_snapshot_of_an_answer():
    """mikv while it generates: a snapshot at every 64-token boundary of the
    answer (the next turn of a chat resends it), each replacing the one
    before (kv_seq_prefix_publish_latest): after 250 tokens the cache holds
    the prompt's snapshot and the answer's latest, not one per boundary, and
    the answer's is what a request resending it attaches."""
    srv = default_server("--ctx", "1024", "--max-batch", "2")
    try:
        prompt = "Ledger eight. " + PARA * 5
        st, _, raw = srv.request("POST", "/v1/completions",
                                 {"prompt": prompt, "max_tokens": 250, "temperature": 0,
                                  "ignore_eos": True, "kv_policy": "mikv"}, timeout=300)
        assert st == 200, raw
        o = json.loads(raw)
        n, text = o["usage"]["prompt_tokens"], o["choices"][0]["text"]
        assert o["usage"]["completion_tokens"] == 250
        # the cache held n + 249 tokens; boundaries past the prompt: at least 3
        assert (n + 249) // BLOCK - n // BLOCK >= 3, n
        m = idle(srv)
        assert m["pivot:prefix_cache_blocks"] == 2, m["pivot:prefix_cache_blocks"]
        # the answer resent: its latest snapshot, past every replaced one
        complete(srv, prompt + text + " And then?", n=2, kv_policy="mikv")
        got = LAST["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert got > BLOCK * (n // BLOCK) + 2 * BLOCK, (got, n)
    finally:
        srv.stop()


def test_multi_turn_chat_reuses_the_history(on, off):
    def chat(srv, turns):
        c = openai.OpenAI(base_url=srv.base + "/v1", api_key="x", max_retries=0)
        model = json.loads(srv.get("/v1/models")[2])["data"][0]["id"]
        msgs = [{"role": "system", "content": "You answer briefly. " + PARA * 4}]
        out, hits = [], []
        for q in turns:
            msgs.append({"role": "user", "content": q})
            h0 = srv.metrics()["pivot:prefix_cache_hits_total"]
            r = c.chat.completions.create(model=model, messages=msgs, max_tokens=8,
                                          temperature=0)
            text = r.choices[0].message.content
            msgs.append({"role": "assistant", "content": text})
            out.append(text)
            hits.append(idle(srv)["pivot:prefix_cache_hits_total"] - h0)
            assert r.usage.prompt_tokens_details.cached_tokens == hits[-1]
        return out, hits

    turns = ["What did the ships carry?", "Where was it written down?", "Who owed what?"]
    got, hits = chat(on, turns)
    ref, ref_hits = chat(off, turns)
    assert got == ref
    assert ref_hits == [0] * len(turns)
    # every later turn resends the system prompt (~120 tokens) and history
    assert all(h >= BLOCK for h in hits[1:]), hits


def _labels(text, name):
    m = re.search(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", text, re.M)
    assert m, f"{name} missing"
    return dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))), float(m.group(2))


def test_vllm_gauges_match_pivot_names(on):
    complete(on, "Ledger three. " + PARA * 3)
    idle(on)
    raw = on.get("/metrics")[2].decode()
    m = on.metrics()
    for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
                 "prefix_cache_queries_total", "prefix_cache_hits_total"):
        assert m["vllm:" + name] == m["pivot:" + name], name
        assert f"# TYPE vllm:{name} " in raw
    assert 0 <= m["vllm:kv_cache_usage_perc"] <= 1
    lab, v = _labels(raw, "vllm:cache_config_info")
    assert v == 1
    assert lab["block_size"] == str(BLOCK)
    page = m["pivot:prefix_cache_bytes"] / m["pivot:prefix_cache_blocks"]
    assert int(lab["num_gpu_blocks"]) == int(m["pivot:kv_cache_bytes_capacity"] // page)
    assert lab["enable_prefix_caching"] == "True"


def test_shared_prefix_under_pressure_same_tokens(off):
    """Three concurrent requests share a 3-block prefix on a server whose KV
    memory holds ~7 pages: they share the blocks, some are preempted (their
    recompute may hit the cache), and each gives the tokens it gives alone."""
    tight = default_server("--ctx", "1024", "--max-batch", "3", "--kv-memory", "10600K")
    try:
        base = "Ledger four. " + PARA * 7
        prompts = [base + f"Entry {k}: the ship named {w} carried" for k, w in
                   enumerate(["Heron", "Gannet", "Puffin"])]
        refs = [complete(off, p, n=24)[0] for p in prompts]
        complete(tight, base, n=1)  # the prefix, cached
        got = [None] * 3

        def run(i):
            got[i] = complete(tight, prompts[i], n=24)[0]

        ts = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert got == refs
        m = idle(tight)
        assert m["pivot:prefix_cache_hits_total"] >= 3 * BLOCK * 2
        assert m["pivot:kv_pool_peak_bytes"] <= m["pivot:kv_pool_limit_bytes"]
        assert m["pivot:kv_pool_used_bytes"] == m["pivot:prefix_cache_bytes"]
    finally:
        tight.stop()


def test_kv_bytes_back_to_zero_after_flush_and_when_off(on, off):
    complete(on, "Ledger five. " + PARA * 5)
    m = idle(on)
    assert m["pivot:prefix_cache_bytes"] > 0
    assert m["pivot:kv_pool_used_bytes"] == m["pivot:prefix_cache_bytes"]
    assert m["pivot:kv_cache_bytes_used"] == 0
    st, _, raw = on.request("POST", "/v1/cache/flush", {})
    assert st == 202 and json.loads(raw)["cached_bytes"] > 0
    on.wait_metrics(lambda m: m["pivot:kv_pool_used_bytes"] == 0
                    and m["pivot:prefix_cache_bytes"] == 0
                    and m["pivot:prefix_cache_blocks"] == 0, 10, "a flushed cache")
    complete(off, "Ledger five. " + PARA * 5)
    m = idle(off)
    assert m["pivot:kv_pool_used_bytes"] == 0 and m["pivot:prefix_cache_bytes"] == 0
    assert m["pivot:prefix_cache_hits_total"] == 0
    assert "enable_prefix_caching=\"False\"" in off.get("/metrics")[2].decode()
