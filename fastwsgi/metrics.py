"""--metrics-bind: Prometheus text exposition at /metrics.

The counters are kept by each loop in C (csrc/metrics.c) and copied once a
turn into memory this module reads: a worker's slot in the master's shared
pages, or a small mapping of its own in a process without a master.  The
master sums its workers, and keeps what exited workers had counted, so
that counters never go backwards.  A thread of its own serves the page.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._fastwsgi import ffi, lib

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REFUSED = ("400", "408", "413", "414", "431", "other")
CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
# The log records counted (fw_counters.log), as gunicorn's StatsD names them.
LOG_KINDS = ("critical", "error", "warning", "exception")


@dataclass
class Totals:
    """Counters summed over loops (and gauges over the live ones)."""

    responses: list[int] = field(default_factory=lambda: [0] * 6)
    duration: list[int] = field(default_factory=lambda: [0] * lib.FW_BUCKETS)
    duration_us: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused: list[int] = field(default_factory=lambda: [0] * 6)
    connections: int = 0
    active: int = 0
    threads: int = 0
    busy: int = 0
    # By status code, 100 to 599, and log records by kind (LOG_KINDS).
    status: list[int] = field(default_factory=lambda: [0] * lib.FW_STATUSES)
    log: list[int] = field(default_factory=lambda: [0] * len(LOG_KINDS))

    def add(self, c: Any, gauges: bool = True) -> None:
        for i in range(6):
            self.responses[i] += c.responses[i]
            self.refused[i] += c.refused[i]
        for i in range(lib.FW_BUCKETS):
            self.duration[i] += c.duration[i]
        self.duration_us += c.duration_us
        self.bytes_in += c.bytes_in
        self.bytes_out += c.bytes_out
        self.status = [a + b for a, b in zip(self.status, _items(c.status))]
        self.log = [a + b for a, b in zip(self.log, _items(c.log))]
        if gauges:
            self.connections += c.connections
            self.active += c.active
            self.threads += c.threads
            self.busy += c.busy

    def plus(self, other: Totals) -> Totals:
        out = Totals()
        out.add(other, gauges=False)
        out.add(self)
        return out


def _items(array: Any) -> list[int]:
    """A C array of counters (or a list: a Totals being added) as a list."""
    return array if isinstance(array, list) else ffi.unpack(array, len(array))


class OwnCounters:
    """The counters of a process without a master: one fw_counters in a
    mapping of its own (the loop writes, the page's thread reads)."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, ffi.sizeof("fw_counters"))
        self.pointer = ffi.cast("fw_counters *", ffi.from_buffer(self._map))

    def totals(self) -> Totals:
        t = Totals()
        t.add(self.pointer)
        return t


def render(t: Totals, workers: int | None = None, restarts: int | None = None) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, text: str, samples: Sequence[tuple[str, float]]) -> None:
        out.append(f"# HELP fastwsgi_{name} {text}")
        out.append(f"# TYPE fastwsgi_{name} {kind}")
        for labels, value in samples:
            out.append(f"fastwsgi_{name}{labels} {value:g}" if isinstance(value, float)
                       else f"fastwsgi_{name}{labels} {value}")

    metric("responses_total", "counter", "Responses by status class (none: the client "
           "left before any).",
           [(f'{{class="{c}"}}', n) for c, n in zip(CLASSES, t.responses)])
    cumulative, buckets = 0, []
    for bound, n in zip((*BUCKETS, "+Inf"), t.duration):
        cumulative += n
        buckets.append((f'_bucket{{le="{bound}"}}', cumulative))
    out.append("# HELP fastwsgi_request_duration_seconds From a request's head to its "
               "response's end.")
    out.append("# TYPE fastwsgi_request_duration_seconds histogram")
    out += [f"fastwsgi_request_duration_seconds{labels} {n}" for labels, n in buckets]
    out.append(f"fastwsgi_request_duration_seconds_sum {t.duration_us / 1e6:.6f}")
    out.append(f"fastwsgi_request_duration_seconds_count {cumulative}")
    metric("received_bytes_total", "counter", "Bytes read from clients.", [("", t.bytes_in)])
    metric("sent_bytes_total", "counter", "Bytes written to clients.", [("", t.bytes_out)])
    metric("refused_total", "counter", "Requests the server refused, by status.",
           [(f'{{status="{s}"}}', n) for s, n in zip(REFUSED, t.refused)])
    metric("connections", "gauge", "Open connections, active (a request in progress) "
           "or idle.", [('{state="active"}', t.active),
                        ('{state="idle"}', t.connections - t.active)])
    metric("threads", "gauge", "App threads, busy (in a request) or idle.",
           [('{state="busy"}', t.busy), ('{state="idle"}', t.threads - t.busy)])
    if workers is not None:
        metric("workers", "gauge", "Worker processes.", [("", workers)])
    if restarts is not None:
        metric("worker_restarts_total", "counter", "Workers that died or were killed and "
               "were replaced.", [("", restarts)])
    return "\n".join(out) + "\n"


SCRAPE_TIMEOUT = 10.0  # seconds a metrics connection may take
SCRAPERS = 16  # metrics connections served at once; more are closed at once


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, as the standard library's, but at most
    SCRAPERS of them: 500 idle connections made 500 threads."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        self._slots = threading.BoundedSemaphore(SCRAPERS)
        super().__init__(*args)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_metrics(bind: str, page: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve page() at /metrics on HOST:PORT from a daemon thread."""
    host, _, port = bind.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        # A scraper asks and goes: an idle or slow connection is dropped
        # after this, so that it cannot keep a thread.
        timeout = SCRAPE_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = page().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes are not the access log

    try:
        server = _BoundedServer((host.strip("[]"), int(port)), Handler)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve metrics on {bind}: "
                                 f"{exc.strerror or exc}") from None
    # A short poll: shutdown() at the server's stop waits for one.
    threading.Thread(target=server.serve_forever, args=(0.1,), name="fastwsgi-metrics",
                     daemon=True).start()
    return server
