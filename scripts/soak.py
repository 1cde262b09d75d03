#!/usr/bin/env python3
"""Soak test: one fastwsgi process, a long mixed load, no leaks allowed.

Starts ``fastwsgi apps:router`` (tests/apps.py) on a free port and drives it
from several client processes with raw sockets.  Every client cycles through
all the scenarios below and checks every answer it gets:

  keep-alive        sequential requests on one connection (GET, HEAD,
                    POST with Content-Length and chunked bodies, chunked
                    streamed responses, 404), the last with Connection: close
  pipelined         16 requests per write on two connections at once
  close             Connection: close, HTTP/1.0, and a client half-close
  large             256 KiB uploads (Content-Length and chunked, spooled to
                    a file by the server) and 1 MiB downloads, HEAD of 1 MiB
  errors            malformed requests (400, 413, 414, 417, 501, 505), app
                    errors (500 from /raise-before and /raise-in-iter, a
                    response cut short by /raise-in-iter?at=1, an exception
                    in close())
  resets            RST (SO_LINGER 0) mid-response (/forever, /big,
                    /stream), mid-head, mid-body, with 16 pipelined
                    responses unread, and right after a response

A warm-up runs first (a tenth of the run, 10 000 to 100 000 requests);
then the server is left idle and its RSS and open file descriptors are
read from /proc (the baseline).  The measured phase follows, sampling both
every second.  Criteria, checked once the clients have closed everything:

  - every answer was the expected one, and the server never died;
  - every connection was closed within 5 s of its client leaving (the
    server's descriptor count is back to its idle count); connections that
    are only reaped later by the server's own timeouts are listed;
  - RSS grew by less than 1 % from the baseline.  Both figures are read
    when the server is idle, after GET /trim has the server run gc and
    malloc_trim(0), so that heap pages glibc keeps cached after 1 MiB
    bodies (often a few MiB, varying from one reading to the next) do not
    pass for a leak; the untrimmed figures are printed as well;
  - /stats shows closed == created: every response iterable was closed.

    scripts/soak                      1 000 000 requests after the warm-up
    scripts/soak --requests 50000     a shorter run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
HOST = "127.0.0.1"
IO_TIMEOUT = 10.0
START_LINE = re.compile(r"listening on https?://[\d.]+:(\d+) \(pid (\d+)\)")
# --tls: the server speaks HTTPS and every client connection is a TLS
# session.  Said through the environment, which client processes inherit
# however multiprocessing starts them.
TLS_ENV = "FASTWSGI_SOAK_TLS"
_tls_client: Any = None
RSS_LIMIT_PCT = 1.0

KIB = 1024
MIB = 1024 * KIB
HELLO = b"Hello, World!"
BIG = bytes(range(256)) * (MIB // 256)
UPLOAD = bytes((i * 7 + 3) & 0xFF for i in range(256 * KIB))


def stream_body(n: int, size: int) -> bytes:
    """What /stream?n=N&size=S sends."""
    return b"".join(str(i % 10).encode() * size for i in range(n))


# ---------------------------------------------------------------- requests


def get(path: str, close: bool = False, method: str = "GET") -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/1.1\r\nHost: soak\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def post_chunked(path: str, body: bytes, piece: int, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
    parts = [head.encode()]
    for i in range(0, len(body), piece):
        chunk = body[i:i + piece]
        parts.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


# Malformed requests and the status each must get (then the connection
# closes).  The hidden request after each must never be answered.
BAD_REQUESTS: list[tuple[bytes, int]] = [
    (b"GET /hello HTTP/1.1\r\nHost: soak\r\nX-A : 1\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     400),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", 400),
    (b"GET /hello HTTP/1.1\r\nHost: soak\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET /hello HTTP/1.1\nHost: soak\n\n", 400),
    (b"GET /hello HTTP/1.1\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nContent-Length: 2000000000\r\n\r\n", 413),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: soak\r\n\r\n", 414),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nContent-Length: 1\r\nExpect: x\r\n\r\nx", 417),
    (b"POST /body HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", 501),
    (b"GET /hello HTTP/2.0\r\nHost: soak\r\n\r\n", 505),
]
HIDDEN = b"GET /hello?hidden HTTP/1.1\r\nHost: soak\r\n\r\n"


# ---------------------------------------------------------------- the wire


class Closed(Exception):
    """The server closed the connection where a response was expected."""


class Protocol(Exception):
    """Bytes that are not the expected HTTP response."""


class Reply(NamedTuple):
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def tls_client() -> Any:
    """The client TLS context under --tls (None without): it trusts any
    certificate, since the soak tests the server's sessions, not PKI."""
    global _tls_client
    if _tls_client is None and os.environ.get(TLS_ENV):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _tls_client = ctx
    return _tls_client


def make_certificate(folder: str) -> list[str]:
    """A self-signed certificate and key for the server; its options."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                   cwd=folder, check=True, capture_output=True)
    return ["--certfile", os.path.join(folder, "cert.pem"),
            "--keyfile", os.path.join(folder, "key.pem")]


class Conn:
    """One client connection with a receive buffer and a response parser."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = tls_client()
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self, want: int = 65536) -> None:
        data = self.sock.recv(min(max(want, 65536), MIB))
        if not data:
            raise Closed(f"closed with {len(self.buf)} bytes unparsed")
        self.buf += data

    def _fill(self, n: int) -> None:
        """Make self.buf at least n bytes long."""
        have = len(self.buf)
        if have >= n:
            return
        parts = [self.buf]
        while have < n:
            data = self.sock.recv(min(max(n - have, 65536), MIB))
            if not data:
                raise Closed(f"closed {n - have} bytes short")
            parts.append(data)
            have += len(data)
        self.buf = b"".join(parts)

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if len(self.buf) > 4096:
                raise Protocol("chunk size line too long")
            self._more()

    def response(self, head: bool = False) -> Reply:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > 65536:
                raise Protocol("response head too long")
            self._more()
        lines = self.buf[:end].split(b"\r\n")
        self.buf = self.buf[end + 4:]
        if not lines[0].startswith(b"HTTP/1.1 ") or len(lines[0]) < 12:
            raise Protocol(f"bad status line {lines[0][:80]!r}")
        status = int(lines[0][9:12])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise Protocol(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304) or 100 <= status < 200:
            return Reply(status, headers, b"")
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            self._fill(n)
            body, self.buf = self.buf[:n], self.buf[n:]
            return Reply(status, headers, body)
        if headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int(self._line(), 16)
                self._fill(size + 2)
                if self.buf[size:size + 2] != b"\r\n":
                    raise Protocol("chunk data not followed by CRLF")
                parts.append(self.buf[:size])
                self.buf = self.buf[size + 2:]
                if size == 0:
                    return Reply(status, headers, b"".join(parts))
        return Reply(status, headers, self.read_to_eof())

    def read_to_eof(self, limit: int = 64 * MIB) -> bytes:
        parts = [self.buf]
        have = len(self.buf)
        self.buf = b""
        while have <= limit:
            try:
                data = self.sock.recv(MIB)
            except ConnectionResetError:
                break
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def drain(self, n: int) -> int:
        """Receive about n bytes, discarding them."""
        got = len(self.buf)
        self.buf = b""
        while got < n:
            data = self.sock.recv(MIB)
            if not data:
                raise Closed(f"closed after {got} of {n} bytes")
            got += len(data)
        return got

    def reset(self) -> None:
        """Close with RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


Expected = Union[bytes, Callable[[bytes], bool], None]


def check(reply: Reply, status: int, body: Expected = None,
          closing: bool | None = None) -> str | None:
    """Why the reply is wrong, or None."""
    if reply.status != status:
        return f"status {reply.status}, wanted {status}: {reply.body[:100]!r}"
    if isinstance(body, bytes) and reply.body != body:
        return f"body of {len(reply.body)} bytes, wanted {len(body)}: {reply.body[:60]!r}"
    if callable(body) and not body(reply.body):
        return f"unexpected body {reply.body[:100]!r}"
    if closing is not None:
        says_close = reply.headers.get(b"connection", b"").lower() == b"close"
        if says_close != closing:
            return f"Connection header {reply.headers.get(b'connection')!r}"
    return None


def echo_len(n: int) -> Callable[[bytes], bool]:
    def ok(body: bytes) -> bool:
        try:
            return bool(json.loads(body)["body_len"] == n)
        except (ValueError, KeyError):
            return False
    return ok


# ---------------------------------------------------------------- a client


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    messages: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, scenario: str, n: int = 1) -> None:
        self.counts[scenario] = self.counts.get(scenario, 0) + n
        self.total += n

    def fail(self, scenario: str, what: str) -> None:
        self.errors += 1
        if len(self.messages) < 20:
            self.messages.append(f"{scenario}: {what}")


# One keep-alive connection's requests: (request, status, body, is HEAD).
KEEPALIVE_MIX: list[tuple[bytes, int, Expected, bool]] = [
    (get("/hello"), 200, HELLO, False),
    (get("/stream?n=8&size=1024"), 200, stream_body(8, 1024), False),
    (get("/hello", method="HEAD"), 200, b"", True),
    (post("/echo", UPLOAD[:1000]), 200, echo_len(1000), False),
    (post_chunked("/body", UPLOAD[:3000], 1000), 200, UPLOAD[:3000], False),
    (get("/nothing-here"), 404, b"not found: /nothing-here", False),
    (get("/stream?n=3&size=10", method="HEAD"), 200, b"", True),
    (get("/stream-cl"), 200, b"0123456789", False),
    (post("/body", b""), 200, b"", False),
    (get("/generator"), 200, b"gen-erated", False),
    (get("/headers"), 200, b"h", False),
    (post_chunked("/echo", UPLOAD[:20000], 4096), 200, echo_len(20000), False),
]

PIPE_PLAIN = get("/hello") * 16
PIPE_MIXED: list[tuple[bytes, int, Expected, bool]] = [
    (get("/hello"), 200, HELLO, False),
    (get("/stream?n=4&size=100"), 200, stream_body(4, 100), False),
    (get("/hello", method="HEAD"), 200, b"", True),
    (post("/body", b"pipelined body"), 200, b"pipelined body", False),
    (post_chunked("/body", b"chunk one two", 5), 200, b"chunk one two", False),
    (get("/hello"), 200, HELLO, False),
    (get("/stream-cl"), 200, b"0123456789", False),
    (get("/big?size=5000"), 200, BIG[:4864] + b"x" * 136, False),
] * 2


class Client:
    def __init__(self, port: int, tally: Tally) -> None:
        self.port = port
        self.t = tally
        self.cycle = 0

    def run(self, scenario: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (OSError, Closed, Protocol, ValueError) as exc:
            self.t.fail(scenario, f"{type(exc).__name__}: {exc}")

    # -- scenarios --

    def keepalive(self) -> None:
        c = Conn(self.port)
        try:
            n = len(KEEPALIVE_MIX) * 2
            for i in range(n):
                req, status, body, head = KEEPALIVE_MIX[(i + self.cycle) % len(KEEPALIVE_MIX)]
                last = i == n - 1
                if last:
                    req = get("/hello", close=True)
                    status, body, head = 200, HELLO, False
                c.send(req)
                why = check(c.response(head), status, body, closing=last)
                if why:
                    self.t.fail("keepalive", f"request {i}: {why}")
                    return
                self.t.add("keepalive")
            if c.read_to_eof():
                self.t.fail("keepalive", "bytes after Connection: close")
        finally:
            c.close()

    def pipelined(self) -> None:
        conns = [Conn(self.port), Conn(self.port)]
        try:
            batches = 4
            for b in range(batches):
                mixed = (b + self.cycle) % 2 == 1
                last = b == batches - 1
                for c in conns:
                    if mixed:
                        data = b"".join(r[0] for r in PIPE_MIXED[:-1])
                        data += get("/hello", close=True) if last else PIPE_MIXED[-1][0]
                    else:
                        data = PIPE_PLAIN if not last else (
                            get("/hello") * 15 + get("/hello", close=True))
                    c.send(data)
                for c in conns:
                    for i in range(16):
                        if mixed and not (last and i == 15):
                            _, status, body, head = PIPE_MIXED[i]
                        else:
                            status, body, head = 200, HELLO, False
                        why = check(c.response(head), status, body)
                        if why:
                            self.t.fail("pipelined", f"batch {b} response {i}: {why}")
                            return
                    self.t.add("pipelined", 16)
            for c in conns:
                if c.read_to_eof():
                    self.t.fail("pipelined", "bytes after Connection: close")
        finally:
            for c in conns:
                c.close()

    def close_variants(self) -> None:
        # (No half-close over TLS: Python's ssl drops the session at
        # shutdown(SHUT_WR), so its client cannot do one.)
        kind = self.cycle % (2 if tls_client() else 3)
        c = Conn(self.port)
        try:
            if kind == 0:
                c.send(get("/hello", close=True))
                why = check(c.response(), 200, HELLO, closing=True)
            elif kind == 1:
                c.send(b"GET /hello HTTP/1.0\r\n\r\n")
                reply = c.response()
                why = check(reply, 200, HELLO)
            else:
                # half-close: the request is still answered, then the end
                c.send(get("/stream?n=5&size=7"))
                c.sock.shutdown(socket.SHUT_WR)
                why = check(c.response(), 200, stream_body(5, 7))
            if why is None and c.read_to_eof():
                why = "bytes after the last response"
            if why:
                self.t.fail("close", f"variant {kind}: {why}")
            else:
                self.t.add("close")
        finally:
            c.close()

    def large(self) -> None:
        c = Conn(self.port)
        try:
            steps: list[tuple[bytes, int, Expected, bool]] = [
                (post("/echo", UPLOAD), 200, echo_len(len(UPLOAD)), False),
                (post_chunked("/echo", UPLOAD, 32 * KIB), 200, echo_len(len(UPLOAD)), False),
                (get("/big?size=1048576"), 200, BIG, False),
                (get("/big?size=1048576", method="HEAD"), 200, b"", True),
                (post("/body", UPLOAD[:100 * KIB]), 200, UPLOAD[:100 * KIB], False),
                (get("/stream?n=16&size=65536", close=True), 200, stream_body(16, 65536), False),
            ]
            for i, (req, status, body, head) in enumerate(steps):
                c.send(req)
                reply = c.response(head)
                why = check(reply, status, body)
                if why is None and head and reply.headers.get(b"content-length") != b"1048576":
                    why = f"HEAD length {reply.headers.get(b'content-length')!r}"
                if why:
                    self.t.fail("large", f"step {i}: {why}")
                    return
                self.t.add("large")
        finally:
            c.close()

    def errors(self) -> None:
        # a malformed request with a hidden one behind it
        bad, status = BAD_REQUESTS[self.cycle % len(BAD_REQUESTS)]
        c = Conn(self.port)
        try:
            c.send(bad + HIDDEN)
            reply = c.response()
            why = check(reply, status, closing=True)
            rest = c.read_to_eof()
            if why is None and rest:
                why = f"{len(rest)} bytes after the error response: {rest[:60]!r}"
            if why:
                self.t.fail("errors", f"bad request {self.cycle % len(BAD_REQUESTS)}: {why}")
            else:
                self.t.add("errors")
        finally:
            c.close()
        # app failures
        kind = self.cycle % 4
        c = Conn(self.port)
        try:
            if kind == 0:
                c.send(get("/raise-before"))
                why = check(c.response(), 500, closing=True)
            elif kind == 1:
                c.send(get("/raise-in-iter?at=0"))
                why = check(c.response(), 500, closing=True)
            elif kind == 2:
                # the head and a chunk went out: the response is cut short
                c.send(get("/raise-in-iter?at=1"))
                data = c.read_to_eof()
                why = None
                if not data.startswith(b"HTTP/1.1 200 ") or b"5\r\nfirst\r\n" not in data:
                    why = f"cut response {data[:120]!r}"
                elif data.endswith(b"0\r\n\r\n") or b"second" in data:
                    why = "response was not cut short"
            else:
                c.send(get("/raise-in-close") + get("/hello", close=True))
                why = check(c.response(), 200, b"fine") or check(c.response(), 200, HELLO)
            if why is None and kind != 2 and c.read_to_eof():
                why = "bytes after the last response"
            if why:
                self.t.fail("errors", f"app failure {kind}: {why}")
            else:
                self.t.add("errors", 2 if kind == 3 else 1)
        finally:
            c.close()

    def resets(self) -> None:
        kind = (self.cycle // 2) % 8
        c = Conn(self.port)
        n = 1
        try:
            if kind == 0:
                c.send(get("/forever"))
                c.drain(256 * KIB)
            elif kind == 1:
                c.send(get("/big?size=4194304"))
                c.drain(64 * KIB)
            elif kind == 2:
                c.send(get("/stream?n=64&size=65536"))
                c.drain(128 * KIB)
            elif kind == 3:
                c.send(get("/big?size=262144") * 16)
                n = 16
            elif kind == 4:
                c.send(b"GET /hello HTTP/1.1\r\nHost: so")
            elif kind == 5:
                c.send(post("/echo", UPLOAD)[:100 * KIB])
            elif kind == 6:
                c.send(post_chunked("/echo", UPLOAD, 16 * KIB)[:70 * KIB])
            else:
                c.send(get("/hello"))
                why = check(c.response(), 200, HELLO)
                if why:
                    self.t.fail("resets", why)
                    return
            self.t.add("resets", n)
        finally:
            c.reset()

    def one_cycle(self) -> None:
        self.run("pipelined", self.pipelined)
        self.run("keepalive", self.keepalive)
        self.run("close", self.close_variants)
        self.run("errors", self.errors)
        if self.cycle % 2 == 0:
            self.run("resets", self.resets)
        if self.cycle % 4 == 1:
            self.run("large", self.large)
        self.cycle += 1


def worker(index: int, port: int, quota: int, progress: Any, stop: Any,
           deadline: float, results: Any) -> None:
    """A client process: cycles until its quota of requests is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tally = Tally()
    client = Client(port, tally)
    client.cycle = index * 7
    while tally.total < quota and not stop.value and time.monotonic() < deadline:
        client.one_cycle()
        progress[index] = tally.total
        if tally.errors > 1000:
            break
    results.put((index, tally.total, tally.counts, tally.errors, tally.messages))


# ---------------------------------------------------------------- the server


class Server:
    """The fastwsgi process under test."""

    def __init__(self, extra: list[str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="fastwsgi-soak-", suffix=".log",
                                               delete=False)
        script = Path(sys.executable).parent / "fastwsgi"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "fastwsgi"]
        argv = [*command, "--host", HOST, "--port", "0", *extra, "apps:router"]
        self.proc = subprocess.Popen(argv, cwd=TESTS, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            m = START_LINE.search(self.output(4096))
            if m:
                self.port, self.pid = int(m.group(1)), int(m.group(2))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("the server did not start:\n" + self.output(4096))
            time.sleep(0.05)

    def output(self, limit: int = 1 << 20) -> str:
        with open(self.log.name, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def request(self, path: str) -> bytes:
        c = Conn(self.port)
        try:
            c.send(get(path, close=True))
            reply = c.response()
            c.read_to_eof()
        finally:
            c.close()
        if reply.status != 200:
            raise Protocol(f"{path} answered {reply.status}")
        return reply.body

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = json.loads(self.request("/stats"))
        return data

    def trim(self) -> None:
        """Have the server hand freed heap pages back (glibc malloc_trim)."""
        self.request("/trim")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def describe_fds(pid: int) -> list[str]:
    """The server's descriptors; sockets with their TCP state and ports."""
    sockets: dict[str, str] = {}
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                local, remote = cols[1], cols[2]
                sockets[cols[9]] = (f"{TCP_STATES.get(cols[3], cols[3])} "
                                    f"local port {int(local.split(':')[1], 16)} "
                                    f"peer port {int(remote.split(':')[1], 16)} "
                                    f"send-q/recv-q {cols[4]}")
    except OSError:
        pass
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        extra = sockets.get(m.group(1), "") if m else ""
        out.append(f"fd {fd}: {target} {extra}".rstrip())
    return out


@dataclass
class Settled:
    """The server after a phase, once every client socket is closed."""

    prompt_fds: int             # descriptors PROMPT seconds after the clients left
    stragglers: list[str]       # what the extra ones were, if any
    reaped_after: float | None  # seconds until it was idle, None if never
    rss_kib: int                # read once idle (or at the give-up point)
    trimmed_kib: int            # the same after /trim (malloc_trim in the server)
    fds: int


PROMPT = 5.0


def settle(server: Server, idle_fds: int, reap_within: float) -> Settled:
    """A server must close a connection as soon as its client has gone:
    give it PROMPT seconds.  Whatever is still open then is described, and
    waited for up to reap_within seconds more (the server's own timeouts),
    so that RSS is read with no connection open."""
    start = time.monotonic()
    while time.monotonic() - start < PROMPT and server.fds() > idle_fds:
        time.sleep(0.1)
    prompt_fds = server.fds()
    stragglers: list[str] = []
    reaped: float | None = time.monotonic() - start
    if prompt_fds > idle_fds:
        stragglers = [d for d in describe_fds(server.pid) if "socket:" in d
                      and "LISTEN" not in d][-(prompt_fds - idle_fds):]
        while time.monotonic() - start < PROMPT + reap_within and server.fds() > idle_fds:
            time.sleep(0.2)
        reaped = time.monotonic() - start if server.fds() <= idle_fds else None
    time.sleep(1.0)
    rss = server.rss_kib()
    server.trim()
    wait_idle(server, idle_fds, 5.0)
    time.sleep(0.5)
    return Settled(prompt_fds, stragglers, reaped, rss, server.rss_kib(), server.fds())


def wait_idle(server: Server, idle_fds: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.fds() > idle_fds:
        time.sleep(0.05)


# ---------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    requests: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    messages: list[str] = field(default_factory=list)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    timed_out: bool = False


def run_phase(server: Server, name: str, requests: int, clients: int,
              max_seconds: float, interval: float) -> Phase:
    ctx = mp.get_context("fork")
    progress = ctx.Array("q", clients, lock=False)
    stop = ctx.Value("b", 0, lock=False)
    results = ctx.Queue()
    deadline = time.monotonic() + max_seconds
    share = -(-requests // clients)
    procs = [ctx.Process(target=worker, args=(i, server.port, share, progress, stop,
                                              deadline, results), daemon=True)
             for i in range(clients)]
    phase = Phase(name)
    start = time.monotonic()
    for p in procs:
        p.start()
    next_print = start + 10
    got: list[tuple[int, int, dict[str, int], int, list[str]]] = []
    try:
        while len(got) < clients:
            now = time.monotonic()
            if not server.alive():
                stop.value = 1
                phase.messages.append(f"server exited with {server.proc.returncode}")
                phase.errors += 1
                break
            if now > deadline + 30:
                stop.value = 1
                phase.timed_out = True
                phase.messages.append("the clients did not finish in time")
                break
            if not any(p.is_alive() for p in procs) and results.empty():
                phase.errors += 1
                phase.messages.append("a client process died without its results")
                break
            done = sum(progress)
            phase.samples.append((now - start, done, server.rss_kib(), server.fds()))
            if now >= next_print:
                rate = done / (now - start)
                print(f"  {name}: {done:,} requests, {now - start:.0f} s, {rate:,.0f}/s, "
                      f"RSS {phase.samples[-1][2]:,} KiB, {phase.samples[-1][3]} fds",
                      flush=True)
                next_print = now + 10
            try:
                while True:
                    got.append(results.get(timeout=interval))
                    if len(got) == clients:
                        break
            except queue.Empty:
                pass
    finally:
        stop.value = 1
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
                p.join()
    phase.seconds = time.monotonic() - start
    for _, total, counts, errors, messages in got:
        phase.requests += total
        phase.errors += errors
        phase.messages += messages
        for k, v in counts.items():
            phase.counts[k] = phase.counts.get(k, 0) + v
    if time.monotonic() > deadline and phase.requests < requests:
        phase.timed_out = True
    return phase


SERVER_OPTIONS = ["--spool-threshold", "128K", "--keepalive-timeout", "5",
                  "--header-timeout", "10", "--body-timeout", "10"]
REAP_WITHIN = 15.0  # the longest of those timeouts, and some


def report_settled(name: str, st: Settled, idle_fds: int) -> None:
    extra = st.prompt_fds - idle_fds
    if extra <= 0:
        return
    when = (f"closed by the server's timeouts {st.reaped_after:.1f} s after the clients left"
            if st.reaped_after is not None else "still open")
    print(f"  {name}: {extra} connection(s) still open {PROMPT:g} s after their clients "
          f"had closed them; {when}:")
    for line in st.stragglers:
        print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=1_000_000,
                    help="requests in the measured phase (default 1000000)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="requests in the warm-up (default: a tenth, 10000 to 100000)")
    ap.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    ap.add_argument("--max-seconds", type=float, default=3600.0,
                    help="give up (and fail) after this long (default 3600)")
    ap.add_argument("--interval", type=float, default=1.0,
                    help="seconds between RSS and fd samples (default 1)")
    ap.add_argument("--keep-log", action="store_true", help="keep the server log")
    ap.add_argument("--threads", type=int, default=0,
                    help="the server's --threads (default 0: inline)")
    ap.add_argument("--tls", action="store_true",
                    help="serve HTTPS; every client connection is a TLS session")
    ap.add_argument("--rss-limit", type=float, default=RSS_LIMIT_PCT,
                    help=f"allowed RSS growth in %% (default {RSS_LIMIT_PCT:g}); "
                         "threaded, every app thread's malloc arena settles later")
    args = ap.parse_args(argv)
    options = [*SERVER_OPTIONS, "--threads", str(args.threads)]
    if args.tls:
        os.environ[TLS_ENV] = "1"
        options += make_certificate(tempfile.mkdtemp(prefix="fastwsgi-soak-tls-"))
    warmup = args.warmup if args.warmup is not None else min(
        100_000, max(10_000, args.requests // 10))

    server = Server(options)
    failures: list[str] = []
    try:
        time.sleep(0.3)
        idle_fds = server.fds()
        print(f"fastwsgi pid {server.pid} on port {server.port} ({' '.join(options)}); "
              f"idle: {server.rss_kib():,} KiB RSS, {idle_fds} fds", flush=True)
        print(f"warm-up: {warmup:,} requests", flush=True)
        started = time.monotonic()
        warm = run_phase(server, "warm-up", warmup, args.clients, args.max_seconds,
                         args.interval)
        before = settle(server, idle_fds, REAP_WITHIN)
        report_settled("warm-up", before, idle_fds)
        stats_before = server.stats()
        print(f"baseline after warm-up: {before.trimmed_kib:,} KiB RSS after /trim "
              f"({before.rss_kib:,} before), {before.fds} fds, /stats {stats_before}",
              flush=True)
        print(f"measured phase: {args.requests:,} requests", flush=True)
        left = max(60.0, args.max_seconds - (time.monotonic() - started))
        soak = run_phase(server, "soak", args.requests, args.clients, left, args.interval)
        after = settle(server, idle_fds, REAP_WITHIN)
        alive = server.alive()
        stats_after = server.stats() if alive else {}
        if alive:
            wait_idle(server, idle_fds, 5.0)
        fds_final = server.fds() if alive else -1
    except BaseException:
        server.kill()
        raise

    growth = (after.trimmed_kib - before.trimmed_kib) / before.trimmed_kib * 100
    raw_growth = (after.rss_kib - before.rss_kib) / before.rss_kib * 100
    samples = soak.samples
    rss_peak = max((x[2] for x in samples), default=0)
    fds_peak = max((x[3] for x in samples), default=0)
    tenth = max(1, len(samples) // 10)
    early = sum(x[2] for x in samples[:tenth]) / tenth if samples else 0
    late = sum(x[2] for x in samples[-tenth:]) / tenth if samples else 0
    rate = soak.requests / soak.seconds if soak.seconds else 0.0

    print()
    print("scenario counts (measured phase):")
    for k in sorted(soak.counts):
        print(f"  {k:<10} {soak.counts[k]:>10,}")
    print(f"requests:   {soak.requests:,} in {soak.seconds:.1f} s ({rate:,.0f}/s), "
          f"plus {warm.requests:,} warm-up in {warm.seconds:.1f} s")
    print(f"errors:     {soak.errors + warm.errors}")
    print(f"RSS:        idle after /trim: before {before.trimmed_kib:,} KiB, after "
          f"{after.trimmed_kib:,} KiB, growth {growth:+.2f} % (limit {args.rss_limit:g} %)")
    print(f"            idle untrimmed: before {before.rss_kib:,} KiB, after {after.rss_kib:,} "
          f"KiB ({raw_growth:+.2f} %); under load: peak {rss_peak:,} KiB, first-tenth mean "
          f"{early:,.0f}, last-tenth mean {late:,.0f}")
    print(f"fds:        idle at start {idle_fds}; {PROMPT:g} s after the clients left: "
          f"warm-up {before.prompt_fds}, end {after.prompt_fds}; once idle: before "
          f"{before.fds}, after {after.fds} (after /stats: {fds_final}); "
          f"peak under load {fds_peak}")
    print(f"iterables:  created {stats_after.get('created')}, closed {stats_after.get('closed')}"
          f" (close() errors {stats_after.get('close_errors')})")
    if samples:
        marks = [samples[min(len(samples) - 1, i * len(samples) // 10)] for i in range(10)]
        marks.append(samples[-1])
        print("RSS under load (s, requests, KiB): " + ", ".join(
            f"{t:.0f}/{done:,}/{rss:,}" for t, done, rss, _ in marks))
    report_settled("warm-up", before, idle_fds)
    report_settled("end", after, idle_fds)

    for msg in (warm.messages + soak.messages)[:20]:
        print(f"  ! {msg}")
    if warm.errors or soak.errors:
        failures.append(f"{warm.errors + soak.errors} unexpected answers")
    if warm.timed_out or soak.timed_out or soak.requests < args.requests:
        failures.append(f"only {soak.requests:,} of {args.requests:,} requests done")
    if not alive:
        failures.append(f"the server died (exit status {server.proc.returncode})")
    if growth >= args.rss_limit:
        failures.append(f"RSS grew by {growth:.2f} %")
    for name, st in (("warm-up", before), ("end", after)):
        if st.prompt_fds != idle_fds:
            failures.append(f"{name}: {st.prompt_fds - idle_fds} connection(s) not closed "
                            f"when their clients left")
        if st.fds != idle_fds:
            failures.append(f"{name}: {st.fds} fds once settled, {idle_fds} when idle")
    if alive and stats_after.get("created") != stats_after.get("closed"):
        failures.append("iterables created != closed")

    code = server.stop() if alive else server.proc.returncode
    if alive and code != 0:
        failures.append(f"the server exited with {code} on SIGTERM")
    if failures or args.keep_log:
        print(f"server log: {server.log.name}")
    else:
        os.unlink(server.log.name)
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
