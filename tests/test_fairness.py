"""Fairness in the patterns real deployments make, with real processes and
real clients: a queue a little deeper than the thread pool, a few
keep-alive connections over several workers (an nginx upstream pool), a
worker replaced under them, a lone request right after a reload.

Each test states the figure the server showed before the change that
made it pass; the bounds are loose enough for a busy CI machine and far
from what unfairness looks like."""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_nginx import Nginx
from test_workers import children, ready_workers, wait_for

# Tail latencies and shares: measured alone (scripts/run-suite).
pytestmark = pytest.mark.quiet


def wrk_latency(port: int, path: str, connections: int, seconds: int) -> dict[str, float]:
    """wrk's latency percentiles in ms, and its request count."""
    assert shutil.which("wrk"), "wrk is needed (scripts/deps installs it)"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}", "--latency", "--timeout", "10",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    found = {p: float(v) * scale[u] for p, v, u in
             re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    assert set(found) == {"50", "75", "90", "99"}, out
    found["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    return found


def test_a_queue_deeper_than_the_pool_is_served_in_turn(start_server):
    # 8 clients, 4 threads, an app that computes for 1 ms: the calls are
    # serialised by the interpreter lock, so each request should wait for
    # the ones ahead of it and no more (about 8 ms).  A thread that took
    # the next queued request without sleeping got the lock back ahead of
    # the threads holding older requests: p50 5 ms, p99 450 ms.
    s = start_server("apps:router", "--threads", "4")
    lat = wrk_latency(s.port, "/spin?ms=1", connections=8, seconds=4)
    assert lat["requests"] > 500, lat
    assert lat["99"] < 8 * max(lat["50"], 4.0), lat


def keepalive_clients(port: int, count: int, seconds: float, path: str = "/spin?ms=1",
                      after: float = 0.0, retry: bool = False) -> collections.Counter:
    """`count` clients opened together, each sending requests on one
    keep-alive connection (a new one when the server closes it) for
    `seconds`; counts the answers by the pid that gave them, from `after`
    seconds on.  retry: a connection closed without an answer (its worker
    was killed) is opened again and the request sent again."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def client() -> None:
        sock = None
        try:
            barrier.wait()
            t0 = time.monotonic()
            end = t0 + seconds
            while time.monotonic() < end:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                data = b""
                try:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    while b"\r\n\r\n" not in data:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except (ConnectionResetError, BrokenPipeError):
                    if not retry:
                        raise
                    data = b""  # a killed worker's connection is reset
                if not data and retry:
                    sock.close()
                    sock = None
                    continue
                assert data, "closed before an answer"
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                while len(body) < length:
                    body += sock.recv(4096)
                if time.monotonic() - t0 >= after:
                    with lock:
                        counts[int(body)] += 1
                if b"connection: close" in head.lower():
                    sock.close()
                    sock = None
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            if sock is not None:
                sock.close()

    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    assert not errors, errors
    return counts


def assert_spread(counts: collections.Counter, pids: set[int], least: float) -> None:
    total = sum(counts.values())
    assert total > 0
    shares = {pid: counts.get(pid, 0) / total for pid in pids}
    assert min(shares.values()) >= least, (shares, counts)


@pytest.mark.parametrize("clients", [2, 8, 50])
def test_keepalive_connections_opened_together_spread_over_workers(start_server, clients):
    # Before: with 2 clients, one worker served every request in most
    # starts (EPOLLEXCLUSIVE wakes the first worker registered).
    s = start_server("apps:router", "--workers", "2", "--threads", "4")
    pids = ready_workers(s, 2)
    counts = keepalive_clients(s.port, clients, 2.5, after=0.5)
    assert set(counts) <= pids
    assert_spread(counts, pids, 0.3)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTTOU+SIGTTIN"])
def test_connections_even_out_after_a_worker_is_replaced(start_server, how):
    # The clients of the worker that went (killed, or retired gracefully
    # as max-requests and SIGTTOU do) reconnect to the one left, and stay
    # there once a new worker is up unless connections are handed back:
    # before, the survivor served them all for their whole life.
    s = start_server("apps:router", "--workers", "2", "--threads", "4")
    pids = ready_workers(s, 2)

    def replace() -> None:
        time.sleep(0.5)
        if how == "SIGKILL":
            os.kill(max(pids), signal.SIGKILL)
            return
        s.signal(signal.SIGTTOU)
        wait_for(lambda: len(children(s.proc.pid)) == 1, 10)
        s.signal(signal.SIGTTIN)

    mover = threading.Thread(target=replace, daemon=True)
    mover.start()
    counts = keepalive_clients(s.port, 8, 5.0, path="/spin?ms=0.5", after=3.5, retry=True)
    mover.join(10)
    now = children(s.proc.pid)
    assert len(now) == 2 and now != pids, s.output()
    # The last 1.5 s: the new worker has its share.
    assert set(counts) <= now, (counts, now)
    assert_spread(counts, now, 0.25)


def test_keepalive_pool_behind_nginx_spreads_over_workers(start_server, tmp_path: Path):
    s = start_server("apps:router", "--workers", "2", "--threads", "4")
    pids = ready_workers(s, 2)
    nginx = Nginx(tmp_path, f"127.0.0.1:{s.port}", keepalive=16)
    try:
        counts = keepalive_clients(nginx.port, 16, 3.0, after=1.0)
    finally:
        nginx.stop()
    assert set(counts) <= pids
    assert_spread(counts, pids, 0.3)


def lone_request(port: int, timeout: float) -> bool:
    """One request on a connection of its own: answered within `timeout`?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def hold_idle(port: int, count: int) -> list[socket.socket]:
    """Keep-alive connections that made one request and then sit idle."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        socks.append(sock)
    return socks


@pytest.mark.parametrize("how", ["SIGHUP", "max-requests"])
def test_no_lone_connection_is_stranded_after_workers_are_replaced(start_server, how):
    # The quiet-site pattern: idle keep-alive connections keep the old
    # workers draining; a new client then comes alone.  Before, a retiring
    # worker's epoll still watched the listener (the master and the other
    # workers keep it open) and took the kernel's one wake-up for the new
    # connection: 16 of 30 such clients got no answer within a second.
    args = ["--workers", "2", "--threads", "4", "--graceful-timeout", "10"]
    if how == "max-requests":
        args += ["--max-requests", "4"]
    s = start_server("apps:router", *args)
    ready_workers(s, 2)
    unanswered = 0
    tried = 0
    for _ in range(12):
        idle = hold_idle(s.port, 6)
        if how == "SIGHUP":
            s.signal(signal.SIGHUP)
            time.sleep(0.3)
        for _ in range(4):
            tried += 1
            unanswered += not lone_request(s.port, 3.0)
            time.sleep(0.05)
        for sock in idle:
            sock.close()
    assert unanswered == 0, (unanswered, tried, s.output()[-3000:])
    assert s.alive()


def test_inline_workers_under_overload_keep_every_client_waiting_alike(start_server):
    # 2 inline workers, a view of about 10 ms, 300 clients: each waits for
    # about 300 * 10 ms / 2 = 1.5 s.  Before, one worker took most of the
    # connections and its clients waited many times longer than the
    # other's (wrk timeouts past 10 s, which wrk_latency refuses).  The
    # last percent is the start's burst of 300 connections, accepted in
    # turns between rounds (under ASan, p99 6.3 s with p90 351 ms): the
    # steady state is judged by p90.
    s = start_server("apps:router", "--workers", "2")
    ready_workers(s, 2)
    lat = wrk_latency(s.port, "/sleep?s=0.01", connections=300, seconds=8)
    assert lat["90"] < 4 * max(lat["50"], 200.0), lat


def test_the_slow_call_warning_names_the_slowest_request_of_a_round(start_server):
    # Inline, requests that arrive together are answered in one round;
    # the warning named only the round's size and called it an app call.
    s = start_server("apps:router", "--threads", "0")
    busy = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    busy.sendall(b"GET /sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)  # it is in its call: the next three come in one turn
    paths = ("/hello", "/sleep?s=1.2", "/hello")
    socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in paths]
    for sock, path in zip(socks, paths):
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for sock in (busy, *socks):
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    line = wait_for(lambda: next((ln for ln in s.output().splitlines()
                                  if "on the event loop" in ln), None), 5)
    assert line, s.output()
    assert re.search(r"a round of [23] requests took 1\.\d s on the event loop "
                     r"\(the slowest, 1\.\d s: GET /sleep\)", line), line


def test_the_slow_call_warning_names_a_lone_call(start_server):
    s = start_server("apps:router", "--threads", "0")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"GET /sleep?s=1.1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    line = wait_for(lambda: next((ln for ln in s.output().splitlines()
                                  if "held the event loop" in ln), None), 5)
    assert line and "an app call (GET /sleep) held the event loop for 1." in line, line
