"""Stopping: SIGTERM/SIGINT finish in-flight requests, close idle
connections and exit 0; a second signal stops at once; --graceful-timeout
bounds the wait; a unix socket file is removed at exit.

The app runs in the loop's only thread: while it is inside a call (a
/sleep), the loop acts on a signal as soon as the call returns."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from conftest import TEST_THREADS, read_response, recv_all

SIGNALS = [signal.SIGTERM, signal.SIGINT]
CHUNK = 65536
CHUNKS = 400  # 25 MiB: far more than the socket buffers hold
STREAM = f"GET /stream?n={CHUNKS}&size={CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def wait_exit(server, timeout: float) -> tuple[int | None, float]:
    t0 = time.monotonic()
    try:
        code = server.proc.wait(timeout)
    except Exception:
        code = None
    return code, time.monotonic() - t0


def start_stream(server) -> tuple[socket.socket, bytes]:
    """A response in flight that the client does not read yet: the server
    waits in its loop with most of the body still to send."""
    c = server.connect(timeout=10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    c.sendall(STREAM)
    first = c.recv(4096)
    assert first.startswith(b"HTTP/1.1 200 ")
    time.sleep(0.2)
    return c, first


def idle_keepalive(server) -> socket.socket:
    c = server.connect()
    c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body, _ = read_response(c)
    assert status == 200 and body == b"Hello, World!"
    return c


def is_closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def refused(server) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def expected_stream_body() -> bytes:
    return b"".join(str(i % 10).encode() * CHUNK for i in range(CHUNKS))


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_with_request_in_app(start_server, sig):
    s = start_server("apps:router")
    idle = idle_keepalive(s)
    busy = s.connect(timeout=10)
    busy.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # the app is sleeping now
    s.signal(sig)
    time.sleep(0.1)  # (the handler runs once the loop reads its wake-up)
    # a connection made meanwhile is refused (the listeners close when the
    # signal is handled) or, if the kernel queued it first, never served
    try:
        late = s.connect(timeout=10)
        late.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    except ConnectionRefusedError:
        late = None
    # the in-flight request ends with its full response, and a close
    status, headers, body, rest = read_response(busy, timeout=10)
    assert status == 200 and body == b"slept"
    assert headers.get("connection") == "close"
    assert is_closed(busy)
    assert is_closed(idle)
    try:
        assert late is None or recv_all(late, timeout=5) == b""
    except ConnectionResetError:
        pass
    code, _ = wait_exit(s, 10)
    assert code == 0
    out = s.output()
    assert "fastwsgi stopped" in out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert refused(s)
    for c in (idle, busy, late):
        if c is not None:
            c.close()


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_with_response_streaming(start_server, sig):
    s = start_server("apps:router")
    idle = idle_keepalive(s)
    stream, first = start_stream(s)
    s.signal(sig)
    # new connections are refused at once, idle ones closed at once,
    # while the response in flight goes on
    deadline = time.monotonic() + 3
    while not refused(s) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert refused(s)
    assert is_closed(idle, timeout=3)
    assert s.alive()
    # the client reads: the whole response arrives, then the server exits
    data = first + recv_all(stream, timeout=10)
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert chunked.endswith(b"\r\n0\r\n\r\n")
    body = b""
    rest = chunked
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    assert body == expected_stream_body()
    code, _ = wait_exit(s, 10)
    assert code == 0
    assert "fastwsgi stopped" in s.output()
    stream.close()
    idle.close()


@pytest.mark.parametrize("first,second", [
    (signal.SIGTERM, signal.SIGTERM),
    (signal.SIGINT, signal.SIGINT),
    (signal.SIGTERM, signal.SIGINT),
], ids=["TERM-TERM", "INT-INT", "TERM-INT"])
def test_second_signal_stops_at_once(start_server, first, second):
    s = start_server("apps:router")
    stream, _ = start_stream(s)
    s.signal(first)
    time.sleep(0.3)
    assert s.alive()  # still waiting for the response in flight
    s.signal(second)
    code, elapsed = wait_exit(s, 10)
    assert code == 0
    assert elapsed < 1.0
    data = recv_all(stream, timeout=5)
    # the response was cut: the client never gets the last chunk
    assert not data.endswith(b"\r\n0\r\n\r\n")
    out = s.output()
    assert "again" in out
    assert "fastwsgi stopped" in out
    assert "Traceback" not in out
    stream.close()


def test_second_signal_during_app_call(start_server):
    s = start_server("apps:router")
    busy = s.connect(timeout=10)
    t0 = time.monotonic()
    busy.sendall(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.signal(signal.SIGTERM)
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    code, _ = wait_exit(s, 10)
    ended = time.monotonic() - t0
    assert code == 0
    if TEST_THREADS:
        # the second signal stops at once; the app thread is left behind
        assert 0.4 < ended < 1.4, ended
    else:
        # the call cannot be cut short, but nothing waits after it
        assert 1.4 < ended < 2.5, ended
    busy.close()


def test_graceful_timeout_bounds_the_wait(start_server):
    s = start_server("apps:router", "--graceful-timeout", "0.5")
    stream, _ = start_stream(s)
    s.signal(signal.SIGTERM)
    code, elapsed = wait_exit(s, 10)
    assert code == 0
    assert 0.4 < elapsed < 1.5, elapsed
    data = recv_all(stream, timeout=5)
    assert not data.endswith(b"\r\n0\r\n\r\n")
    assert len(data) < CHUNKS * CHUNK
    out = s.output()
    assert "0.5s" in out
    assert "fastwsgi stopped" in out
    stream.close()


def test_graceful_timeout_with_long_app_call(start_server):
    s = start_server("apps:router", "--graceful-timeout", "0.5")
    busy = s.connect(timeout=10)
    t0 = time.monotonic()
    busy.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    code, _ = wait_exit(s, 10)
    ended = time.monotonic() - t0
    assert code == 0
    if TEST_THREADS:
        # On an app thread the call is left behind at the deadline (a
        # thread cannot be stopped); the process leaves without it.
        assert 0.6 < ended < 1.9, ended
        assert "still inside the app" in s.output()
    else:
        # Inline the app call runs to its end; the server leaves right
        # after it.
        assert 1.9 < ended < 3.0, ended
    data = recv_all(busy, timeout=5)
    # whatever reached the client is a whole response, never a torn one
    if data:
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.endswith(b"\r\n\r\nslept")
    busy.close()


def test_graceful_stop_when_idle_is_quick(start_server):
    s = start_server("apps:router")
    idle = [idle_keepalive(s) for _ in range(5)]
    s.signal(signal.SIGTERM)
    code, elapsed = wait_exit(s, 10)
    assert code == 0
    assert elapsed < 1.0
    for c in idle:
        assert is_closed(c)
        c.close()


def test_partial_request_head_at_shutdown(start_server):
    # a request whose head is still arriving is in flight: it gets served
    s = start_server("apps:router")
    c = s.connect(timeout=10)
    c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.2)
    s.signal(signal.SIGTERM)
    time.sleep(0.2)
    c.sendall(b"\r\n")
    data = recv_all(c, timeout=5)
    out = s.output()
    code, _ = wait_exit(s, 10)
    assert code == 0
    assert data.startswith(b"HTTP/1.1 200 "), (data, out)
    assert data.endswith(b"Hello, World!")
    c.close()


@pytest.mark.parametrize("immediate", [False, True], ids=["graceful", "immediate"])
def test_unix_socket_removed_at_exit(start_server, tmp_path, immediate):
    path = str(tmp_path / "stop.sock")
    s = start_server("apps:router", "--bind", f"unix:{path}")
    assert os.path.exists(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(path)
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert recv_all(c).endswith(b"Hello, World!")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if immediate:
        # a response in flight keeps the server waiting for a second signal
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        stream.settimeout(5)
        stream.connect(path)
        stream.sendall(STREAM)
        assert stream.recv(4096).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.2)
    s.signal(signal.SIGTERM)
    if immediate:
        time.sleep(0.3)
        assert s.alive()
        s.signal(signal.SIGTERM)
    code, _ = wait_exit(s, 10)
    stream.close()
    assert code == 0
    assert not os.path.exists(path)
    assert "fastwsgi stopped" in s.output()


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_repeated_signals_still_exit_cleanly(start_server, tmp_path, sig):
    # however the signals fall (during the loop, or while the server cleans
    # up after it), a stop asked for by signals ends with status 0, the
    # closing line and the socket file gone
    path = str(tmp_path / "repeat.sock")
    s = start_server("apps:router", "--bind", f"unix:{path}")
    deadline = time.monotonic() + 5
    while s.alive() and time.monotonic() < deadline:
        try:
            s.signal(sig)
        except ProcessLookupError:
            break
        time.sleep(0.001)
    code, _ = wait_exit(s, 10)
    out = s.output()
    assert code == 0, (code, out)
    assert "fastwsgi stopped" in out
    assert "Traceback" not in out
    assert not os.path.exists(path)


@pytest.mark.parametrize("second_signal", [False, True], ids=["deadline", "second-signal"])
def test_a_stream_the_app_keeps_producing_is_cut_at_the_deadline(start_server, second_signal):
    """A 4 s stream of small blocks (the loop gets control between them):
    --graceful-timeout 1 and SIGTERM at 0.3 s end it about 1 s after the
    signal, or at once on a second signal, with close() called, instead of
    waiting for the app to finish."""
    s = start_server("apps:hazards", "--graceful-timeout", "1")
    c = s.connect(timeout=10)
    c.sendall(b"GET /drip?n=40&s=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.3)
    s.signal(signal.SIGTERM)
    if second_signal:
        time.sleep(0.2)
        s.signal(signal.SIGINT)
    code, elapsed = wait_exit(s, 10)
    assert code == 0
    assert elapsed < (0.8 if second_signal else 1.8), elapsed
    data = recv_all(c, timeout=5)
    assert not data.endswith(b"\r\n0\r\n\r\n")    # cut, and the client can tell
    c.close()


def test_new_connections_are_refused_as_soon_as_the_drain_starts(start_server):
    """While a request is still being answered after SIGTERM, a new client
    is refused at once, not queued and reset when the drain ends."""
    s = start_server("apps:hazards", "--graceful-timeout", "3")
    c = s.connect(timeout=10)
    c.sendall(b"GET /drip?n=15&s=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 200 ")
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((s.host, s.port), timeout=5)
    assert time.monotonic() - t0 < 0.5
    data = recv_all(c, timeout=5)
    assert data.endswith(b"\r\n0\r\n\r\n")      # the stream in flight finished
    assert wait_exit(s, 10)[0] == 0
    c.close()


STOP_FROM_ANOTHER_THREAD = r"""
import socket, sys, threading, time
from fastwsgi.config import make_config
from fastwsgi.server import STOP_GRACEFUL, Server

def app(environ, start_response):
    time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]

srv = Server(app, make_config({"port": 0, "threads": int(sys.argv[1])}))
srv.bind()
port = srv.listeners[0].sock.getsockname()[1]
loop = threading.Thread(target=srv.serve, args=(False,))
loop.start()
got = []

def client():
    for _ in range(100):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except OSError:
            time.sleep(0.05)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    got.append(data)

asker = threading.Thread(target=client)
asker.start()
time.sleep(0.25)               # the request is in the app now
srv.stop(STOP_GRACEFUL)        # from the main thread, not the loop's
loop.join(10)
asker.join(10)
print("stopped" if not loop.is_alive() else "still running", got[0][-4:] if got else None)
"""


@pytest.mark.parametrize("threads", ["0", "2"])
def test_stop_from_another_thread_is_carried_out_by_the_loop(threads):
    """A server run on a thread of its own (embedded), stopped from the main
    thread: the loop stops gracefully, the request in flight finishes."""
    import subprocess
    import sys

    from conftest import TESTS, fastwsgi_env

    out = subprocess.run([sys.executable, "-c", STOP_FROM_ANOTHER_THREAD, threads],
                         capture_output=True, text=True, timeout=60, env=fastwsgi_env(),
                         cwd=TESTS)
    assert out.stdout.strip() == "stopped b'done'", out.stdout + out.stderr
