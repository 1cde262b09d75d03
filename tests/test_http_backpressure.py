"""Backpressure: a client that does not read must cost bounded memory and
must not hold up other clients, and pipelined input waits while output is
backed up."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import ServerProcess, parse_responses, read_response

MIB = 1 << 20
CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
BIG_BODY = bytes(range(256)) * (MIB // 256)


def slow_reader(srv, rcvbuf: int = 32 * 1024) -> socket.socket:
    """A connection with a small receive buffer that the test never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect((srv.host, srv.port))
    return srv.wrap(s)


def timed_hello(srv, timeout: float = 3.0) -> float:
    start = time.monotonic()
    with srv.connect(timeout=timeout) as s:
        s.sendall(CLOSE)
        status, _, body, _ = read_response(s, timeout=timeout)
    assert body == b"Hello, World!"
    return time.monotonic() - start


def warm_up(srv) -> None:
    """Let the server reach its steady memory use before measuring."""
    with srv.connect() as s:
        for _ in range(3):
            s.sendall(b"GET /big?size=1048576 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert len(read_response(s)[2]) == MIB
        s.sendall(b"GET /stream?n=64&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert len(read_response(s)[2]) == 64 * 65536


@pytest.fixture
def srv():
    server = ServerProcess("apps:router")
    yield server
    alive = server.alive()
    out = server.output()
    server.kill()
    server.cleanup()
    assert alive, out


def test_endless_stream_to_a_non_reader_is_bounded(srv):
    warm_up(srv)
    base = srv.rss_kib()
    stuck = slow_reader(srv)
    try:
        stuck.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        # others are served at once while the stream is backed up
        for _ in range(5):
            assert timed_hello(srv) < 0.5
        time.sleep(0.7)
        grown = srv.rss_kib() - base
        assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
        assert timed_hello(srv) < 0.5
    finally:
        stuck.close()
    time.sleep(0.1)
    assert timed_hello(srv) < 0.5


def test_big_response_to_a_non_reader_does_not_block_others(srv):
    stuck = slow_reader(srv)
    try:
        stuck.sendall(b"GET /big?size=33554432 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        for _ in range(5):
            assert timed_hello(srv) < 0.5
    finally:
        stuck.close()


def test_streamed_response_to_a_non_reader_does_not_block_others(srv):
    stuck = slow_reader(srv)
    try:
        stuck.sendall(b"GET /stream?n=2000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        for _ in range(5):
            assert timed_hello(srv) < 0.5
    finally:
        stuck.close()


def test_write_callable_to_a_non_reader_is_cut_off_by_the_write_timeout(start_server):
    # write() must not return before its data is on its way (PEP 3333), and
    # the app runs on the loop's thread: a stalled reader holds the server
    # up, but only until --write-timeout drops it.  Iterables do not block.
    srv = start_server("apps:router", "--write-timeout", "1")
    stuck = slow_reader(srv)
    try:
        stuck.sendall(b"GET /write-big?n=256 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        took = timed_hello(srv, timeout=5)
        assert took < 2.5, f"the stalled write() held the server for {took:.1f}s"
        # (On app threads the hello does not wait for the cut: give the
        # write timeout its time before reading.)
        time.sleep(1.5)
        stuck.settimeout(5)
        received = 0
        while True:
            data = stuck.recv(1 << 20)
            if not data:
                break
            received += len(data)
        assert received < 256 * 65536, "the stalled connection was not cut off"
    finally:
        stuck.close()


def test_pipelined_input_waits_while_output_is_backed_up(srv):
    warm_up(srv)
    base = srv.rss_kib()
    n = 40
    req = b"GET /big?size=1048576 HTTP/1.1\r\nHost: t\r\n\r\n"
    stuck = slow_reader(srv)
    try:
        stuck.sendall(req * (n - 1) + b"GET /big?size=1048576 HTTP/1.1\r\n"
                      b"Host: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.8)
        grown = srv.rss_kib() - base
        # 40 MiB of responses are asked for; only a few may be held
        assert grown < 12 * 1024, f"RSS grew by {grown} KiB"
        assert timed_hello(srv) < 0.5
        # now read everything: all the responses, complete and in order
        stuck.settimeout(5)
        chunks = []
        while True:
            data = stuck.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
    finally:
        stuck.close()
    responses = parse_responses(b"".join(chunks))
    assert len(responses) == n
    assert all(r[0] == 200 and r[2] == BIG_BODY for r in responses)


def test_pipelined_streams_wait_while_output_is_backed_up(srv):
    warm_up(srv)
    base = srv.rss_kib()
    n = 30
    req = b"GET /stream?n=16&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n"
    stuck = slow_reader(srv)
    try:
        stuck.sendall(req * n + CLOSE)
        time.sleep(0.8)
        grown = srv.rss_kib() - base
        assert grown < 12 * 1024, f"RSS grew by {grown} KiB"
        stuck.settimeout(5)
        chunks = []
        while True:
            data = stuck.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
    finally:
        stuck.close()
    responses = parse_responses(b"".join(chunks))
    assert len(responses) == n + 1
    expected = b"".join(str(i % 10).encode() * 65536 for i in range(16))
    assert all(r[2] == expected for r in responses[:n])


def test_write_timeout_closes_a_non_reader(start_server):
    srv = start_server("apps:router", "--write-timeout", "0.5")
    stuck = slow_reader(srv)
    try:
        stuck.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.5)
        # what the kernel buffered can be read, then the connection ends
        stuck.settimeout(3)
        total = 0
        start = time.monotonic()
        ended = False
        while time.monotonic() - start < 3:
            try:
                data = stuck.recv(1 << 20)
            except ConnectionResetError:
                ended = True
                break
            if not data:
                ended = True
                break
            total += len(data)
        assert ended, f"still streaming after {total} bytes"
        assert total < 32 * MIB
    finally:
        stuck.close()
    assert timed_hello(srv) < 0.5
