"""The KV map endpoints of `pivot serve` (/v1/kv/sequences, /{id}, /{id}/events),
/v1/kv/presets, /v1/server/stats and the page at "/", against the real binary:
the tiers a sequence reports add up to usage.kv_cache's counts for the same
request; unknown ids are 404; --api-key protects them; --no-webui."""
from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest

from server_util import Server, pivot_path, REPO

MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LONG = ("The river wound through the valley past farms, mills and old stone bridges. " * 12).strip()
KEY = "sekrit-kvmap"


@pytest.fixture(scope="module")
def srv():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "1024", "--max-batch", "4", "--kv-memory", "256M",
               "--webui-show-text")
    yield s
    s.stop()


def rle_counts(rle: str) -> dict[str, int]:
    out = {"H": 0, "L": 0, "D": 0, "N": 0}
    for t, n in re.findall(r"([NHLD])(\d+)", rle):
        out[t] += int(n)
    return out


def stream_chat(srv, body, on_id=None):
    """Streams a chat completion; returns (request id, usage)."""
    body = {"messages": [{"role": "user", "content": LONG}], "max_tokens": 16, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}, **body}
    req = urllib.request.Request(srv.base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    rid, usage = None, None
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: {"):
                continue
            c = json.loads(line[6:])
            if rid is None:
                rid = c["id"]
                if on_id:
                    on_id(rid)
            usage = c.get("usage") or usage
    return rid, usage


def check_tiers_match(seq, kv):
    assert seq["n_layers"] > 0 and len(seq["layers"]) == seq["n_layers"]
    for layer in seq["layers"]:
        assert len(layer["heads"]) == seq["n_kv_heads"]
        for h in layer["heads"]:
            c = rle_counts(h["rle"])
            assert c["N"] == 0
            # every (layer, head) holds the same counts: the usage's, per head
            assert (c["H"], c["L"], c["D"]) == (kv["tokens_high"], kv["tokens_low"],
                                               kv["tokens_dropped"]), (layer["layer"], h["head"])
    assert seq["usage"]["tokens_high"] == kv["tokens_high"]
    assert seq["usage"]["bytes_stored"] == kv["bytes_stored"]


@pytest.mark.parametrize("policy", ["full", "mikv", "scissorhands"])
def test_finished_sequence_tiers_add_up_to_usage(srv, policy):
    rid, usage = stream_chat(srv, {"kv_policy": policy})
    kv = usage["kv_cache"]
    st, _, b = srv.get(f"/v1/kv/sequences/{rid}")
    assert st == 200, b
    seq = json.loads(b)
    assert seq["status"] == "finished" and seq["policy"] == policy
    assert seq["n_tokens"] == kv["tokens_high"] + kv["tokens_low"] + kv["tokens_dropped"]
    check_tiers_match(seq, kv)
    if policy == "mikv":
        assert kv["tokens_low"] > 0 and seq["bits"]["low_k"] > 0
    if policy == "scissorhands":
        assert kv["tokens_dropped"] > 0
    # text only because this server runs with --webui-show-text
    assert len(seq["tokens"]) == seq["n_tokens"]
    ids = [x["id"] for x in json.loads(srv.get("/v1/kv/sequences")[2])["data"]]
    assert rid in ids


def test_layers_report_their_own_low_tier_widths(srv):
    rid, usage = stream_chat(srv, {"kv_policy": "mikv", "kv_layer_bits": "0-4:2/4+29:8/4", "kv_heads": 0})
    kv = usage["kv_cache"]
    assert kv["tokens_low"] > 0, kv
    st, _, b = srv.get(f"/v1/kv/sequences/{rid}")
    assert st == 200, b
    seq = json.loads(b)
    check_tiers_match(seq, kv)
    widths = [(layer["low_k"], layer["low_v"]) for layer in seq["layers"]]
    assert widths[:5] == [(2, 4)] * 5 and widths[29] == (8, 4), widths
    assert set(widths[5:29]) == {(seq["bits"]["low_k"], seq["bits"]["low_v"])} == {(4, 3)}
    for layer in seq["layers"]:  # every head carries its layer's widths
        assert {(h["low_k"], h["low_v"]) for h in layer["heads"]} == {(layer["low_k"], layer["low_v"])}


def test_preset_keeps_the_copying_heads_at_int8(srv):
    """The mikv preset's heads knob, resolved with the ranking the server
    made at load: the five KV heads `pivot heads` ranks first (SmolLM2-135M)
    store INT8 low tokens, every other head the preset's K4/V3."""
    rid, usage = stream_chat(srv, {"kv_policy": "mikv"})
    kv = usage["kv_cache"]
    assert kv["tokens_low"] > 0, kv
    st, _, b = srv.get(f"/v1/kv/sequences/{rid}")
    assert st == 200, b
    layers = json.loads(b)["layers"]
    heads = {(L["layer"], h["head"]): (h["low_k"], h["low_v"]) for L in layers for h in L["heads"]}
    top = {(18, 2), (17, 1), (23, 0), (20, 2), (23, 2)}
    assert {h for h, w in heads.items() if w == (8, 8)} == top, heads
    assert {w for h, w in heads.items() if h not in top} == {(4, 3)}, heads


def test_layer_range_leaves_the_copying_heads_at_int8(srv):
    """kv_layer_bits over the layers of the copying heads (17, 18, 20, 23)
    sets the other heads there; the five ranked heads keep INT8, and one
    named by its index takes that entry's widths instead."""
    rid, usage = stream_chat(srv, {"kv_policy": "mikv", "kv_layer_bits": "15-29:3/2+18.2:4/4"})
    assert usage["kv_cache"]["tokens_low"] > 0, usage
    assert "layer-bits=15-29:3/2+18-18.2:4/4+17-17.1:8/8+" in usage["kv_cache"]["spec"], usage
    st, _, b = srv.get(f"/v1/kv/sequences/{rid}")
    assert st == 200, b
    layers = json.loads(b)["layers"]
    heads = {(L["layer"], h["head"]): (h["low_k"], h["low_v"]) for L in layers for h in L["heads"]}
    ranked = {(17, 1), (23, 0), (20, 2), (23, 2)}
    assert {h for h, w in heads.items() if w == (8, 8)} == ranked, heads
    assert heads[(18, 2)] == (4, 4), heads
    assert {w for (layer, head), w in heads.items()
            if layer >= 15 and (layer, head) not in ranked | {(18, 2)}} == {(3, 2)}, heads
    assert {w for (layer, _), w in heads.items() if layer < 15} == {(4, 3)}, heads


def test_heads_report_their_own_low_tier_widths(srv):
    """layer-bits for one KV head: the layer no longer has one width (no
    layer-level low_k), each head says its own."""
    rid, usage = stream_chat(srv, {"kv_policy": "mikv", "kv_layer_bits": "18.2:8/8+17:2+17.1:8/4+16:0",
                                   "kv_heads": 0})
    kv = usage["kv_cache"]
    assert kv["tokens_low"] > 0 and kv["tokens_dropped"] > 0, usage  # layer 16 drops (width 0)
    assert kv["tokens_high"] + kv["tokens_low"] + kv["tokens_dropped"] == usage["prompt_tokens"] + \
        usage["completion_tokens"] - 1, usage  # the last token is never stored
    assert "layer-bits=18-18.2:8/8+17-17:2/2+17-17.1:8/4+16-16:0/0" in kv["spec"], usage
    st, _, b = srv.get(f"/v1/kv/sequences/{rid}")
    assert st == 200, b
    layers = json.loads(b)["layers"]
    heads = {(L["layer"], h["head"]): (h["low_k"], h["low_v"]) for L in layers for h in L["heads"]}
    assert heads[(18, 2)] == (8, 8) and heads[(18, 0)] == heads[(18, 1)] == (4, 3), heads
    assert heads[(17, 0)] == heads[(17, 2)] == (2, 2) and heads[(17, 1)] == (8, 4), heads
    assert "low_k" not in layers[18] and "low_k" not in layers[17]
    assert (layers[16]["low_k"], layers[16]["low_v"]) == (0, 0)
    assert all("D" in h["rle"] and "L" not in h["rle"] for h in layers[16]["heads"])
    assert all("L" in h["rle"] and "D" not in h["rle"] for h in layers[15]["heads"])
    # a head the model does not have (3 KV heads per layer) is refused by name
    st, _, b = srv.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 2, "kv_policy": "mikv",
                           "kv_layer_bits": "18.3:8"})
    assert st == 400 and "KV head 3" in json.loads(b)["error"]["message"], b


def test_events_stream_a_running_sequence_then_its_final_state(srv):
    snaps, ended = [], threading.Event()

    def watch(rid):
        def run():
            with urllib.request.urlopen(f"{srv.base}/v1/kv/sequences/{rid}/events?interval_ms=50",
                                        timeout=120) as r:
                for line in r:
                    line = line.decode().strip()
                    if line.startswith("data: {"):
                        snaps.append(json.loads(line[6:]))
                    if line == "data: [DONE]":
                        ended.set()
        threading.Thread(target=run, daemon=True).start()

    rid, usage = stream_chat(srv, {"kv_policy": "mikv", "max_tokens": 48}, on_id=watch)
    assert ended.wait(30), "the event stream did not end with the request"
    assert snaps and snaps[-1]["status"] == "finished"
    running = [s for s in snaps if s["status"] == "running"]
    assert running, "no snapshot while decoding"
    # positions only grow while it decodes
    ns = [s["n_tokens"] for s in running]
    assert ns == sorted(ns)
    check_tiers_match(snaps[-1], usage["kv_cache"])


def test_scores_and_unknown_ids(srv):
    rid, _ = stream_chat(srv, {"kv_policy": "mikv"})
    seq = json.loads(srv.get(f"/v1/kv/sequences/{rid}?scores=1")[2])
    h = seq["layers"][0]["heads"][0]
    assert len(h["score"]) == seq["n_tokens"]
    tiers = []
    for t, n in re.findall(r"([NHLD])(\d+)", h["rle"]):
        tiers += [t] * int(n)
    # scores only where the token is high (the tracker's state lives there)
    assert all(s is None for s, t in zip(h["score"], tiers) if t != "H")
    assert any(s is not None for s in h["score"])
    for path in ("/v1/kv/sequences/chatcmpl-nope", "/v1/kv/sequences/chatcmpl-nope/events",
                 f"/v1/kv/sequences/{rid}/bogus"):
        st, _, b = srv.get(path)
        assert st == 404, path
        assert json.loads(b)["error"]["code"] == "not_found"


def test_presets_and_server_stats(srv):
    p = json.loads(srv.get("/v1/kv/presets")[2])
    names = [x["name"] for x in p["data"]]
    assert {"full", "mikv", "scissorhands", "h2o", "streaming"} <= set(names)
    assert p["default"] == "full"
    s = json.loads(srv.get("/v1/server/stats")[2])
    assert {"running", "waiting", "tokens_per_s", "kv", "history"} <= set(s)
    assert s["kv"]["pool_limit"] > 0 and s["kv"]["pool_free"] <= s["kv"]["pool_limit"]
    assert s["kv"]["policies"] == []  # nothing live between the tests


def test_page_is_served_from_the_binary(srv):
    st, h, b = srv.get("/")
    assert st == 200 and h["Content-Type"].startswith("text/html")
    assert b"/webui/app.js" in b and b"http" not in b.split(b"<body>")[0].replace(b"http-equiv", b"")
    for path, ctype in (("/webui/app.js", "text/javascript"), ("/webui/style.css", "text/css")):
        st, h, _ = srv.get(path)
        assert st == 200 and h["Content-Type"].startswith(ctype)
    assert "default-src 'self'" in srv.get("/")[1]["Content-Security-Policy"]


def test_api_key_protects_the_kv_endpoints_not_the_page():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "512", "--api-key", KEY)
    try:
        assert s.get("/")[0] == 200  # the page asks for the key itself
        auth = {"Authorization": f"Bearer {KEY}"}
        for path in ("/v1/kv/sequences", "/v1/kv/sequences/x", "/v1/kv/presets", "/v1/server/stats"):
            assert s.get(path)[0] == 401, path
            assert s.get(path, headers={"Authorization": "Bearer wrong"})[0] == 401, path
        assert s.get("/v1/kv/sequences", headers=auth)[0] == 200
        assert s.get("/v1/kv/presets", headers=auth)[0] == 200
        assert s.get("/v1/kv/sequences/x", headers=auth)[0] == 404
    finally:
        s.stop()


def test_no_webui_answers_404_at_root():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "512", "--no-webui")
    try:
        assert s.get("/")[0] == 404
        assert s.get("/webui/app.js")[0] == 404
        assert s.get("/v1/kv/sequences")[0] == 200  # the endpoints stay
    finally:
        s.stop()
    s = Server("--model", str(MODEL), "--ctx", "512", env={"PIVOT_NO_WEBUI": "1"})
    try:
        assert s.get("/")[0] == 404
    finally:
        s.stop()
