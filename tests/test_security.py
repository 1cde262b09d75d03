"""Regression tests for the findings of the security review of the request
path: one test (or a small group) per finding, each sending what a hostile
or merely unlucky client would send, with the default settings unless the
finding is about a setting.

- the per-round batch buffer filled to the byte, then more requests in
  the same epoll round (a heap overflow);
- requests queued for the batch while requests of new header-name sets
  take over their shape's slot (one request's values under another's keys);
- header names chosen by the client kept forever (memory);
- the write timeout defeated by input trickled on a connection whose
  client does not read;
- write() called after the response ended, from the iterable's close(),
  reaching another connection (or a freed one);
- an absolute-form request target whose authority is not the Host the app
  sees;
- smaller ones: write() that uses up the Content-Length followed by more
  body, a header tuple of one element that carries a NUL, a flood of bytes
  after an error response.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import string
import struct
import tempfile
import threading
import time

import pytest
from conftest import (
    SANITIZER_PRELOAD,
    ServerProcess,
    hello_time,
    parse_responses,
    read_one,
    read_until_close,
)

HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
KIB = 1024
MIB = 1024 * KIB


def assert_quiet(sock: socket.socket, wait: float = 0.3) -> None:
    """Nothing more arrives on an open connection for a while."""
    sock.settimeout(wait)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return
    raise AssertionError(f"unexpected bytes on the connection: {data[:200]!r}")


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def release_together(socks: list[socket.socket], requests: list[bytes],
                     pause: float = 0.05) -> None:
    """Send every request but its last byte, let the server take that in,
    then send all the last bytes at once: the requests complete close
    together, most of them in the same epoll round."""
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for s, req in zip(socks, requests):
        s.sendall(req[:-1])
    time.sleep(pause)
    for s, req in zip(socks, requests):
        s.sendall(req[-1:])


def echoed(sock: socket.socket, timeout: float = 10.0) -> dict:
    status, _, body, rest = read_one(sock, timeout)
    assert status == 200, (status, body[:200])
    assert rest == b""
    return json.loads(body)


@pytest.fixture(scope="module")
def echo_server():
    """apps:environ_echo: every response is the request's environ."""
    s = ServerProcess("apps:environ_echo")
    yield s
    alive = s.alive()
    out = s.output()
    s.stop()
    s.cleanup()
    assert alive, "server died during the module:\n" + out


# ---------------------------------------------------------------- 1. the batch buffer

BATCH_ENV = 128 * KIB   # the server's per-round buffer of environ values
TARGET = 2000           # length of the request target (and of PATH_INFO)
NX = 7                  # X-A<i> fields that carry the bulk of the values


def filling_request(j: int, port: int, want: int) -> tuple[bytes, dict]:
    """A GET whose environ values, NUL-joined, are `want` bytes long:
    PATH_INFO, REQUEST_URI, REMOTE_ADDR, REMOTE_PORT, then the Host and
    X-A<i> values in order (the layout of the release that had the bug;
    the test sweeps around it so that it does not depend on it)."""
    path = "/" + f"{j}-".ljust(TARGET - 1, "a")
    host = f"h{j}"
    fixed = [path, path, "127.0.0.1", str(port), host]
    left = want - sum(map(len, fixed)) - (len(fixed) + NX - 1)
    sizes = [left // NX] * NX
    sizes[-1] += left - sum(sizes)
    values = [f"c{j}.{i}.".ljust(n, "B")[:n] for i, n in enumerate(sizes)]
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"X-A{i}: {v}\r\n" for i, v in enumerate(values))
    expected = {"PATH_INFO": path, "REQUEST_URI": path, "HTTP_HOST": host,
                "REMOTE_PORT": str(port), "QUERY_STRING": ""}
    expected.update({f"HTTP_X_A{i}": v for i, v in enumerate(values)})
    return (head + "\r\n").encode(), expected


def test_batch_buffer_filled_to_the_byte_then_more_requests(start_server):
    srv = start_server("apps:environ_echo")
    socks = [srv.connect(10.0) for _ in range(10)]
    ports = [s.getsockname()[1] for s in socks]
    try:
        # teach the server the key sequence: later requests with these
        # names are gathered for the batch instead of answered at once
        req, _ = filling_request(0, ports[0], 30000)
        socks[0].sendall(req)
        echoed(socks[0])
        exact = (BATCH_ENV - 2) // 3    # three blocks + two separators == 128 KiB
        wants = [exact] + [exact + d for d in range(-12, 13) if d]
        for want in wants:
            reqs = [filling_request(j, port, want) for j, port in enumerate(ports)]
            release_together(socks, [r for r, _ in reqs])
            for j, (s, (_, expected)) in enumerate(zip(socks, reqs)):
                try:
                    env = echoed(s)
                except (ConnectionError, OSError) as e:
                    raise AssertionError(
                        f"size {want}: connection {j} got no answer ({e}); server "
                        f"alive: {srv.alive()}\n{srv.output()[-2000:]}") from None
                got = {k: env.get(k) for k in expected}
                assert got == expected, f"size {want}, connection {j}"
    finally:
        for s in socks:
            s.close()
    assert srv.alive(), srv.output()[-2000:]


# ---------------------------------------------------------------- 2. shapes taken over


def shaped_request(i: int, rnd: int, names: list[str], method: str,
                   query: str) -> tuple[bytes, dict]:
    token = f"{i}.{rnd}.{random.getrandbits(32):08x}"
    path = f"/c{i}/r{rnd}"
    host = f"h{i}.example"
    target = path + ("?" + query if query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{n}: {token}-{k}" for k, n in enumerate(names)]
    expected = {"HTTP_HOST": host, "PATH_INFO": path, "QUERY_STRING": query,
                "REQUEST_METHOD": method}
    expected.update({"HTTP_" + n.upper().replace("-", "_"): f"{token}-{k}"
                     for k, n in enumerate(names)})
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), expected


def check_echo(env: dict, expected: dict, port: int) -> list[str]:
    """What differs between the environ the app saw and the request."""
    problems = []
    sent_http = {k for k in expected if k.startswith("HTTP_")}
    seen_http = {k for k in env if k.startswith("HTTP_")}
    if sent_http != seen_http:
        problems.append(f"HTTP_* keys: missing {sorted(sent_http - seen_http)}, "
                        f"extra {sorted(seen_http - sent_http)}")
    for k, v in expected.items():
        if env.get(k) != v:
            problems.append(f"{k}: sent {v!r}, app saw {env.get(k)!r}")
    if env.get("REMOTE_PORT") != str(port):
        problems.append(f"REMOTE_PORT {env.get('REMOTE_PORT')!r}, client port {port}")
    return problems


def test_queued_requests_keep_their_environ_while_new_shapes_arrive(start_server):
    """The shape table has 64 slots and, once fixed, a random hash seed, so
    collisions cannot be chosen: instead far more distinct header-name sets
    than it holds arrive in the same round, some of them known (queued for
    the batch) and the rest new (answered at once, taking over slots)."""
    srv = start_server("apps:environ_echo")
    n = 150
    socks = [srv.connect(10.0) for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    own = {i: [f"X-C{i}-{k}" for k in range(1 + i % 4)] for i in range(n)}
    problems: list[str] = []
    try:
        # each connection teaches the server its own name set; the even
        # ones last, so that theirs are the likeliest to be still known
        for i in [*range(1, n, 2), *range(0, n, 2)]:
            req, _ = shaped_request(i, -1, own[i], "GET", f"i={i}")
            socks[i].sendall(req)
            echoed(socks[i])
        for rnd in range(3):
            plan = []
            for i in range(n):
                if (i + rnd) % 2 == 0:
                    plan.append(shaped_request(i, rnd, own[i], "GET", f"i={i}&r={rnd}"))
                else:
                    names = own[i] + [f"X-N{rnd}-{i}-{k}" for k in range(1 + (i + rnd) % 3)]
                    method = ("PUT", "DELETE", "GET", "OPTIONS")[(i + rnd) % 4]
                    query = f"q={i}-{rnd}" if i % 3 else ""
                    plan.append(shaped_request(i, rnd, names, method, query))
            release_together(socks, [r for r, _ in plan], pause=0.1)
            for i, (s, (_, expected)) in enumerate(zip(socks, plan)):
                try:
                    status, _, body, rest = read_one(s, 10.0)
                except (ConnectionError, OSError) as e:
                    problems.append(f"round {rnd} conn {i}: dropped ({e})")
                    s.close()
                    socks[i] = srv.connect(10.0)
                    ports[i] = socks[i].getsockname()[1]
                    continue
                if status != 200 or rest:
                    problems.append(f"round {rnd} conn {i}: status {status}, "
                                    f"{len(rest)} extra bytes")
                    s.close()
                    socks[i] = srv.connect(10.0)
                    ports[i] = socks[i].getsockname()[1]
                    continue
                for p in check_echo(json.loads(body), expected, ports[i]):
                    problems.append(f"round {rnd} conn {i}: {p}")
    finally:
        for s in socks:
            s.close()
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:20])
    assert srv.alive()


# ---------------------------------------------------------------- 3. memory from header names

# The server runs as `sys.executable -m fastwsgi` (its console script), so
# this test measures whichever interpreter runs pytest.  On CPython 3.12,
# where sys.intern'ed strings are immortal, a server that interns header
# names would keep every one of them.  scripts/test-312-names runs it there;
# by hand, e.g.
#   PY=/root/.pyenv/versions/3.12.1/bin/python3.12
#   $PY -m venv .venv-test312 && .venv-test312/bin/pip install '.[test]'
#   .venv-test312/bin/pytest -p no:cacheprovider tests/test_security.py -k header_names

NAMES_PER_REQUEST = 60
NAME_LEN = 1000


def test_header_names_chosen_by_clients_do_not_accumulate(start_server):
    env = {}
    if SANITIZER_PRELOAD:
        # AddressSanitizer keeps freed memory in quarantine (256 MiB): RSS
        # would grow by what is freed, as if it leaked
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                               ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    srv = start_server("apps:hazards", env=env)
    rng = random.Random(1234)
    letters = string.ascii_letters

    def request() -> bytes:
        names = ["X-" + "".join(rng.choices(letters, k=NAME_LEN - 2))
                 for _ in range(NAMES_PER_REQUEST)]
        return (b"GET /hello HTTP/1.1\r\nHost: t\r\n"
                + "".join(f"{name}: v\r\n" for name in names).encode() + b"\r\n")

    def run(count: int) -> None:
        with srv.connect(10.0) as s:
            for _ in range(count):
                s.sendall(request())
                status, _, body, _ = read_one(s, 10.0)
                assert (status, body) == (200, b"Hello, World!")

    def settled_rss() -> int:
        # collect garbage and give freed heap back first (a garbage
        # collector's heap, as on PyPy, grows between collections)
        with srv.connect() as s:
            s.sendall(b"GET /trim HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_one(s)[0] == 200
        return srv.rss_kib()

    # warm-up: more new name sets than the shape table has slots, so that
    # the table is full and every later set replaces an earlier one
    run(200)
    before = settled_rss()
    count = 200
    run(count)
    grown = settled_rss() - before
    per_request = NAMES_PER_REQUEST * NAME_LEN // KIB
    print(f"\nheader names: RSS grew {grown} KiB over {count} requests of "
          f"{per_request} KiB of new names each")
    # keeping the names would grow by count * per_request (about 11 MiB)
    assert grown < 6 * 1024, f"RSS grew by {grown} KiB over {count} requests"


# ---------------------------------------------------------------- 4. trickled input


def test_trickled_input_does_not_defeat_the_write_timeout(start_server):
    """Clients that never read, with output backed up in the kernel and in
    the server, send one byte of a further request head every 0.3 s.  The
    write timeout counts from the last byte the client took, whatever it
    sends meanwhile.  Over TCP the kernel takes megabytes first; over a
    unix socket it takes about 200 KiB, which leaves the server holding
    less than its high-water mark, so that it goes on reading input."""
    # a short path: unix socket paths are limited to 107 bytes
    sock_dir = tempfile.mkdtemp(prefix="fw-trickle-")
    sock_path = os.path.join(sock_dir, "s")
    write_timeout = 3.0
    srv = start_server("apps:router", "--header-timeout", "2", "--write-timeout",
                       str(write_timeout), "--bind", "127.0.0.1:0", "--bind",
                       "unix:" + sock_path)
    cases = {
        "tcp 8 x 1 MiB": (socket.AF_INET, (srv.host, srv.port), 1 << 20, 8),
        "unix 1 x 250 KB": (socket.AF_UNIX, sock_path, 250_000, 1),
        "unix 1 x 350 KB": (socket.AF_UNIX, sock_path, 350_000, 1),
        "unix 3 x 100 KB": (socket.AF_UNIX, sock_path, 100_000, 3),
    }
    socks = {}
    for name, (family, address, size, count) in cases.items():
        s = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(address)
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = srv.wrap(s)
        s.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size * count)
        socks[name] = s
    start = time.monotonic()
    bound = write_timeout + 1.5
    closed_at: dict[str, float] = {}
    head = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Trickle: " + b"t" * 1000
    try:
        time.sleep(0.2)
        for byte in head:
            for name, s in socks.items():
                if name in closed_at:
                    continue
                try:
                    s.send(bytes([byte]))
                except socket.timeout:
                    pass        # not taken in, but not closed either
                except OSError:
                    closed_at[name] = time.monotonic() - start
            if len(closed_at) == len(socks) or time.monotonic() - start > bound + 0.5:
                break
            time.sleep(0.3)
    finally:
        for s in socks.values():
            s.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
    print(f"\ntrickle: closed after {closed_at} (write timeout {write_timeout} s)")
    late = {name: closed_at.get(name) for name in cases
            if closed_at.get(name) is None or closed_at[name] > bound}
    assert not late, f"still open (or closed late) {bound:.1f} s after the last write: {late}"
    assert hello_time(srv) < 0.5


# ---------------------------------------------------------------- 5. write() after the end


def late_writes(srv) -> int:
    with srv.connect() as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return json.loads(read_one(s)[2]).get("late_writes", 0)


def echo_request(k: int) -> bytes:
    return f"GET /echo?k={k} HTTP/1.1\r\nHost: b\r\n\r\n".encode()


def ask(sock: socket.socket, k: int) -> None:
    """One request on B's connection: its own answer and nothing else."""
    sock.sendall(echo_request(k))
    status, _, body, rest = read_one(sock)
    assert status == 200, (status, body[:300])
    assert rest == b"", f"bytes beyond the answer to request {k}: {rest[:300]!r}"
    assert json.loads(body)["QUERY_STRING"] == f"k={k}"


def late_stream(srv) -> socket.socket:
    """A client that starts /late-write (128 MiB) and stops reading."""
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KIB)
    a.settimeout(5)
    a.connect((srv.host, srv.port))
    a = srv.wrap(a)
    a.sendall(b"GET /late-write?n=2048&size=65536 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert a.recv(4096).startswith(b"HTTP/1.1 200 ")
    return a


def wait_logged(srv, mark: int, text: str, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in srv.output()[mark:]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_kept_write_cannot_write_into_another_request(start_server):
    """A write() callable kept from request A and called while request B
    (another connection) is served raises in the app; B's client gets its
    own response and not a byte of A's."""
    srv = start_server("apps:hazards")
    with srv.connect() as a, srv.connect() as b:
        a.sendall(b"GET /keep-write HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_one(a)[2] == b"kept"
        b.sendall(b"GET /use-kept HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body, rest = read_one(b)
        assert (status, body, rest) == (200, b"refused: ResponseError", b"")
        b.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_one(b)[:3:2] == (200, b"Hello, World!")


# B-between: B's request is the last one the server handled before A goes;
# B-after: A's is; two-leave: a second streaming client A2 goes first, so
# that A's write comes a turn after A2's connection was freed.
@pytest.mark.parametrize("scenario", ["B-between", "B-after", "two-leave"])
def test_write_after_the_client_left_reaches_no_other_connection(start_server, scenario):
    """/late-write streams 128 MiB and its close() calls the write()
    callable from start_response.  Client A starts it and vanishes; the
    server closes A and calls close(); that write must go nowhere: not to
    client B's connection, not to a freed one (a use-after-free under
    scripts/sanitize)."""
    srv = start_server("apps:hazards")
    b = srv.connect()
    ask(b, 0)
    a = late_stream(srv)
    a2 = late_stream(srv) if scenario == "two-leave" else None
    try:
        time.sleep(0.3)     # the streams are backed up now
        if scenario == "B-between":
            ask(b, 1)
            ask(b, 2)
        mark = len(srv.output())
        if a2 is not None:
            reset(a2)
            wait_logged(srv, mark, "[ERROR]")
            time.sleep(0.2)
            mark = len(srv.output())
        reset(a)
        # the server notices at once: A's iterable is closed and its
        # close() calls write(), which is refused and logged
        assert wait_logged(srv, mark, "[ERROR]"), srv.output()[mark:]
        assert_quiet(b)
        for k in range(3, 8):
            ask(b, k)
        assert_quiet(b)
        assert late_writes(srv) == (2 if a2 else 1)
    finally:
        a.close()
        if a2 is not None:
            a2.close()
        b.close()
    assert srv.alive(), srv.output()[-3000:]
    assert hello_time(srv) < 0.5


def test_write_after_a_completed_response_is_refused(start_server):
    srv = start_server("apps:hazards")
    with srv.connect() as s:
        mark = len(srv.output())
        s.sendall(b"GET /late-write?n=3&size=5 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body, rest = read_one(s)
        assert (status, body, rest) == (200, b"000001111122222", b"")
        assert wait_logged(srv, mark, "[ERROR]", 3.0), srv.output()[mark:]
        assert_quiet(s)
        for k in range(3):
            ask(s, k)
        assert_quiet(s)
    assert late_writes(srv) == 1
    assert srv.alive()


# ---------------------------------------------------------------- 6. absolute-form targets


@pytest.mark.parametrize("authority", ["internal.example", "internal.example:8080",
                                       "10.0.0.7:81"])
def test_absolute_form_authority_is_the_host(echo_server, authority):
    """RFC 9112 3.2.2: with an absolute-form target the Host field is
    replaced by the target's authority."""
    with echo_server.connect() as s:
        s.sendall(f"GET http://{authority}/p?q=1 HTTP/1.1\r\nHost: public.example\r\n"
                  f"\r\n".encode())
        env = echoed(s)
    assert env["HTTP_HOST"] == authority
    assert env["PATH_INFO"] == "/p"
    assert env["QUERY_STRING"] == "q=1"
    assert env["REQUEST_METHOD"] == "GET"


def test_absolute_form_with_an_empty_path(echo_server):
    with echo_server.connect() as s:
        s.sendall(b"GET http://internal.example HTTP/1.1\r\nHost: public.example\r\n\r\n")
        env = echoed(s)
    assert env["HTTP_HOST"] == "internal.example"
    assert env["PATH_INFO"] == "/"


@pytest.mark.parametrize("target", ["http:///x", "http://u@h/", "http://u:p@h:80/x",
                                    "http://@h/"])
def test_absolute_form_without_a_plain_authority_is_refused(echo_server, target):
    with echo_server.connect() as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: public.example\r\n\r\n".encode())
        out, closed = read_until_close(s, 3)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert closed
    assert len(parse_responses(out)) == 1


# ---------------------------------------------------------------- 7. smaller ones


def test_body_beyond_a_content_length_used_up_by_write_closes(start_server):
    srv = start_server("apps:hazards")
    with srv.connect() as s:
        s.sendall(b"GET /write-then-more?n=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body, rest = read_one(s)
        assert (status, body) == (200, b"x" * 10)
        assert headers["content-length"] == "10"
        more, closed = read_until_close(s, 2.5)
    assert rest + more == b"", (rest + more)[:200]
    assert closed, "the connection was kept alive after a response cut short"
    assert hello_time(srv) < 0.5


@pytest.mark.parametrize("kind", ["cookie", "plain"])
def test_one_element_header_tuple_with_a_nul_is_refused(start_server, kind):
    srv = start_server("apps:hazards")
    with srv.connect() as s:
        s.sendall(f"GET /nul-header?kind={kind} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        out, _ = read_until_close(s, 3)
    assert out.startswith(b"HTTP/1.1 500 "), out[:300]
    low = out.lower()
    assert b"evil" not in low and b"set-cookie" not in low and b"x-a:" not in low, out[:300]
    assert hello_time(srv) < 0.5


def test_flood_after_an_error_response_is_cut_off(start_server):
    """A 400 closes the connection after a grace period in which the
    server discards what the client still sends.  A client that keeps
    sending without reading must not keep it (or the server) busy."""
    srv = start_server("apps:router")
    flooder = srv.connect()
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    flooder.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    stop = threading.Event()
    ended: list[float] = []
    start = time.monotonic()
    junk = b"z" * 65536

    def flood() -> None:
        flooder.settimeout(0.2)
        while not stop.is_set():
            try:
                flooder.sendall(junk)
            except socket.timeout:
                continue
            except OSError:
                ended.append(time.monotonic() - start)
                return

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    latencies = []
    try:
        # at least 1 s of ordinary requests, and on until the flood is cut
        while (time.monotonic() - start < 1.0 or
               (not ended and time.monotonic() - start < 4.5)):
            latencies.append(hello_time(srv))
            time.sleep(0.05)
        stop.set()
        t.join(3)
        # the client can still read why: the 400 came before the end
        answer, _ = read_until_close(flooder, 2.0)
    finally:
        stop.set()
        t.join(3)
        flooder.close()
    print(f"\nflood: cut off after {ended}, {len(latencies)} requests meanwhile, "
          f"slowest {max(latencies) * 1000:.0f} ms")
    assert ended and ended[0] < 3.0, f"the flooding connection was not closed: {ended}"
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert max(latencies) < 0.5, latencies
    assert hello_time(srv) < 0.5


def test_head_with_an_empty_body_has_no_invented_length(start_server):
    """RFC 9110 9.3.2: a HEAD response's Content-Length, if any, is what
    GET would send.  An app that answers HEAD with an empty body (Flask)
    gets no length rather than a wrong "0"; GET gets its real one."""
    srv = start_server("apps:hazards")
    with srv.connect() as s:
        s.sendall(b"HEAD /head-empty HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body, _ = read_one(s, head=True)
        assert (status, body) == (200, b"")
        assert "content-length" not in headers, headers
        s.sendall(b"GET /head-empty HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body, _ = read_one(s)
        assert (status, body, headers.get("content-length")) == (200, b"the GET body", "12")
