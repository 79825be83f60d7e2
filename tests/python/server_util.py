"""Start and stop `pivot serve` for tests: a free loopback port, wait for
/health 200, always killed at teardown.

The server's stdout and stderr go to a log file, never to a pipe: a pipe that
nobody reads fills after 64 KiB and blocks the server mid-write (a hang that
looks like a server bug). The files lie in LOG_DIR (conftest points it at the
pytest tmp dir); conftest prints the logs of every server that was alive
during a failing test."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# The default model (SmolLM2-135M-Instruct Q4_1) and the name it is served as.
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = MODEL.stem
# Where server logs go; conftest sets it to a pytest tmp dir per session.
LOG_DIR: Path | None = None
# Every Server started in this process, for conftest's failure report.
STARTED: list["Server"] = []


def pivot_path() -> Path:
    env = os.environ.get("PIVOT_BIN")
    return Path(env) if env else REPO / "build" / "cli" / "pivot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_default_model() -> None:
    """Skips the test when the pivot binary or the default model is missing."""
    import pytest
    if not pivot_path().is_file() or not MODEL.is_file():
        pytest.skip("pivot binary or default model missing")


def default_server(*args: str, **kw) -> "Server":
    """`pivot serve --model <default model> ARGS` (skips without one); use it
    as a context manager, or stop() it."""
    need_default_model()
    return Server("--model", str(MODEL), *args, **kw)


def serve_default(*args: str, **kw):
    """A module fixture's body: `yield from serve_default(ARGS)` yields a
    running default_server and stops it at teardown."""
    with default_server(*args, **kw) as s:
        yield s


def server_fixtures(*args: str, timeout: float = 120):
    """A test module's `srv` (a default_server with ARGS, module-scoped) and
    `client` (openai_client on it) fixtures:
        srv, client = server_fixtures("--ctx", "1024")"""
    import pytest

    @pytest.fixture(scope="module")
    def srv():
        yield from serve_default(*args)

    @pytest.fixture(scope="module")
    def client(srv):
        return openai_client(srv, timeout=timeout)

    return srv, client


def openai_client(srv: "Server", timeout: float = 120, api_key: str = "none",
                  max_retries: int = 0):
    """The official SDK pointed at srv; by default without retries (a retry
    would hide a bad answer)."""
    import openai
    return openai.OpenAI(base_url=srv.base + "/v1", api_key=api_key, max_retries=max_retries,
                         timeout=timeout)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {name: value}: labels dropped, except that an
    `outcome` label is kept as name:outcome."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{", 1)[0]
        if "outcome=" in name:
            base += ":" + name.split('outcome="', 1)[1].split('"', 1)[0]
        out[base] = float(value)
    return out


class Server:
    """`pivot serve ARGS` on a free port (binary: PIVOT_BIN or the build's;
    threads: PIVOT_THREADS or 2), ready when /health says 200."""

    def __init__(self, *args: str, env: dict | None = None, ready_timeout: float = 60,
                 binary: str | None = None, threads: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [binary or str(pivot_path()), "serve", "--port", str(self.port), "--threads",
               threads or os.environ.get("PIVOT_THREADS", "2"), *args]
        fd, name = tempfile.mkstemp(prefix=f"serve-{self.port}-", suffix=".log",
                                    dir=str(LOG_DIR) if LOG_DIR else None)
        self.log_path = Path(name)
        self.cmd = cmd
        self.stopped_at: float | None = None
        with os.fdopen(fd, "wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})
        STARTED.append(self)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pivot serve exited {self.proc.returncode}: {self.output()}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("pivot serve did not become ready")

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float = 60):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.get("/metrics")[2].decode())

    def wait_metrics(self, pred, timeout: float, what: str) -> dict[str, float]:
        """Polls /metrics until pred(metrics) holds; returns those metrics or
        fails the test (see wait_until)."""
        return wait_until(lambda: m if pred(m := self.metrics()) else None, timeout, what)

    def log_text(self) -> str:
        """What the server wrote so far (stdout and stderr interleaved)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"

    def output(self) -> str:
        """The whole log once the server exited (waits up to 5 s for that)."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.log_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.stopped_at is None:
            self.stopped_at = time.time()


def wait_until(pred, timeout: float, what: str, interval: float = 0.02):
    """Polls pred() until it returns a truthy value, which is returned; fails
    the test with `what` (and pred's last value) when timeout passes first."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def raw_post(port: int, path: str, body: dict, headers: dict | None = None,
             timeout: float = 60) -> socket.socket:
    """Sends one POST on a fresh socket whose every recv() times out after
    `timeout` s; returns the socket (the caller reads and closes it)."""
    data = json.dumps(body).encode()
    h = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(data)),
         **(headers or {})}
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"POST {path} HTTP/1.1\r\n".encode() +
              b"".join(f"{k}: {v}\r\n".encode() for k, v in h.items()) + b"\r\n" + data)
    return s


def recv_until(s: socket.socket, done, got: bytes = b"") -> bytes:
    """recv() on s (its own timeout applies to each call) until done(data) is
    true; fails when the peer closes first."""
    while not done(got):
        d = s.recv(65536)
        if not d:
            raise AssertionError(f"connection closed before the expected data: {got[-2000:]!r}")
        got += d
    return got


def recv_all(s: socket.socket) -> bytes:
    """recv() until the peer closes (each call under the socket's timeout)."""
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            return got
        got += d


def reassemble_tool_stream(stream):
    """The content, the calls ([{id, name, arguments}] by index) and the
    finish_reason of choice 0 of an openai SDK chat stream; checks that a
    call's id and name come once, before its argument fragments."""
    content, calls, finish = "", {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        if d.content:
            content += d.content
        for tc in d.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                assert slot["id"] is None, "the id comes once, first"
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                assert slot["name"] is None and slot["arguments"] == "", "the name comes first"
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    return content, [calls[k] for k in sorted(calls)], finish
