#!/usr/bin/env python3
"""Soak and abuse test for `pivot serve` (loopback only, bounded in time).

Phases:
  1. warm-up (--warmup s): the steady load and one queue-overflowing burst,
     then resident memory (VmRSS) is read once the server is idle;
  2. soak (--duration s): 16 concurrent clients, streaming and not, chat and
     completions, each request with ignore_eos so its token count is known;
     beside them abuse clients: mid-stream disconnects, slowloris headers,
     byte-at-a-time bodies, oversized headers and bodies (declared and
     chunked), invalid JSON, invalid UTF-8, wrong methods, unknown routes,
     and every --burst-every s a burst that overflows the waiting queue;
  3. idle checks: /metrics shows no running or waiting request and no KV
     memory reserved or used; VmRSS is within 10% of the warm-up figure;
  4. graceful stop: 16 requests are admitted, SIGTERM is sent, every one of
     them must complete in full, new connections are refused, and the
     server exits 0 within the drain timeout with its loop closed cleanly.

Pass criteria (each a JUnit test case, see --junit): the server never dies;
every admitted valid request completes with finish_reason "length" and
exactly max_tokens completion tokens; every invalid request gets its status
(400/404/405/408/413/431); every 429 carries Retry-After; the idle and RSS
checks above; the drain. Prints the figures (requests and errors by kind,
memory before/after).

With --pressure the KV limit is small (8M: five 64-token FP16 pages) and
valid requests ask for 40-100 tokens, half of them under `mikv,budget=0.5`,
so the server preempts and compresses (KV on demand) all along; two more
cases then require that both happened, and the run must still lose no
admitted request and count every token exactly.

Usage: soak.py [--bin build/cli/pivot] [--model M] [--duration 180] [--pressure]
(SOAK_SECONDS overrides the default duration)."""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import quoteattr

REPO = Path(__file__).resolve().parent.parent.parent
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly "
         "judge boxing matches in the old town near the river bank").split()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.kinds: Counter[str] = Counter()
        self.failures: list[str] = []
        self.refused = 0

    def ok(self, kind: str) -> None:
        with self.lock:
            self.kinds[kind] += 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.kinds["FAILED"] += 1
            if len(self.failures) < 50:
                self.failures.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, a):
        self.a = a
        self.port = free_port()
        self.stats = Stats()
        self.stop = threading.Event()
        self.log_path = Path(a.log)
        self.log = open(self.log_path, "w")
        cmd = [a.bin, "serve", "--model", a.model, "--port", str(self.port),
               "--threads", str(a.threads), "--max-batch", "16",
               # under --pressure 5 run at once: the 16 drain requests must all queue
               "--max-queue", "16" if a.pressure else "8",
               "--kv-memory", a.kv_memory, "--max-body", "65536", "--request-timeout",
               str(a.request_timeout), "--idle-timeout", "10", "--drain-timeout",
               str(a.drain_timeout), "--ctx", "512"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log_path}")
            try:
                if self.raw_get("/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("server not ready in 120 s")

    # ---- plumbing ----
    def conn(self, timeout: float = 120) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout * (5 if self.a.pressure else 1))

    def raw_get(self, path: str):
        c = self.conn(10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def metrics(self) -> dict[str, float]:
        _, body = self.raw_get("/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, v = line.rsplit(" ", 1)
                out[name.split("{", 1)[0]] = out.get(name.split("{", 1)[0], 0.0) + float(v)
        return out

    def wait_idle(self, timeout: float = 120) -> dict[str, float]:
        deadline = time.time() + timeout
        m = {}
        while time.time() < deadline:
            m = self.metrics()
            if m.get("pivot:num_requests_running", 1) == 0 and m.get("pivot:num_requests_waiting", 1) == 0:
                return m
            time.sleep(0.2)
        return m

    def sock(self, timeout: float = 30) -> socket.socket:
        # under --pressure a queued request waits minutes for its first byte
        # (5 run at once, 16 wait): a client timeout is not a server error
        if self.a.pressure:
            timeout *= 6
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    @staticmethod
    def read_status(s: socket.socket) -> tuple[int, str]:
        """Status and headers of the first response on a raw socket (or 0 when
        the server closed without answering)."""
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 "):
            return 0, ""
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        return int(head.split()[1]), head.lower()

    # ---- valid requests ----
    def valid_body(self, stream: bool, chat: bool, max_tokens: int) -> dict:
        text = " ".join(random.choice(WORDS) for _ in range(random.randint(3, 18)))
        b = {"max_tokens": max_tokens, "ignore_eos": True,
             "temperature": random.choice([0, 0.7, 1.0]), "seed": random.randint(0, 1000)}
        if self.a.pressure and random.random() < 0.5:
            b["kv_policy"] = "mikv,budget=0.5"  # compressible: elastic relief applies
        if chat:
            b["messages"] = [{"role": "user", "content": text}]
        else:
            b["prompt"] = text
        if stream:
            b["stream"] = True
            b["stream_options"] = {"include_usage": True}
        return b

    def check_429(self, headers: dict, where: str) -> None:
        if "retry-after" in {k.lower() for k in headers}:
            self.stats.ok("429 with Retry-After")
        else:
            self.stats.fail(f"{where}: 429 without Retry-After")

    def valid_request(self, stream: bool | None = None, max_tokens: int | None = None,
                      kind: str = "valid", chat: bool | None = None) -> int:
        stream = random.random() < 0.5 if stream is None else stream
        chat = random.random() < 0.5 if chat is None else chat
        n = max_tokens or (random.randint(40, 100) if self.a.pressure else random.randint(4, 32))
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body = json.dumps(self.valid_body(stream, chat, n))
        c = self.conn()
        try:
            c.request("POST", path, body, {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status == 429:
                r.read()
                self.check_429(dict(r.getheaders()), kind)
                return 429
            if r.status != 200:
                self.stats.fail(f"{kind}: {path} got {r.status}: {r.read()[:200]!r}")
                return r.status
            if stream:
                got, finish, content = None, [], 0
                for raw in r:
                    line = raw.decode().strip()
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        break
                    ev = json.loads(line[6:])
                    if ev.get("usage"):
                        got = ev["usage"]["completion_tokens"]
                    for ch in ev.get("choices", []):
                        if ch.get("finish_reason"):
                            finish.append(ch["finish_reason"])
                        d = ch.get("delta", {}).get("content") if chat else ch.get("text")
                        content += bool(d)
                if got != n or finish != ["length"] or content > n:
                    self.stats.fail(f"{kind}: stream {path} wanted {n} tokens, usage {got}, "
                                    f"finish {finish}, {content} content chunks")
                    return -1
            else:
                js = json.loads(r.read())
                got = js["usage"]["completion_tokens"]
                fin = js["choices"][0]["finish_reason"]
                if got != n or fin != "length":
                    self.stats.fail(f"{kind}: {path} wanted {n} tokens, got {got} ({fin})")
                    return -1
            self.stats.ok(f"{kind} {'stream' if stream else 'plain'} {'chat' if chat else 'cmpl'} 200")
            return 200
        except ConnectionRefusedError:
            self.stats.refused += 1
            self.stats.fail(f"{kind}: connection refused")
            return 0
        except Exception as e:  # noqa: BLE001 - any transport error is a failure here
            self.stats.fail(f"{kind}: {path} {type(e).__name__}: {e}")
            return 0
        finally:
            c.close()

    # ---- abuse ----
    def expect_status(self, kind: str, want: int, payload: bytes, header: str | None = None,
                      delay: float = 0.0) -> None:
        try:
            s = self.sock()
            try:
                if delay:
                    for i in range(len(payload)):
                        s.sendall(payload[i:i + 1])
                        time.sleep(delay)
                else:
                    s.sendall(payload)
                st, head = self.read_status(s)
            finally:
                s.close()
        except (BrokenPipeError, ConnectionResetError):
            # the server may answer and close before the client is done
            # sending; the answer is then often lost with the reset
            self.stats.ok(f"{kind}: reset while sending")
            return
        if st != want:
            self.stats.fail(f"{kind}: wanted {want}, got {st}")
        elif header and header.lower() not in head:
            self.stats.fail(f"{kind}: {want} without '{header}'")
        else:
            self.stats.ok(f"{kind} {want}")

    def abuse_once(self) -> None:
        k = random.randrange(10)
        post = lambda path, body, extra=b"": (  # noqa: E731
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body)
        if k == 0:  # disconnect mid-stream
            s = self.sock()
            body = json.dumps(self.valid_body(True, False, 64)).encode()
            s.sendall(post("/v1/completions", body))
            st, _ = self.read_status(s)
            if random.random() < 0.5:  # abortive close (RST) half of the time
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            if st in (200, 429):
                self.stats.ok(f"disconnect mid-stream ({st})")
            else:
                self.stats.fail(f"disconnect: status {st}")
        elif k == 1:  # oversized headers
            big = b"X-Big: " + b"a" * 20000 + b"\r\n"
            self.expect_status("oversized headers", 431, post("/v1/completions", b"{}", big))
        elif k == 2:  # declared oversized body: answered from the headers alone
            head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 200000\r\n\r\n")
            self.expect_status("oversized body", 413, head)
        elif k == 3:  # chunked oversized body
            chunk = b"%x\r\n" % 16384 + b"a" * 16384 + b"\r\n"
            self.expect_status("oversized chunked body", 413,
                               b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 5)
        elif k == 4:
            self.expect_status("invalid JSON", 400, post("/v1/completions", b'{"prompt": "a", "max_tokens": }'))
        elif k == 5:
            self.expect_status("invalid UTF-8", 400,
                               post("/v1/chat/completions",
                                    b'{"messages": [{"role": "user", "content": "\xff\xfe\xc3("}], "max_tokens": 2}'))
        elif k == 6:
            m = random.choice(["GET /v1/completions", "DELETE /health", "PUT /v1/chat/completions",
                               "GET /tokenize"])
            self.expect_status("wrong method", 405, f"{m} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), "Allow:")
        elif k == 7:
            self.expect_status("unknown route", 404, b"GET /v2/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        elif k == 8:  # byte-at-a-time body of a valid request: must be served normally
            body = json.dumps({"prompt": "the old town", "max_tokens": 3, "ignore_eos": True}).encode()
            s = self.sock(60)
            try:
                s.sendall(post("/v1/completions", b"").replace(
                    b"Content-Length: 0", b"Content-Length: %d" % len(body)))
                for i in range(len(body)):
                    s.sendall(body[i:i + 1])
                    time.sleep(0.01)
                st, head = self.read_status(s)
            finally:
                s.close()
            if st == 200 or (st == 429 and "retry-after" in head):
                self.stats.ok(f"byte-at-a-time body {st}")
            else:
                self.stats.fail(f"byte-at-a-time body: status {st}")
        else:  # slowloris: headers dripped slower than the request timeout allows
            s = self.sock(self.a.request_timeout + 10)
            t0 = time.time()
            st = 0
            try:
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
                s.settimeout(0.5)
                while time.time() - t0 < self.a.request_timeout + 5:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        break
                    try:
                        data = s.recv(4096)
                        if data.startswith(b"HTTP/1.1 "):
                            st = int(data.split()[1])
                        break
                    except socket.timeout:
                        continue
            finally:
                s.close()
            dt = time.time() - t0
            if st == 408 and dt <= self.a.request_timeout + 2:
                self.stats.ok("slowloris 408")
            else:
                self.stats.fail(f"slowloris: status {st} after {dt:.1f} s "
                                f"(request timeout {self.a.request_timeout} s)")

    # ---- load drivers ----
    def steady_client(self, i: int) -> None:
        random.seed(i)
        while not self.stop.is_set():
            if self.valid_request() == 429:
                time.sleep(0.2)

    def abuse_client(self, i: int) -> None:
        random.seed(1000 + i)
        while not self.stop.is_set():
            try:
                self.abuse_once()
            except Exception as e:  # noqa: BLE001
                self.stats.fail(f"abuse: {type(e).__name__}: {e}")
            time.sleep(0.05)

    def burst(self, n: int = 40) -> None:
        ths = [threading.Thread(target=self.valid_request, kwargs={"stream": False, "max_tokens": 8,
                                                                   "kind": "burst"})
               for _ in range(n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()

    def run_load(self, seconds: float) -> None:
        self.stop.clear()
        ths = [threading.Thread(target=self.steady_client, args=(i,)) for i in range(16)]
        ths += [threading.Thread(target=self.abuse_client, args=(i,)) for i in range(self.a.abusers)]
        for t in ths:
            t.start()
        t0 = time.time()
        next_burst = t0 + min(5.0, seconds / 3)
        while time.time() - t0 < seconds:
            if self.proc.poll() is not None:
                break
            if time.time() >= next_burst:
                self.burst()
                next_burst = time.time() + self.a.burst_every
            time.sleep(0.2)
        self.stop.set()
        for t in ths:
            t.join()

    # ---- graceful stop ----
    def drain(self) -> tuple[bool, str]:
        results: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            random.seed(5000 + i)
            # completions of <= 64 tokens: one KV page each, so all 16 fit
            # the pool (--kv-memory 24M) and are admitted together
            st = self.valid_request(stream=i % 2 == 0, max_tokens=40, kind="drain", chat=False)
            with lock:
                results.append(st)

        ths = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in ths:
            t.start()
        deadline = time.time() + 60
        while time.time() < deadline:  # all 16 submitted (running or waiting)
            m = self.metrics()
            if m.get("pivot:num_requests_running", 0) + m.get("pivot:num_requests_waiting", 0) >= 16:
                break
            time.sleep(0.02)
        else:
            return False, "the 16 drain requests were never all admitted"
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        try:
            rc = self.proc.wait(timeout=self.a.drain_timeout + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return False, f"did not exit within {self.a.drain_timeout + 10} s of SIGTERM"
        dt = time.time() - t0
        for t in ths:
            t.join()
        self.log.flush()
        tail = self.log_path.read_text(errors="replace").splitlines()[-3:]
        clean = any("pivot serve: stopped" in ln and "not closed cleanly" not in ln for ln in tail)
        ok = rc == 0 and dt <= self.a.drain_timeout and results.count(200) == 16 and refused and clean
        return ok, (f"exit {rc} {dt:.2f} s after SIGTERM (drain timeout {self.a.drain_timeout} s), "
                    f"{results.count(200)}/16 admitted requests completed in full, new connections "
                    f"{'refused' if refused else 'ACCEPTED'}, loop {'closed cleanly' if clean else 'NOT closed cleanly'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PIVOT_BIN", str(REPO / "build" / "cli" / "pivot")))
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_SECONDS", 180)))
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--burst-every", type=float, default=20)
    ap.add_argument("--abusers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PIVOT_THREADS", 2)))
    # 24M: 16 one-page (64-token) SmolLM2 sequences; chat prompts take two
    ap.add_argument("--kv-memory", default="24M")
    ap.add_argument("--request-timeout", type=float, default=3)
    ap.add_argument("--drain-timeout", type=float, default=30)
    ap.add_argument("--log", default="/tmp/pivot-soak-server.log")
    ap.add_argument("--junit", default=None)
    ap.add_argument("--pressure", action="store_true",
                    help="small KV limit: preemption and elastic compression all along")
    a = ap.parse_args()
    if a.pressure:
        if a.kv_memory == "24M":
            a.kv_memory = "8M"
        a.drain_timeout = max(a.drain_timeout, 90)  # 16 drain requests, 5 at a time

    cases: list[tuple[str, bool, str]] = []
    t_start = time.time()
    s = Soak(a)
    pid = s.proc.pid
    try:
        s.run_load(a.warmup)
        s.wait_idle()
        time.sleep(1)
        rss_warm = rss_kb(pid)
        warm_kinds = Counter(s.stats.kinds)
        s.run_load(a.duration)
        alive = s.proc.poll() is None
        cases.append(("server never died", alive, f"exit {s.proc.returncode}" if not alive else "alive"))
        m = s.wait_idle() if alive else {}
        time.sleep(1)
        rss_after = rss_kb(pid) if alive else 0
        idle = {k: m.get("pivot:" + k, -1) for k in ("num_requests_running", "num_requests_waiting",
                                                     "kv_cache_bytes_reserved", "kv_cache_bytes_used",
                                                     "kv_cache_tokens_used")}
        cases.append(("metrics idle after the run", alive and all(v == 0 for v in idle.values()),
                      ", ".join(f"{k}={v:g}" for k, v in idle.items())))
        growth = (rss_after - rss_warm) / rss_warm if rss_warm else 1
        # growth is what a leak looks like; less memory after is fine
        cases.append(("RSS within 10% of warm-up", alive and growth <= 0.10,
                      f"{rss_warm / 1024:.1f} MiB after warm-up, {rss_after / 1024:.1f} MiB after the run "
                      f"({growth * 100:+.1f}%)"))
        k = s.stats.kinds
        cases.append(("queue overflow gave 429 with Retry-After", k["429 with Retry-After"] > 0,
                      f"{k['429 with Retry-After']} x 429"))
        for label, pred in (("slowloris answered 408 in time", lambda n: n.startswith("slowloris")),
                            ("valid requests complete with the right token count",
                             lambda n: n.startswith(("valid", "burst", "byte-at-a-time"))),
                            ("invalid requests get the right status",
                             lambda n: n.startswith(("oversized", "invalid", "wrong method",
                                                     "unknown route")))):
            bad = [f for f in s.stats.failures if pred(f)]
            good = sum(v for n, v in k.items() if pred(n))
            cases.append((label, not bad and good > 0, "; ".join(bad[:5]) or f"{good} ok"))
        other = [f for f in s.stats.failures if not f.startswith(
            ("slowloris", "valid", "burst", "byte-at-a-time", "oversized", "invalid", "wrong method",
             "unknown route"))]
        cases.append(("no transport errors", not other, "; ".join(other[:5]) or "none"))
        if alive and a.pressure:
            mm = s.metrics()
            pre = mm.get("pivot:num_preemptions_total", 0)
            el = mm.get("pivot:kv_elastic_compressions_total", 0)
            cases.append(("pressure: requests were preempted", pre > 0, f"{pre:g} preemptions"))
            cases.append(("pressure: requests were compressed (elastic)", el > 0,
                          f"{el:g} compressions, "
                          f"{mm.get('pivot:kv_elastic_saved_bytes_total', 0):g} bytes freed"))
        if alive:
            ok, msg = s.drain()
            cases.append(("SIGTERM under load drains and exits 0", ok, msg))
        print(f"soak: {time.time() - t_start:.0f} s in all ({a.warmup:.0f} s warm-up, {a.duration:.0f} s soak)")
        print(f"soak: warm-up requests: {sum(warm_kinds.values())}")
        print("soak: requests by kind (warm-up + soak + drain):")
        for name, v in sorted(s.stats.kinds.items()):
            print(f"  {v:6d}  {name}")
        print(f"soak: memory: VmRSS {rss_warm / 1024:.1f} MiB after warm-up, {rss_after / 1024:.1f} MiB after")
        for f in s.stats.failures[:20]:
            print(f"soak: failure: {f}")
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
    for name, ok, msg in cases:
        print(f"soak: {'ok  ' if ok else 'FAIL'} {name}: {msg}")
    if a.junit:
        with open(a.junit, "w") as f:
            f.write(f'<testsuite name="{"soak-pressure" if a.pressure else "soak"}" tests="{len(cases)}" '
                    f'failures="{sum(1 for c in cases if not c[1])}">\n')
            for name, ok, msg in cases:
                f.write(f'  <testcase classname="soak" name={quoteattr(name)}>')
                f.write(f"<system-out>{quoteattr(msg)[1:-1]}</system-out>" if ok
                        else f"<failure message={quoteattr(msg)}/>")
                f.write("</testcase>\n")
            f.write("</testsuite>\n")
    return 0 if cases and all(c[1] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
