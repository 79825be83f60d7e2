"""`pivot bench`: against a fake OpenAI server with known delays (the metric
definitions, failures with reasons) and against the real `pivot serve` (token
counts, consistency). Workloads are tiny: 2 shared CPU cores."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server_util import REPO, Server, free_port, pivot_path

MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The fake server's timing: first chunk after TTFT_S, then one chunk every
# GAP_S; N_TOK content chunks and a usage chunk.
TTFT_S, GAP_S, N_TOK = 0.20, 0.05, 5


class Fake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "fake-model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")
        prompt = req["messages"][0]["content"] if chat else req["prompt"]
        self.server.seen.append(req)
        if prompt.startswith("MODE:500"):
            body = b'{"error":{"message":"boom","type":"server_error"}}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not req.get("stream"):
            time.sleep(TTFT_S + GAP_S * (N_TOK - 1))
            body = json.dumps({"choices": [{"index": 0, "text": "x" * N_TOK}],
                               "usage": {"prompt_tokens": 7, "completion_tokens": N_TOK}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        time.sleep(TTFT_S)
        if prompt.startswith("MODE:malformed"):
            self._chunk(b"data: {not json\n\n")
            self._chunk(b"")
            return
        for i in range(N_TOK):
            if i:
                time.sleep(GAP_S)
            c = {"delta": {"content": "x"}} if chat else {"text": "x"}
            self._chunk(b"data: " + json.dumps({"choices": [{"index": 0, **c}]}).encode()
                        + b"\n\n")
            if prompt.startswith("MODE:cut") and i == 1:
                self.close_connection = True
                return  # no terminating chunk: the response is incomplete
        if prompt.startswith("MODE:nousage"):  # llama.cpp-style: a last chunk without text
            usage = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        else:
            usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": N_TOK}}
        self._chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


@pytest.fixture(scope="module")
def fake():
    if not pivot_path().is_file():
        pytest.skip("pivot binary missing")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    srv.daemon_threads = True
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def bench(tmp_path, *args, expect=0):
    out = tmp_path / "b.json"
    p = subprocess.run([str(pivot_path()), "bench", "--json", str(out), *args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == expect, p.stdout + p.stderr
    return json.loads(out.read_text()) if out.exists() else None, p.stdout


def url(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_fake_known_timings(fake, tmp_path, endpoint):
    fake.seen.clear()
    t0 = time.monotonic()
    d, out = bench(tmp_path, "--url", url(fake), "--endpoint", endpoint, "--num-prompts", "4",
                   "--concurrency", "4", "--input-len", "10", "--output-len", "5",
                   "--ignore-eos", "--kv-policy", "mikv", "--api-key", "k1",
                   "--extra-body", '{"logit_bias": {"2": -100}, "temperature": 0.5}')
    wall = time.monotonic() - t0  # the whole bench process, as this test saw it
    assert d["completed"] == 4 and d["failed"] == 0 and d["model_id"] == "fake-model"
    assert d["total_output_tokens"] == 4 * N_TOK and d["total_input_tokens"] == 4 * 7
    # Lower bounds that scheduling delays cannot break are absolute: the first
    # chunk and the last cannot arrive before the server sends them. Any figure
    # can grow on a loaded machine, so upper bounds are relative to figures of
    # the same run (a request lasts no longer than the whole bench process; a
    # gap no longer than its request), never absolute seconds (exact timing is
    # a benchmark's job, not a test's). Units gone wrong (s for ms, us for ms)
    # break one side or the other by 1000x.
    ttft, tpot = d["median_ttft_ms"] / 1e3, d["median_tpot_ms"] / 1e3
    itl, e2el = d["median_itl_ms"] / 1e3, d["median_e2el_ms"] / 1e3
    e2e = TTFT_S + GAP_S * (N_TOK - 1)
    assert e2e - 0.005 <= e2el <= d["duration"] <= wall, (e2el, d["duration"], wall)
    assert TTFT_S - 0.005 <= ttft <= e2el
    assert 0 < tpot <= e2el and 0 <= itl <= e2el
    assert d["p99_ttft_ms"] <= d["p99_e2el_ms"] and d["mean_ttft_ms"] <= d["mean_e2el_ms"]
    # TPOT is defined from the other two: (E2E - TTFT) / (tokens - 1), per request
    assert d["mean_tpot_ms"] == pytest.approx(
        (d["mean_e2el_ms"] - d["mean_ttft_ms"]) / (N_TOK - 1), rel=1e-6)
    # all four at once: the run lasts about one request, not four (one after
    # another would take the sum of their latencies)
    assert d["duration"] < 0.5 * 4 * d["mean_e2el_ms"] / 1e3, (d["duration"], d["mean_e2el_ms"])
    assert d["output_throughput"] == pytest.approx(d["total_output_tokens"] / d["duration"])
    assert d["request_throughput"] == pytest.approx(4 / d["duration"])
    # what the server was sent
    r = fake.seen[0]
    assert r["max_tokens"] == 5 and r["ignore_eos"] is True and r["kv_policy"] == "mikv"
    assert r["stream"] is True and r["stream_options"] == {"include_usage": True}
    assert r["logit_bias"] == {"2": -100} and r["temperature"] == 0.5
    text = r["messages"][0]["content"] if endpoint == "chat" else r["prompt"]
    assert len(text.split()) == 10
    assert "Mean TTFT (ms):" in out and "Output token throughput (tok/s):" in out


def test_fake_poisson_and_goodput(fake, tmp_path):
    # 6 requests at 20/s: arrivals spread over ~0.3 s on average; goodput
    # with a TTFT SLO below the fake's TTFT counts nothing, above counts all
    d, _ = bench(tmp_path, "--url", url(fake), "--num-prompts", "6", "--rate", "20",
                 "--seed", "1", "--output-len", "5", "--goodput", "ttft:100")
    assert d["completed"] == 6 and d["request_rate"] == 20 and d["request_goodput"] == 0
    d, _ = bench(tmp_path, "--url", url(fake), "--num-prompts", "6", "--rate", "20",
                 "--seed", "1", "--output-len", "5", "--goodput", "ttft:2000", "tpot:1000")
    assert d["request_goodput"] == pytest.approx(d["request_throughput"])


def test_fake_no_stream(fake, tmp_path):
    d, _ = bench(tmp_path, "--url", url(fake), "--no-stream", "--num-prompts", "2",
                 "--output-len", "5")
    assert d["completed"] == 2 and d["total_output_tokens"] == 2 * N_TOK
    # without streaming the first token is the whole response
    assert d["mean_ttft_ms"] == pytest.approx(d["mean_e2el_ms"])


def test_fake_failures_with_reasons(fake, tmp_path):
    ds = tmp_path / "ds.jsonl"
    ds.write_text("\n".join(json.dumps({"prompt": p}) for p in
                            ["hello", "MODE:500", "MODE:malformed", "MODE:cut"]) + "\n")
    d, out = bench(tmp_path, "--url", url(fake), "--model", "m", "--dataset", str(ds),
                   "--num-prompts", "4", "--output-len", "5")
    assert d["completed"] == 1 and d["failed"] == 3
    reasons = " | ".join(d["failure_reasons"])
    assert "HTTP 500 boom" in reasons
    assert "malformed SSE chunk" in reasons
    assert "closed before the response was complete" in reasons
    assert sum(d["failure_reasons"].values()) == 3


def test_fake_without_usage_counts_text_chunks(fake, tmp_path):
    ds = tmp_path / "ds.jsonl"
    ds.write_text(json.dumps({"prompt": "MODE:nousage"}) + "\n")
    d, _ = bench(tmp_path, "--url", url(fake), "--dataset", str(ds), "--num-prompts", "2",
                 "--output-len", "5")
    assert d["completed"] == 2 and d["output_lens"] == [N_TOK, N_TOK]
    assert d["input_lens"] == [0, 0]  # no usage, no tokenizer: dataset prompts count 0


def test_sharegpt_dataset(fake, tmp_path):
    ds = tmp_path / "sg.json"
    ds.write_text(json.dumps([{"conversations": [{"from": "human", "value": "first q"},
                                                 {"from": "gpt", "value": "a"}]}]))
    fake.seen.clear()
    d, _ = bench(tmp_path, "--url", url(fake), "--dataset", str(ds), "--num-prompts", "2",
                 "--output-len", "5")
    assert d["completed"] == 2 and [r["prompt"] for r in fake.seen] == ["first q"] * 2


def test_refused_connection(tmp_path):
    if not pivot_path().is_file():
        pytest.skip("pivot binary missing")
    d, _ = bench(tmp_path, "--url", f"http://127.0.0.1:{free_port()}", "--model", "m",
                 "--num-prompts", "3", expect=1)
    assert d["completed"] == 0 and d["failed"] == 3
    assert list(d["failure_reasons"]) == ["connect: connection refused"]


@pytest.mark.parametrize("args", [["--rate", "0"], ["--num-prompts", "x"], ["--bogus"],
                                  ["--endpoint", "foo"], ["--goodput", "ttft"],
                                  ["--url", "https://x"], ["--concurrency"],
                                  ["--extra-body", "[1]"], ["--extra-body", "{"]])
def test_bad_flags_exit_2(args):
    if not pivot_path().is_file():
        pytest.skip("pivot binary missing")
    p = subprocess.run([str(pivot_path()), "bench", *args], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "pivot bench:" in p.stderr


@pytest.fixture(scope="module")
def srv():
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")
    s = Server("--model", str(MODEL), "--ctx", "256", "--max-batch", "4")
    yield s
    s.stop()


def test_real_server(srv, tmp_path):
    d, _ = bench(tmp_path, "--url", srv.base, "--num-prompts", "4", "--concurrency", "2",
                 "--input-len", "16", "--output-len", "8", "--ignore-eos")
    assert d["completed"] == 4 and d["failed"] == 0
    assert d["total_output_tokens"] == 4 * 8 and d["output_lens"] == [8] * 4
    # random words are one token each (SmolLM2 adds no BOS)
    assert all(abs(n - 16) <= 1 for n in d["input_lens"])
    assert d["mean_ttft_ms"] <= d["mean_e2el_ms"] and d["p99_ttft_ms"] <= d["p99_e2el_ms"]
    assert d["mean_tpot_ms"] > 0 and d["mean_itl_ms"] > 0
    assert d["output_throughput"] == pytest.approx(32 / d["duration"])
    assert d["total_token_throughput"] == pytest.approx(
        (d["total_input_tokens"] + 32) / d["duration"])


def test_real_server_kv_policy_passed(srv, tmp_path):
    d, _ = bench(tmp_path, "--url", srv.base + "/v1", "--endpoint", "chat", "--num-prompts", "1",
                 "--input-len", "8", "--output-len", "2", "--kv-policy", "nonsense", expect=1)
    assert d["failed"] == 1 and any("HTTP 400" in r for r in d["failure_reasons"])


def test_real_server_prefix_len_shares_a_head(srv, tmp_path):
    """--prefix-len: every prompt starts with the same 140 words, so each
    request after the first reuses the server's cached blocks of them."""
    h0 = srv.metrics()["pivot:prefix_cache_hits_total"]
    d, _ = bench(tmp_path, "--url", srv.base, "--num-prompts", "3", "--concurrency", "1",
                 "--prefix-len", "140", "--input-len", "10", "--output-len", "2")
    assert d["completed"] == 3 and d["prefix_len"] == 140 and d["input_len"] == 10
    assert all(abs(n - 150) <= 1 for n in d["input_lens"]), d["input_lens"]
    hits = srv.metrics()["pivot:prefix_cache_hits_total"] - h0
    assert hits >= 2 * 128, hits  # two later requests, two whole 64-token blocks each
