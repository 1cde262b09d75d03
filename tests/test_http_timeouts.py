"""Timeouts: idle keep-alive connections, slow heads (slowloris), stalled
bodies, and slow clients that must not hold up anyone else."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import ServerProcess, parse_responses, read_response

HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def wait_close(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """Read until the server closes.  Returns the bytes and the seconds it
    took, or None when the connection was still open at the timeout."""
    start = time.monotonic()
    deadline = start + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), None
        except ConnectionResetError:
            return b"".join(chunks), time.monotonic() - start
        if not data:
            return b"".join(chunks), time.monotonic() - start
        chunks.append(data)


def timed_hello(srv) -> float:
    start = time.monotonic()
    with srv.connect(timeout=3) as s:
        s.sendall(CLOSE)
        out, _ = wait_close(s, 3)
    assert parse_responses(out)[0][2] == b"Hello, World!"
    return time.monotonic() - start


@pytest.fixture(scope="module")
def quick():
    srv = ServerProcess("apps:router", "--keepalive-timeout", "0.5",
                        "--header-timeout", "0.6", "--body-timeout", "0.5")
    yield srv
    alive = srv.alive()
    srv.stop()
    srv.cleanup()
    assert alive


# ---------------------------------------------------------------- keep-alive


def test_idle_keepalive_connection_closes_silently(quick):
    with quick.connect() as s:
        s.sendall(HELLO)
        assert read_response(s)[2] == b"Hello, World!"
        start = time.monotonic()
        out, took = wait_close(s, 3)
    assert out == b""
    assert took is not None, "the idle connection was never closed"
    assert 0.3 <= time.monotonic() - start <= 2.0


def test_keepalive_timer_restarts_with_each_request(quick):
    with quick.connect() as s:
        start = time.monotonic()
        for _ in range(4):
            s.sendall(HELLO)
            assert read_response(s)[2] == b"Hello, World!"
            time.sleep(0.3)
        # 1.2 s in all, more than one timeout, yet still open
        assert time.monotonic() - start > 1.0
        s.sendall(HELLO)
        assert read_response(s)[2] == b"Hello, World!"


def test_default_keepalive_is_not_short(server):
    with server.connect() as s:
        s.sendall(HELLO)
        read_response(s)
        out, took = wait_close(s, 1.0)
        assert took is None
        s.sendall(HELLO)
        assert read_response(s)[2] == b"Hello, World!"


# ---------------------------------------------------------------- slow heads


def test_incomplete_head_gets_408(quick):
    with quick.connect() as s:
        start = time.monotonic()
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        out, took = wait_close(s, 3)
    assert took is not None
    assert out.startswith(b"HTTP/1.1 408 ")
    assert parse_responses(out)[0][1]["connection"].lower() == "close"
    assert 0.4 <= time.monotonic() - start <= 2.0


def test_slowloris_trickle_gets_408(quick):
    """A byte every 0.1 s keeps the connection busy but the head must still
    be complete within the header timeout."""
    head = b"GET /hello HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"s" * 200
    with quick.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        got = b""
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            s.settimeout(0.1)
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            got += data
            break
        out, took = wait_close(s, 3)
        elapsed = time.monotonic() - start
    out = got + out
    assert out.startswith(b"HTTP/1.1 408 "), out[:40]
    assert took is not None
    assert elapsed <= 2.0


def test_head_timeout_on_a_kept_alive_connection(quick):
    with quick.connect() as s:
        s.sendall(HELLO)
        assert read_response(s)[2] == b"Hello, World!"
        s.sendall(b"GET /hello HTTP/1.1\r\n")
        out, took = wait_close(s, 3)
    assert took is not None
    assert out.startswith(b"HTTP/1.1 408 ")


def test_connection_that_sends_nothing_is_closed(quick):
    with quick.connect() as s:
        out, took = wait_close(s, 3)
    assert took is not None
    assert out == b"" or out.startswith(b"HTTP/1.1 408 ")


# ---------------------------------------------------------------- slow bodies


def test_stalled_body_gets_408(quick):
    with quick.connect() as s:
        s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
                  + b"x" * 10)
        start = time.monotonic()
        out, took = wait_close(s, 3)
    assert took is not None
    assert out.startswith(b"HTTP/1.1 408 ")
    assert [r[0] for r in parse_responses(out)] == [408]
    assert 0.3 <= time.monotonic() - start <= 2.0


def test_stalled_chunked_body_gets_408(quick):
    with quick.connect() as s:
        s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                  b"\r\n\r\n5\r\nhello\r\n")
        out, took = wait_close(s, 3)
    assert took is not None
    assert out.startswith(b"HTTP/1.1 408 ")


def test_stalled_body_after_100_continue_gets_408(quick):
    with quick.connect() as s:
        s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        out, took = wait_close(s, 3)
    assert took is not None
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 408 ")


def test_slow_but_steady_body_is_received(quick):
    """The body timeout is the wait for the next piece, not for the whole
    body: pieces every 0.2 s for longer than the timeout are fine."""
    body = b"0123456789" * 8
    with quick.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                  % len(body))
        start = time.monotonic()
        for i in range(0, len(body), 10):
            time.sleep(0.2)
            s.sendall(body[i:i + 10])
        assert time.monotonic() - start > 1.0
        status, _, got, _ = read_response(s)
    assert (status, got) == (200, body)


# ---------------------------------------------------------------- fairness


def test_slow_client_does_not_block_others(quick):
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        data = b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
        data += b"y" * 1000
        for byte in data:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.01)

    slow_head = quick.connect()
    slow_body = quick.connect()
    slow_head.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    slow_body.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threads = [threading.Thread(target=trickle, args=(sock,), daemon=True)
               for sock in (slow_head, slow_body)]
    try:
        threads[0].start()
        slow_body.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\n"
                          b"Content-Length: 1000\r\n\r\nabc")
        time.sleep(0.05)
        for _ in range(5):
            assert timed_hello(quick) < 0.5
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(2)
        slow_head.close()
        slow_body.close()


def test_many_idle_and_partial_connections_do_not_block_others(quick):
    idle = [quick.connect() for _ in range(50)]
    try:
        for sock in idle[:25]:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        assert timed_hello(quick) < 0.5
    finally:
        for sock in idle:
            sock.close()
