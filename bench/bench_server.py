"""What the Python benchmarks share (kv_pressure.py, kvmap_overhead.py,
serve_load.py, structured_speed.py): a `pivot serve` of their own — the
tests' server_util.Server (a free port, a log file rather than a pipe,
ready on /health 200, killed at the end) — or one already running, its
/metrics, the openai client and the model it serves, and a gauge watched
while a load runs."""
from __future__ import annotations

import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "python"))
from server_util import MODEL, Server, parse_metrics  # noqa: E402


def serve(*flags: str, binary: str | None = None, model: str | Path = MODEL,
          threads: str | None = None, ready_timeout: float = 120) -> Server:
    """`pivot serve --model MODEL FLAGS`; a context manager (stops it)."""
    return Server("--model", str(model), *flags, binary=binary, threads=threads,
                  ready_timeout=ready_timeout)


def metrics(base: str) -> dict[str, float]:
    """The server at base's /metrics (server_util.parse_metrics)."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        return parse_metrics(r.read().decode())


def client(base: str, timeout: float = 600, api_key: str = "none"):
    """An openai client for the server at base (with or without /v1) and
    the id of the model it serves; no retries, so errors are counted."""
    import openai
    base = base.rstrip("/").removesuffix("/v1")
    c = openai.OpenAI(base_url=base + "/v1", api_key=api_key, max_retries=0, timeout=timeout)
    return c, c.models.list().data[0].id


class PeakWatch:
    """Polls a /metrics gauge every `interval` s while the with-block runs;
    .peak is the largest value seen (poll errors are skipped)."""

    def __init__(self, base: str, gauge: str = "pivot:num_requests_running",
                 interval: float = 0.05):
        self.base, self.gauge, self.interval = base, gauge, interval
        self.peak = 0.0
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, metrics(self.base).get(self.gauge, 0.0))
            except OSError:
                pass
            time.sleep(self.interval)

    def __enter__(self) -> "PeakWatch":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._t.join()
