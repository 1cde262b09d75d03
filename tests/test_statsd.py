"""--statsd-host: gunicorn's StatsD metrics, received on a real UDP socket
from a real server, and compared with what real gunicorn sends for the
same requests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from conftest import TESTS, ServerProcess, fastwsgi_env, server_command
from test_hooks import get as ask  # the status of GET path on a connection of its own

LINE = re.compile(r"^(?P<name>[^:|]+):(?P<value>-?[\d.]+)\|(?P<kind>c|ms|g|h)"
                  r"(?:\|@(?P<rate>[\d.e-]+))?(?:\|#(?P<tags>.*))?$")

# 6 x 200, 3 x 404, 2 x 500 (an app error, logged with its traceback).
REQUESTS = ["/hello"] * 6 + ["/status?code=404"] * 3 + ["/raise-before"] * 2


class Sink:
    """A UDP socket that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def receive(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.lines += data.decode("ascii").split("\n")

    def totals(self) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
        """Counts per (name, kind), each line counted 1/rate times as
        StatsD does; and each gauge's last value."""
        counts: dict[tuple[str, str], float] = defaultdict(float)
        gauges: dict[str, float] = {}
        for line in self.lines:
            m = LINE.match(line)
            assert m, f"not a StatsD line: {line!r}"
            rate = float(m["rate"] or 1.0)
            if m["kind"] == "c":
                counts[m["name"], "c"] += float(m["value"]) / rate
            elif m["kind"] == "g":
                gauges[m["name"]] = float(m["value"])
            else:
                counts[m["name"], m["kind"]] += 1 / rate
        return dict(counts), gauges

    def close(self) -> None:
        self.sock.close()


def request_metrics(sink: Sink, prefix: str, expected: int,
                    timeout: float = 15.0) -> dict[tuple[str, str], float]:
    """Receive until the requests are all counted (they are sent once a
    second), then the request metrics without the prefix."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.receive(time.monotonic() + 0.5)
        counts, _ = sink.totals()
        if counts.get((prefix + "gunicorn.requests", "c"), 0) >= expected and \
                counts.get((prefix + "gunicorn.request.duration", "ms"), 0) >= expected:
            break
    counts, _ = sink.totals()
    return {(name[len(prefix):], kind): round(n, 3) for (name, kind), n in counts.items()
            if name.startswith(prefix + "gunicorn.request")}


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def test_counts_durations_workers_and_log_records(sink):
    srv = ServerProcess("apps:router", "--workers", "2", "--statsd-host",
                        f"127.0.0.1:{sink.port}", "--statsd-prefix", "shop.",
                        "--dogstatsd-tags", "env:test,team:web")
    try:
        assert [ask(srv.port, p) for p in REQUESTS] == [200] * 6 + [404] * 3 + [500] * 2
        got = request_metrics(sink, "shop.", len(REQUESTS))
        assert got == {("gunicorn.requests", "c"): 11, ("gunicorn.request.status.200", "c"): 6,
                       ("gunicorn.request.status.404", "c"): 3,
                       ("gunicorn.request.status.500", "c"): 2,
                       ("gunicorn.request.duration", "ms"): 11}, sink.lines
        # The two app errors, each logged with its traceback.
        deadline = time.monotonic() + 5
        while sink.totals()[0].get(("shop.gunicorn.log.exception", "c"), 0) < 2 \
                and time.monotonic() < deadline:
            sink.receive(time.monotonic() + 0.5)
        counts, gauges = sink.totals()
        assert counts.get(("shop.gunicorn.log.exception", "c")) == 2, sink.lines
        assert gauges["shop.gunicorn.workers"] == 2
        assert all(line.endswith("|#env:test,team:web") for line in sink.lines), sink.lines
    finally:
        srv.stop()
        srv.cleanup()


def test_one_process_and_the_last_second_is_sent_at_the_stop(sink):
    srv = ServerProcess("apps:router", "--statsd-host", f"127.0.0.1:{sink.port}")
    try:
        assert ask(srv.port, "/hello") == 200
        assert srv.stop() == 0      # within the second: sent by the stop
        sink.receive(time.monotonic() + 1.0)
        counts, gauges = sink.totals()
        assert counts.get(("gunicorn.requests", "c")) == 1, sink.lines
        assert counts.get(("gunicorn.request.status.200", "c")) == 1, sink.lines
        assert gauges.get("gunicorn.workers") == 1, sink.lines
    finally:
        srv.cleanup()


def test_the_same_counts_as_gunicorn_for_the_same_requests(sink):
    """gunicorn (sync workers) and fastwsgi, each with a StatsD sink, the
    same requests: the same request metrics, under the same names and
    types, summed (gunicorn sends a datagram per request, fastwsgi a
    second's worth at a time)."""
    pytest.importorskip("gunicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--statsd-host", f"127.0.0.1:{sink.port}", "--statsd-prefix", "shop", "apps:router"],
        cwd=TESTS, env=fastwsgi_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ask(port, "/hello")
                break
            except OSError:
                assert time.monotonic() < deadline and g.poll() is None, "gunicorn did not serve"
                time.sleep(0.1)
        sink.lines.clear()
        sink.receive(time.monotonic() + 0.3)
        sink.lines.clear()
        for path in REQUESTS:
            ask(port, path)
        theirs = request_metrics(sink, "shop.", len(REQUESTS))
    finally:
        os.killpg(g.pid, signal.SIGKILL)
        g.wait()
    ours_sink = Sink()
    srv = ServerProcess("apps:router", "--workers", "2", "--statsd-host",
                        f"127.0.0.1:{ours_sink.port}", "--statsd-prefix", "shop")
    try:
        for path in REQUESTS:
            ask(srv.port, path)
        ours = request_metrics(ours_sink, "shop.", len(REQUESTS))
    finally:
        srv.stop()
        srv.cleanup()
        ours_sink.close()
    assert theirs[("gunicorn.requests", "c")] == len(REQUESTS), theirs
    assert ours == theirs


def test_a_bad_address_is_one_line():
    out = subprocess.run([*server_command(), "--statsd-host",
                          "host:port:x", "apps:router"], cwd=TESTS, env=fastwsgi_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--statsd-host" in lines[0] and "unix:PATH" in lines[0], out.stderr
