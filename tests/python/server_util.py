"""Start and stop `pivot serve` for tests: a free loopback port, wait for
/health 200, always killed at teardown."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def pivot_path() -> Path:
    env = os.environ.get("PIVOT_BIN")
    return Path(env) if env else REPO / "build" / "server" / "pivot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str, env: dict | None = None, ready_timeout: float = 60):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "w") if os.environ.get("PIVOT_QUIET") else None
        cmd = [str(pivot_path()), "serve", "--port", str(self.port), "--threads",
               os.environ.get("PIVOT_THREADS", "2"), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, text=True)
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
        _, _, body = self.get("/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            base = name.split("{", 1)[0]
            if "outcome=" in name:
                base += ":" + name.split('outcome="', 1)[1].split('"', 1)[0]
            out[base] = float(value)
        return out

    def output(self) -> str:
        try:
            out, _ = self.proc.communicate(timeout=5)
            return out or ""
        except Exception:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
