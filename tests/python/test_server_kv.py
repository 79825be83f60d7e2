"""`pivot serve` per-request KV policies, the KV page pool in /metrics, and
--device. The real binary on a loopback port; tiny workloads (2 CPU cores)."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from server_util import Server, pivot_path, REPO

MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# ~120 tokens, so that compressed policies have something to demote
LONG = ("The river wound through the valley past farms, mills and old stone bridges. " * 9).strip()


@pytest.fixture(scope="module")
def srv():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "4", "--kv-memory", "64M")
    yield s
    s.stop()


def complete(srv, **body):
    body = {"prompt": LONG, "max_tokens": 8, "temperature": 0, "ignore_eos": True, **body}
    st, _, b = srv.request("POST", "/v1/completions", body)
    return st, json.loads(b)


def test_two_concurrent_requests_with_different_policies(srv):
    out = {}

    def one(name, extra):
        out[name] = complete(srv, max_tokens=24, **extra)

    ts = [threading.Thread(target=one, args=("full", {})),
          threading.Thread(target=one, args=("mikv", {"kv_policy": "mikv,budget=0.25,lo-bits=4"})),
          threading.Thread(target=one, args=("sh", {"kv_policy": "scissorhands", "kv_budget": 40,
                                                   "kv_recent": 8}))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    kv = {}
    for name, (st, b) in out.items():
        assert st == 200, b
        kv[name] = b["usage"]["kv_cache"]
        assert b["usage"]["completion_tokens"] == 24
    assert kv["full"]["policy"] == "full" and kv["mikv"]["policy"] == "mikv"
    assert kv["sh"]["policy"] == "scissorhands"
    n = kv["full"]["tokens_high"]
    assert kv["full"]["tokens_low"] == 0 and kv["full"]["bytes_stored"] >= kv["full"]["bytes_fp16"]
    # same tokens, so the same FP16 size; the compressed ones store less
    assert kv["mikv"]["bytes_fp16"] == kv["full"]["bytes_fp16"] == kv["sh"]["bytes_fp16"]
    assert kv["mikv"]["tokens_low"] > 0 and kv["mikv"]["tokens_high"] < n
    assert kv["mikv"]["bytes_stored"] < kv["full"]["bytes_stored"]
    assert kv["sh"]["tokens_dropped"] > 0 and kv["sh"]["tokens_high"] <= 40
    assert kv["sh"]["bytes_stored"] < kv["full"]["bytes_stored"]
    m = srv.metrics()
    # what the pool still holds is the prefix cache's unused blocks (docs/API.md)
    assert m["pivot:kv_pool_used_bytes"] == m["pivot:prefix_cache_bytes"]
    assert m["pivot:kv_cache_bytes_used"] == 0 and m["pivot:prefix_cache_bytes_in_use"] == 0
    assert m["pivot:kv_pool_peak_bytes"] > 0
    assert m["pivot:kv_pool_limit_bytes"] >= 64 * 2**20


def test_full_equals_server_default_and_large_budget(srv):
    st0, b0 = complete(srv)
    st1, b1 = complete(srv, kv_policy="full")
    st2, b2 = complete(srv, kv_policy="mikv", kv_budget=100000)
    assert st0 == st1 == st2 == 200
    assert b0["choices"][0]["text"] == b1["choices"][0]["text"] == b2["choices"][0]["text"]
    assert b1["usage"]["kv_cache"] == b0["usage"]["kv_cache"]
    assert b2["usage"]["kv_cache"]["tokens_low"] == 0


@pytest.mark.parametrize("body,param", [
    ({"kv_lo_bits": 5, "kv_policy": "mikv"}, "kv_lo_bits"),
    ({"kv_lo_v_bits": 5, "kv_policy": "mikv"}, "kv_lo_v_bits"),
    ({"kv_budget": 0.25}, "kv_budget"),            # the server's full never demotes
    ({"kv_policy": "mikv", "kv_group": 24}, "kv_group"),  # 24 does not divide head_dim 64
    ({"kv_policy": "mikv", "kv_select": "bogus"}, "kv_select"),
    ({"kv_policy": "mikv", "kv_budget": [1]}, "kv_budget"),
    ({"kv_policy": "mikv", "kv_window": 1}, "kv_window"),
    ({"kv_policy": "mikv,budget=2.5"}, "kv_policy"),
    ({"kv_policy": "nonsense"}, "kv_policy"),
])
def test_knob_fields_validated(srv, body, param):
    st, b = complete(srv, **body)
    assert st == 400, b
    assert b["error"]["param"] == param and b["error"]["type"] == "invalid_request_error"


def test_knob_fields_applied(srv):
    st, b = complete(srv, kv_policy="mikv", kv_budget=0.5, kv_lo_bits=4, kv_key_balance=True)
    assert st == 200, b
    kv = b["usage"]["kv_cache"]
    assert kv["policy"] == "mikv" and kv["tokens_low"] > 0
    assert "budget=0.5" in kv["spec"] and "key-balance=1" in kv["spec"]
    st, b2 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits=4)
    assert st == 200 and b2["usage"]["kv_cache"]["tokens_high"] < kv["tokens_high"]
    assert "budget=0.25" in b2["usage"]["kv_cache"]["spec"]
    # separate key/value widths of the low tier: "4/2" or one side at a time
    st, b3 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits="4/2")
    st4, b4 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_k_bits=4, kv_lo_v_bits=2)
    assert st == st4 == 200, (b3, b4)
    assert "lo=4/2" in b3["usage"]["kv_cache"]["spec"] and "lo=4/2" in b4["usage"]["kv_cache"]["spec"]
    assert b3["usage"]["kv_cache"]["bytes_stored"] == b4["usage"]["kv_cache"]["bytes_stored"]
    assert b3["usage"]["kv_cache"]["bytes_stored"] < b2["usage"]["kv_cache"]["bytes_stored"]
    # rotation, 3-bit values and clipped ranges are request knobs too; 3-bit
    # values sit between the 2- and 4-bit ones in bytes
    st5, b5 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits="4/3", kv_rotate=True,
                       kv_clip=True)
    assert st5 == 200, b5
    kv5 = b5["usage"]["kv_cache"]
    assert "lo=4/3" in kv5["spec"] and "rotate=1,clip=1" in kv5["spec"], kv5
    assert b3["usage"]["kv_cache"]["bytes_stored"] < kv5["bytes_stored"] < b2["usage"]["kv_cache"]["bytes_stored"]
    # clipped ranges on the value records only: same tokens and bytes, and
    # only "values" besides a flag
    st14, b14 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits="4/3", kv_rotate=True,
                         kv_clip="values")
    assert st14 == 200, b14
    kv14 = b14["usage"]["kv_cache"]
    assert "rotate=1,clip=values" in kv14["spec"], kv14
    assert kv14["bytes_stored"] == kv5["bytes_stored"] and kv14["tokens_low"] == kv5["tokens_low"] > 0
    st15, b15 = complete(srv, kv_policy="mikv", kv_clip="keys")
    assert st15 == 400 and b15["error"]["param"] == "kv_clip", b15
    assert "clip must be 1 or 0 (or values)" in b15["error"]["message"], b15
    # how far the clipped ranges may shrink, per layer range: the same
    # tokens and bytes (only the ranges differ), described back; a floor
    # below 0.5 is refused by name
    st16, b16 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits="4/3", kv_rotate=True,
                         kv_clip="values", kv_clip_floor="0-14:0.8+15-29:0.5")
    assert st16 == 200, b16
    kv16 = b16["usage"]["kv_cache"]
    assert "clip=values" in kv16["spec"] and "clip-floor=0-14:0.8+15-29:0.5" in kv16["spec"], kv16
    assert kv16["bytes_stored"] == kv5["bytes_stored"] and kv16["tokens_low"] == kv5["tokens_low"]
    st17, b17 = complete(srv, kv_policy="mikv", kv_clip="values", kv_clip_floor=0.3)
    assert st17 == 400 and b17["error"]["param"] == "kv_clip_floor", b17
    assert "clip-floor must be a fraction in [0.5, 1]" in b17["error"]["message"], b17
    st18, b18 = complete(srv, kv_policy="mikv", kv_clip="values", kv_clip_floor="25-40:0.8")
    assert st18 == 400 and "clip-floor names layer 40, the model has 30 layers" in b18["error"]["message"], b18
    # per-layer widths: every layer at 2 bits stores fewer bytes than the
    # same policy at 4 bits; a layer the model lacks is refused
    st8, b8 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits=4, kv_layer_bits="0-29:2",
                       kv_heads=0)
    assert st8 == 200, b8
    kv8 = b8["usage"]["kv_cache"]
    assert "layer-bits=0-29:2/2" in kv8["spec"] and kv8["tokens_low"] > 0, kv8
    assert kv8["bytes_stored"] < b2["usage"]["kv_cache"]["bytes_stored"]
    # the preset's five copying heads come from the server's ranking, at
    # INT8 (or what kv_heads asks), after any explicit layer-bits
    top5 = "18-18.2:8/8+17-17.1:8/8+23-23.0:8/8+"
    assert f"layer-bits={top5}" in b2["usage"]["kv_cache"]["spec"], b2
    st10, b10 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits=4, kv_heads="2:4/2")
    assert st10 == 200, b10
    assert "layer-bits=18-18.2:4/2+17-17.1:4/2," in b10["usage"]["kv_cache"]["spec"], b10
    assert b10["usage"]["kv_cache"]["bytes_stored"] < b2["usage"]["kv_cache"]["bytes_stored"]
    st11, b11 = complete(srv, kv_policy="mikv", kv_heads=13)
    assert st11 == 400 and b11["error"]["param"] == "kv_heads", b11
    assert "heads must be" in b11["error"]["message"], b11
    # two-byte scales (the preset's): the same tokens in fewer bytes than
    # fp16 scales (kv_scale_bits 16); only 16 or 8
    st12, b12 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits=4, kv_scale_bits=16)
    assert st12 == 200, b12
    kv12, kv2 = b12["usage"]["kv_cache"], b2["usage"]["kv_cache"]
    assert "scale-bits=8" in kv2["spec"] and "scale-bits" not in kv12["spec"], (kv12, kv2)
    assert kv12["tokens_low"] == kv2["tokens_low"] > 0 and kv12["tokens_high"] == kv2["tokens_high"]
    assert kv12["bytes_stored"] > kv2["bytes_stored"], (kv12, kv2)
    st13, b13 = complete(srv, kv_policy="mikv", kv_scale_bits=4)
    assert st13 == 400 and b13["error"]["param"] == "kv_scale_bits", b13
    assert "scale-bits must be 16 or 8" in b13["error"]["message"], b13
    # value-norm (the preset's) ranks by attention x ||v||: how many tokens
    # stay and their bytes do not change (which ones do: test_kv_vnorm.c);
    # it weights accumulated attention only
    st19, b19 = complete(srv, kv_policy="mikv", kv_budget=0.25, kv_lo_bits=4, kv_value_norm=False)
    assert st19 == 200, b19
    kv19 = b19["usage"]["kv_cache"]
    assert "value-norm=1" in kv2["spec"] and "value-norm" not in kv19["spec"], kv19
    assert kv19["tokens_low"] == kv2["tokens_low"] > 0 and kv19["bytes_stored"] == kv2["bytes_stored"]
    st20, b20 = complete(srv, kv_policy="mikv", kv_select="persistence", kv_value_norm=True)
    assert st20 == 200 and "value-norm" not in b20["usage"]["kv_cache"]["spec"], b20
    st21, b21 = complete(srv, kv_policy="mikv", kv_value_norm="maybe")
    assert st21 == 400 and b21["error"]["param"] == "kv_value_norm", b21
    st9, b9 = complete(srv, kv_policy="mikv", kv_layer_bits="0-40:2")
    assert st9 == 400 and "layer 40" in b9["error"]["message"], b9
    # a bad value names its field; a knob with nothing to act on is no error
    st6, b6 = complete(srv, kv_policy="mikv", kv_rotate="sideways")
    assert st6 == 400 and b6["error"]["param"] == "kv_rotate", b6
    st7, b7 = complete(srv, kv_policy="mikv", kv_lo_bits=0, kv_hi_bits=16)
    assert st7 == 200 and "rotate=1" in b7["usage"]["kv_cache"]["spec"], b7


def test_pool_tracks_stored_bytes_while_streaming(srv):
    done = threading.Event()
    result = []

    def run():
        try:  # set done even when the request fails, or the loop below never ends
            result.append(complete(srv, max_tokens=120, kv_policy="mikv,budget=0.3"))
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    seen = 0
    deadline = time.time() + 120
    while not done.is_set():
        assert time.time() < deadline, "the streaming request did not finish in 120 s"
        m = srv.metrics()
        if m["pivot:num_requests_running"] >= 1 and m["pivot:kv_cache_bytes_used"] > 0:
            # one publication: the pool holds exactly the live sequences' bytes
            # (shared prefix blocks once) plus the prefix cache's unused blocks
            assert m["pivot:kv_pool_used_bytes"] == m["pivot:kv_cache_bytes_used"] + \
                m["pivot:prefix_cache_bytes"] - m["pivot:prefix_cache_bytes_in_use"]
            seen += 1
        time.sleep(0.02)
    t.join(timeout=30)
    assert result and result[0][0] == 200, result
    assert seen > 0
    m = srv.metrics()
    assert m["pivot:kv_pool_used_bytes"] == m["pivot:prefix_cache_bytes"]


def run_serve(*args, timeout=60):
    return subprocess.run([str(pivot_path()), "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_device_errors():
    if not pivot_path().is_file():
        pytest.skip("pivot binary missing")
    r = run_serve("--device", "gpu")
    assert r.returncode == 2 and "--device expects auto, cpu or cuda" in r.stderr
    r = run_serve("--device", "cuda", "--kv-policy", "mikv")
    assert r.returncode == 2 and "only the plain FP16 KV cache" in r.stderr
    if not MODEL.is_file():
        return
    probe = subprocess.run([str(pivot_path()), "info", "--model", str(MODEL)], capture_output=True,
                           text=True, timeout=60)
    if "cuda: 0 device" not in probe.stdout + probe.stderr:
        return  # a GPU host: the no-GPU error path does not apply
    r = run_serve("--model", str(MODEL), "--device", "cuda")
    assert r.returncode == 1 and "--device cuda" in r.stderr, r.stderr


def test_device_cpu_serves():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "256", "--device", "cpu")
    try:
        st, _, b = s.request("POST", "/v1/completions",
                             {"prompt": "The capital of France is", "max_tokens": 4,
                              "temperature": 0, "kv_policy": "mikv"})
        assert st == 200 and json.loads(b)["usage"]["kv_cache"]["policy"] == "mikv"
        s.proc.send_signal(signal.SIGTERM)
        assert "decoding on cpu" in s.output()
    finally:
        s.stop()


def test_requests_start_from_the_default_as_given():
    """A server whose default is mikv resolves its heads for its own cache,
    but a request's knobs apply to the default as given (heads unresolved):
    kv_heads and kv_lo_bits=0 act as on any other server. --rank-heads off
    leaves the heads uniform."""
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "2", "--kv-memory", "64M",
               "--kv-policy", "mikv")
    try:
        st, b = complete(s)
        assert st == 200, b
        top = "layer-bits=18-18.2:8/8+17-17.1:8/8+23-23.0:8/8+"
        assert top in b["usage"]["kv_cache"]["spec"], b
        st, b = complete(s, kv_heads=0)  # no heads: no layer-bits at all
        assert st == 200 and "layer-bits" not in b["usage"]["kv_cache"]["spec"], b
        st, b = complete(s, kv_heads="2:4/2")  # only the top two, at 4/2
        spec = b["usage"]["kv_cache"]["spec"]
        assert st == 200 and "layer-bits=18-18.2:4/2+17-17.1:4/2," in spec, b
        st, b = complete(s, kv_lo_bits=0)  # eviction: the heads knob has nothing to widen
        assert st == 200 and "layer-bits" not in b["usage"]["kv_cache"]["spec"], b
        assert b["usage"]["kv_cache"]["tokens_low"] == 0
    finally:
        s.stop()
    s = Server("--model", str(MODEL), "--ctx", "512", "--max-batch", "2", "--kv-memory", "64M",
               "--rank-heads", "off")
    try:
        st, b = complete(s, kv_policy="mikv")
        assert st == 200 and "layer-bits" not in b["usage"]["kv_cache"]["spec"], b
    finally:
        s.stop()
