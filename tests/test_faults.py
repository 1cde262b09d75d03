"""Faults: clients that vanish at every stage of an exchange, slowloris,
ten thousand idle connections, a slow reader of an endless stream, and
apps that break the WSGI contract.

After every fault the server must answer the next request at once, must
have closed the app's iterable (/stats: closed == created) and must hold
no more file descriptors than before.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import struct
import time

import pytest
from conftest import ServerProcess, parse_responses, raw, read_response, recv_all

HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
KIB = 1024
MIB = 1024 * KIB


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def stats(srv) -> dict:
    out = parse_responses(raw(srv, b"GET /stats HTTP/1.1\r\nHost: t\r\n"
                                   b"Connection: close\r\n\r\n"))
    return json.loads(out[0][2])


def hello_time(srv, timeout: float = 3.0) -> float:
    """Seconds for a fresh connection to get /hello answered."""
    start = time.monotonic()
    with srv.connect(timeout=timeout) as s:
        s.sendall(CLOSE)
        status, _, body, _ = read_response(s, timeout=timeout)
    took = time.monotonic() - start
    assert (status, body) == (200, b"Hello, World!")
    return took


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def raise_nofile(n: int) -> bool:
    """Raise this process's descriptor limit to n (servers started after
    this inherit it).  False when the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= n:
        return True
    if hard != resource.RLIM_INFINITY and hard < n:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return True


def settled_fds(srv) -> int:
    """The server's descriptor count once it stops changing (a connection
    the server has just answered may still be closing)."""
    last = srv.pid_fds()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = srv.pid_fds()
        if now == last:
            return now
        last = now
    return last


def new_log(srv, mark: int) -> str:
    return srv.output()[mark:]


@pytest.fixture(scope="module")
def srv():
    """The router app; bodies over 64 KiB are spooled to a file, so that a
    client vanishing mid-body also tests that the spool file is closed.
    Short timeouts: a connection the server failed to notice is reaped
    before the next test, while the tests ask for far quicker closes."""
    s = ServerProcess("apps:router", "--spool-threshold", "64K",
                      "--header-timeout", "3", "--body-timeout", "3",
                      "--keepalive-timeout", "3")
    hello_time(s)
    s.idle_fds = settled_fds(s)
    yield s
    alive = s.alive()
    out = s.output()
    s.stop()
    s.cleanup()
    assert alive, "server died during the module:\n" + out


def assert_recovered(srv, before: dict, tracked: int, within: float = 1.5) -> None:
    """The fault left nothing behind: descriptors back to the idle count
    promptly, the iterable (if any) closed, the next request answered."""
    fds = wait_for(lambda: srv.pid_fds() == srv.idle_fds, within) and srv.pid_fds()
    assert fds == srv.idle_fds, (
        f"{srv.pid_fds() - srv.idle_fds} descriptor(s) still open {within} s "
        f"after the client left")
    after = wait_for(lambda: (lambda st: st if st["closed"] == st["created"] else None)(
        stats(srv)), 2.0) or stats(srv)
    assert after["created"] == before["created"] + tracked, (before, after)
    assert after["closed"] == after["created"], after
    assert hello_time(srv) < 0.5


# ---------------------------------------------------------------- vanishing clients

SPOOLED = 1 * MIB


def chunked_head(path: str = "/body") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            % path.encode())


def chunks(total: int, size: int = 16 * KIB) -> bytes:
    piece = b"%x\r\n%s\r\n" % (size, b"c" * size)
    return piece * (total // size)


# stage -> (bytes to send, bytes to read before vanishing, response
# iterables created, whole length of what the server would send)
STAGES = {
    "request-line": (b"GET /hel", 0, 0, 0),
    "headers": (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Long: " + b"a" * 100, 0, 0, 0),
    "body-cl": (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n"
                + b"b" * 4000, 0, 0, 0),
    "body-cl-spooled": (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                        % SPOOLED + b"b" * (200 * KIB), 0, 0, 0),
    "body-chunked": (chunked_head() + b"1000\r\n" + b"c" * 2000, 0, 0, 0),
    "body-chunked-spooled": (chunked_head() + chunks(160 * KIB), 0, 0, 0),
    "body-chunk-size-line": (chunked_head() + b"1000\r\n" + b"c" * 4096 + b"\r\n10", 0, 0, 0),
    "response-forever": (b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n", 256 * KIB, 1, None),
    "response-big": (b"GET /big?size=33554432 HTTP/1.1\r\nHost: t\r\n\r\n", 128 * KIB, 0,
                     32 * MIB),
    "response-stream": (b"GET /stream?n=512&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n",
                        128 * KIB, 1, 32 * MIB),
    "pipelined-unread": (b"GET /big?size=1048576 HTTP/1.1\r\nHost: t\r\n\r\n" * 16, 0, 0,
                         16 * MIB),
    "after-response": (HELLO, 1, 0, 0),
}
REQUEST_STAGES = {k for k, v in STAGES.items() if v[1] == 0 and v[3] == 0}


def drain(sock: socket.socket, n: int) -> int:
    got = 0
    while got < n:
        data = sock.recv(min(n - got, 1 << 20))
        assert data, f"closed after {got} of {n} bytes"
        got += len(data)
    return got


@pytest.mark.parametrize("mode", ["rst", "half-close", "close"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_client_vanishes(srv, stage, mode):
    data, read_first, tracked, whole = STAGES[stage]
    before = stats(srv)
    sock = srv.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(data)
    if stage == "after-response":
        status, _, body, _ = read_response(sock)
        assert body == b"Hello, World!"
    elif read_first:
        drain(sock, read_first)
    else:
        # let the server take in what was sent before the client goes
        time.sleep(0.05)
    if mode == "rst":
        reset(sock)
    elif mode == "close":
        sock.close()
    else:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        if stage in REQUEST_STAGES or stage == "after-response":
            # nothing more will come: the partial request is dropped and
            # the connection closed (an error response is also fine)
            start = time.monotonic()
            rest = recv_all(sock, timeout=3)
            assert time.monotonic() - start < 1.5, "half-closed connection kept open"
            assert rest == b"" or rest.startswith(b"HTTP/1.1 4"), rest[:80]
        elif whole is None:
            # an endless stream goes on after a half-close; then the
            # client goes away for good
            drain(sock, 256 * KIB)
        else:
            # the answers are still owed: all of them arrive, then the end
            total = read_first + len(recv_all(sock, timeout=10))
            assert total > whole, (total, whole)
        sock.close()
    assert_recovered(srv, before, tracked)


# The same, with the partial request and the client's FIN or RST arriving
# together while the server is busy with someone else: one readiness event
# then carries both the last bytes and the end of the connection.
BUSY_STAGES = {
    "headers": b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 3000,
    "body-cl": b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n"
               + b"b" * 3000,
}



@pytest.mark.parametrize("mode", ["rst", "half-close"])
@pytest.mark.parametrize("stage", list(BUSY_STAGES))
def test_client_vanishes_while_the_server_is_busy(start_server, stage, mode):
    # timeouts well beyond the 1.5 s allowed, so that only noticing the
    # end counts; a short graceful stop because a missed one is not idle
    srv = start_server("apps:router", "--header-timeout", "5", "--body-timeout", "5",
                       "--graceful-timeout", "0.5")
    idle_fds = settled_fds(srv)
    victim = srv.connect()
    assert wait_for(lambda: srv.pid_fds() == idle_fds + 1, 3)
    time.sleep(0.05)   # accepted and idle: its first events are consumed
    busy = srv.connect()
    assert wait_for(lambda: srv.pid_fds() == idle_fds + 2, 3)
    busy.sendall(b"GET /sleep?s=0.4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.15)   # the server is inside the app now
    victim.sendall(BUSY_STAGES[stage])
    if mode == "rst":
        reset(victim)
    else:
        victim.shutdown(socket.SHUT_WR)
    try:
        assert recv_all(busy, timeout=5).endswith(b"slept")
        busy.close()
        closed = wait_for(lambda: srv.pid_fds() == idle_fds, 1.5)
        assert closed, "the server did not notice that the client had gone"
    finally:
        victim.close()
    assert hello_time(srv) < 0.5


# ---------------------------------------------------------------- slowloris


def test_slowloris_connections_are_closed_on_schedule(start_server):
    n = 1000
    if not raise_nofile(n + 512):
        pytest.skip("the descriptor limit is too low for 1000 connections")
    srv = start_server("apps:router", "--header-timeout", "2")
    hello_time(srv)
    idle_fds = settled_fds(srv)
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    closed: dict[socket.socket, float] = {}
    answers: dict[socket.socket, bytes] = {}
    latencies = []
    try:
        for _ in range(n):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            s.setblocking(False)
            opened[s] = time.monotonic()
            answers[s] = b""
            sel.register(s, selectors.EVENT_READ)
        last_open = time.monotonic()
        while len(closed) < n and time.monotonic() - last_open < 6:
            # one more header byte on every open connection
            for s in opened:
                if s in closed:
                    continue
                try:
                    s.send(b"a")
                except OSError:
                    pass
            # an ordinary request meanwhile
            latencies.append(hello_time(srv))
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    answers[s] += data
                    if not data:
                        closed[s] = time.monotonic()
                        sel.unregister(s)
        lives = sorted(closed[s] - opened[s] for s in closed)
        print(f"\nslowloris: {len(closed)} of {n} closed; lifetimes {lives[0]:.2f}-"
              f"{lives[-1]:.2f} s (header timeout 2 s); ordinary requests meanwhile: "
              f"{len(latencies)}, slowest {max(latencies) * 1000:.1f} ms")
        assert len(closed) == n
        assert lives[0] >= 1.8, lives[:5]
        assert lives[-1] <= 3.5, lives[-5:]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values())
        assert max(latencies) < 0.1, latencies
    finally:
        sel.close()
        for s in opened:
            s.close()
    assert wait_for(lambda: srv.pid_fds() == idle_fds, 3), srv.pid_fds()
    assert hello_time(srv) < 0.1


# ---------------------------------------------------------------- idle connections


def test_ten_thousand_idle_keepalive_connections(start_server):
    n = 10_000
    if not raise_nofile(n + 1024):
        pytest.skip("the descriptor limit is too low for 10000 connections")
    srv = start_server("apps:router", "--keepalive-timeout", "2",
                       "--backlog", "4096")
    for _ in range(20):
        hello_time(srv)
    idle_fds = settled_fds(srv)
    rss_before = srv.rss_kib()
    socks: list[socket.socket] = []
    try:
        # connect in batches: the server holds them waiting for a request
        for _ in range(n // 500):
            for _ in range(500):
                socks.append(socket.create_connection((srv.host, srv.port), timeout=10))
        assert wait_for(lambda: srv.pid_fds() == idle_fds + n, 10), srv.pid_fds()
        # one request each, in batches; the keep-alive clock starts here
        start = time.monotonic()
        for i in range(0, n, 1000):
            batch = socks[i:i + 1000]
            for s in batch:
                s.sendall(HELLO)
            for s in batch:
                status, _, body, rest = read_response(s, timeout=10)
                assert (status, body, rest) == (200, b"Hello, World!", b"")
        served = time.monotonic() - start
        open_fds = srv.pid_fds()
        rss = srv.rss_kib()
        held = open_fds - idle_fds
        per_conn = (rss - rss_before) / held
        took = hello_time(srv)
        print(f"\nidle connections: {n} served in {served:.2f} s; {held} held open; server "
              f"RSS {rss_before:,} -> {rss:,} KiB = {per_conn * 1024:.0f} bytes per "
              f"connection; a fresh request under them: {took * 1000:.1f} ms")
        assert served < 1.8, "too slow to keep them all open under a 2 s timeout"
        assert held == n, held
        assert per_conn < 2.0, f"{per_conn:.2f} KiB per idle connection"
        assert took < 0.1
        # the keep-alive timeout reaps them all
        reaped = wait_for(lambda: srv.pid_fds() == idle_fds, 2 + 4, step=0.1)
        assert reaped, f"{srv.pid_fds() - idle_fds} still open"
        reaped_at = time.monotonic() - start
        print(f"idle connections reaped {reaped_at:.2f} s after the first request")
        assert reaped_at >= 1.9
        # and the clients were told: each sees the end of its connection
        for s in socks[::97]:
            assert recv_all(s, timeout=2) == b""
    finally:
        for s in socks:
            s.close()
    assert hello_time(srv) < 0.5


# ---------------------------------------------------------------- a slow reader


def test_slow_reader_of_an_endless_stream_costs_bounded_memory(start_server):
    srv = start_server("apps:router")
    # warm up: the same kinds of responses, read quickly
    with srv.connect() as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        drain(s, 8 * MIB)
    for _ in range(3):
        hello_time(srv)
    time.sleep(0.3)
    base = srv.rss_kib()
    before = stats(srv)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
    s.settimeout(5)
    s.connect((srv.host, srv.port))
    peak = 0
    got = 0
    latencies = []
    try:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        start = time.monotonic()
        # about 1 MiB/s: 100 KiB every 0.1 s, for 4 s
        for i in range(40):
            want = got + 100 * KIB
            while got < want:
                data = s.recv(want - got)
                assert data
                got += len(data)
            if i % 5 == 0:
                peak = max(peak, srv.rss_kib() - base)
                latencies.append(hello_time(srv))
            time.sleep(max(0.0, start + (i + 1) * 0.1 - time.monotonic()))
        rate = got / (time.monotonic() - start) / MIB
    finally:
        s.close()
    print(f"\nslow reader: {got / MIB:.1f} MiB at {rate:.2f} MiB/s; server RSS grew at "
          f"most {peak:,} KiB; /hello meanwhile at most {max(latencies) * 1000:.1f} ms")
    assert 0.5 < rate < 2.0
    assert peak < 16 * 1024, f"RSS grew by {peak} KiB"
    assert max(latencies) < 0.1
    after = wait_for(lambda: (lambda st: st if st["closed"] == before["closed"] + 1
                              else None)(stats(srv)), 3) or stats(srv)
    assert after["closed"] == after["created"] == before["created"] + 1


# ---------------------------------------------------------------- misbehaving apps

# path, outcome, what the log must say, response iterables the app makes.
# Outcomes: 500 when nothing was sent yet; "cut" when the head was out (the
# connection closes with the body incomplete); "complete" when only close()
# failed (the response is whole and the connection stays usable).
APP_FAULTS = [
    ("/raise-before", 500, "RuntimeError: failing before start_response", 0),
    ("/raise-after-start", 500, "RuntimeError: failing after start_response", 0),
    ("/raise-in-iter?at=0", 500, "RuntimeError: failing inside iteration", 1),
    ("/raise-in-iter?at=1", "cut", "RuntimeError: failing inside iteration", 1),
    ("/raise-in-close", "complete", "RuntimeError: failing inside close()", 1),
    ("/return-str", 500, "str", 0),
    ("/return-none", 500, "NoneType", 0),
    ("/return-int", 500, "int", 0),
    ("/twice", 500, "start_response", 0),
    ("/no-start", 500, "start_response", 0),
    ("/str-late", "cut", "str", 1),
    ("/exc-info-late", "cut", "ValueError: too late", 0),
]


@pytest.mark.parametrize("path,outcome,logged,tracked", APP_FAULTS,
                         ids=[f[0] for f in APP_FAULTS])
def test_misbehaving_app(srv, path, outcome, logged, tracked):
    before = stats(srv)
    mark = len(srv.output())
    with srv.connect() as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        if outcome == "complete":
            status, headers, body, rest = read_response(s)
            assert (status, body) == (200, b"fine")
            # the connection goes on
            s.sendall(CLOSE)
            tail = rest + recv_all(s)
            assert parse_responses(tail)[0][2] == b"Hello, World!"
        else:
            data = recv_all(s)   # the server closes the connection
            if outcome == 500:
                out = parse_responses(data)
                assert [r[0] for r in out] == [500], data[:200]
                assert out[0][1]["connection"] == "close"
                assert b"Traceback" not in data and b"failing" not in data
            else:
                assert data.startswith(b"HTTP/1.1 200 "), data[:200]
                assert not data.endswith(b"0\r\n\r\n"), "the body was not cut short"
    assert wait_for(lambda: logged in new_log(srv, mark), 3), new_log(srv, mark)
    assert "[ERROR]" in new_log(srv, mark)
    assert_recovered(srv, before, tracked)


def test_endless_app_to_a_client_that_left(srv):
    before = stats(srv)
    for _ in range(5):
        with srv.connect() as s:
            s.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
            drain(s, 64 * KIB)
    assert_recovered(srv, before, 5)
