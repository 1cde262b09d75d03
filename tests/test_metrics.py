"""--metrics-bind: scraped with prometheus_client's parser and counted
against the requests actually sent, in one process (inline and threaded)
and summed over a master's workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ServerProcess, fastwsgi_env, server_command
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(m: dict, name: str, **labels: str) -> float:
    return m[(name, tuple(sorted(labels.items())))]


def send(s: ServerProcess, raw: bytes) -> tuple[bytes, int]:
    """One exchange on its own connection; (response, bytes sent)."""
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        c.sendall(raw)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data, len(raw)


def settle(port: int, check, timeout: float = 5.0) -> dict:
    """Counters are published once a loop turn: scrape until they show it."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(port)
        if check(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.02)


def exercise(s: ServerProcess) -> tuple[int, int]:
    """20 2xx, 5 404, 3 refused (400) and 2 large (413) requests: returns
    (requests the app answered, bytes sent)."""
    sent = 0
    for i in range(20):
        data, n = send(s, f"GET /hello?{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                       .encode())
        assert data.startswith(b"HTTP/1.1 200 ")
        sent += n
    for _ in range(5):
        data, n = send(s, b"GET /status?code=404 HTTP/1.1\r\nHost: t\r\n"
                          b"Connection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 404 ")
        sent += n
    for _ in range(3):
        data, n = send(s, b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 ")
        sent += n
    for _ in range(2):
        data, n = send(s, b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 413 ")
        sent += n
    return 25, sent


@pytest.mark.parametrize("threads", ["0", "4"])
def test_one_process_counts_what_was_sent(threads):
    port = free_port()
    s = ServerProcess("apps:router", "--metrics-bind", f"127.0.0.1:{port}",
                      "--max-body-size", "1M", "--threads", threads)
    try:
        answered, sent = exercise(s)
        m = settle(port, lambda m: value(m, "fastwsgi_responses_total", **{"class": "4xx"})
                   == 10)
        assert value(m, "fastwsgi_responses_total", **{"class": "2xx"}) == 20
        assert value(m, "fastwsgi_responses_total", **{"class": "4xx"}) == 10
        assert value(m, "fastwsgi_refused_total", status="400") == 3
        assert value(m, "fastwsgi_refused_total", status="413") == 2
        assert value(m, "fastwsgi_request_duration_seconds_count") == answered + 2
        assert value(m, "fastwsgi_received_bytes_total") == sent
        assert value(m, "fastwsgi_sent_bytes_total") > 0
        assert value(m, "fastwsgi_threads", state="idle") == int(threads)
        # Idle keep-alive connections are counted as such.
        held = [socket.create_connection((s.host, s.port)) for _ in range(7)]
        for c in held:
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            c.recv(1000)
        m = settle(port, lambda m: value(m, "fastwsgi_connections", state="idle") == 7)
        assert value(m, "fastwsgi_connections", state="idle") == 7
        assert value(m, "fastwsgi_connections", state="active") == 0
        for c in held:
            c.close()
    finally:
        s.stop()
        s.cleanup()


def test_a_master_sums_its_workers_and_counts_restarts():
    port = free_port()
    s = ServerProcess("apps:router", "--workers", "2", "--metrics-bind", f"127.0.0.1:{port}")
    try:
        time.sleep(0.5)  # both workers up
        for i in range(40):
            send(s, f"GET /hello?{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                 .encode())
        m = settle(port, lambda m: value(m, "fastwsgi_responses_total",
                                          **{"class": "2xx"}) == 40)
        assert value(m, "fastwsgi_responses_total", **{"class": "2xx"}) == 40
        assert value(m, "fastwsgi_workers") == 2
        assert value(m, "fastwsgi_worker_restarts_total") == 0
        kids = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
        os.kill(int(kids[0]), signal.SIGKILL)
        m = settle(port, lambda m: value(m, "fastwsgi_worker_restarts_total") == 1)
        assert value(m, "fastwsgi_worker_restarts_total") == 1
        # What the dead worker had counted is kept: no counter goes back.
        assert value(m, "fastwsgi_responses_total", **{"class": "2xx"}) == 40
    finally:
        s.stop()
        s.cleanup()


def test_a_bad_address_is_one_line():
    r = subprocess.run([*server_command(), "--metrics-bind", "unix:/tmp/m.sock", "apps:hello"],
                       env=fastwsgi_env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("fastwsgi: error: --metrics-bind: must be HOST:PORT")


def test_idle_connections_to_the_metrics_port_hold_no_thread_each():
    # ThreadingHTTPServer gave every connection a thread, with no limit and
    # no timeout: 500 idle connections, 500 threads.
    port = free_port()
    s = ServerProcess("apps:router", "--metrics-bind", f"127.0.0.1:{port}")
    idle = []
    try:
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        threads = len(os.listdir(f"/proc/{s.proc.pid}/task"))
        assert threads < 40, threads
        for c in idle:
            c.close()
        idle.clear()
        # Their slots are free again: a scrape is answered.
        m = scrape(port)
        assert value(m, "fastwsgi_request_duration_seconds_count") == 0
    finally:
        for c in idle:
            c.close()
        s.stop()
        s.cleanup()
