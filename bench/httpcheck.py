"""A small, strict HTTP/1.1 client for readiness probes and validation.

wrk counts responses but never looks at bodies, so before a server is
measured this client checks status and body byte for byte; a server that
fails gets FAIL instead of a number. Given a client TLS context (the tls-*
scenarios) it speaks HTTPS, verifying the server's certificate, and
otherwise checks exactly the same things.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    chunked: bool


# A server that sends nothing for this long has stalled (bjoern on pipelined
# requests); a slow but moving 10 MiB body only hits the overall deadline.
STALL = 3.0


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""
        self.eof = False
        # TLS only, with suppress_ragged_eofs=False: the peer closed the TCP
        # connection without a close_notify alert.
        self.ragged = False

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise HttpError("timed out waiting for the response")
        self.sock.settimeout(min(left, STALL))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise HttpError(f"no data for {min(left, STALL):.0f} s") from None
        except ConnectionError as exc:
            raise HttpError(f"connection error: {exc}") from None
        except ssl.SSLEOFError:
            self.eof = self.ragged = True
            return False
        except ssl.SSLError as exc:
            raise HttpError(f"TLS error: {exc}") from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def until(self, sep: bytes, limit: int = MAX_HEAD) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            if len(self.buf) > limit:
                raise HttpError("response head too large")
            if not self._fill():
                raise HttpError("connection closed mid-response"
                                if self.buf else "connection closed without a response")

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise HttpError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out


def _read_response(reader: _Reader) -> Response:
    head = reader.until(b"\r\n\r\n").decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"bad header line {line!r}")
        key = name.strip().lower()
        headers[key] = (headers[key] + ", " if key in headers else "") + value.strip()
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if status < 200 or status in (204, 304):
        body = b""
    elif chunked:
        pieces = []
        while True:
            size_line = reader.until(b"\r\n").split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HttpError(f"bad chunk size {size_line!r}") from None
            if size == 0:
                while reader.until(b"\r\n"):  # trailers, up to the empty line
                    pass
                break
            pieces.append(reader.exact(size))
            if reader.exact(2) != b"\r\n":
                raise HttpError("chunk not followed by CRLF")
        body = b"".join(pieces)
    elif "content-length" in headers:
        body = reader.exact(int(headers["content-length"].split(",")[0]))
    else:
        body = reader.to_eof()  # close-delimited
    return Response(status, headers, body, chunked)


def _connect(port: int, timeout: float, tls: ssl.SSLContext | None = None,
             session: ssl.SSLSession | None = None,
             suppress_ragged_eofs: bool = True) -> socket.socket:
    """A TCP connection; with `tls`, the TLS handshake done on it as well
    (bounded by `timeout`, the server's certificate verified)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            return tls.wrap_socket(sock, server_hostname=HOST, session=session,
                                   suppress_ragged_eofs=suppress_ragged_eofs)
    except BaseException:
        sock.close()
        raise
    return sock


def probe(port: int, timeout: float = 1.0, tls: ssl.SSLContext | None = None) -> bool:
    """True once the port answers an HTTP request with a status line (over
    TLS when `tls` is given). A TLS handshake that the server answered and
    that failed (certificate not trusted, no common version, a plain HTTP
    answer) raises its ssl.SSLError: that server is up, and will not do
    better by being asked again."""
    try:
        with _connect(port, timeout, tls) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reader = _Reader(sock, time.monotonic() + timeout)
            return reader.until(b"\r\n").startswith(b"HTTP/1.")
    except ssl.SSLEOFError:
        return False  # closed mid-handshake: perhaps still starting
    except ssl.SSLError:
        raise
    except (OSError, HttpError):
        return False


def _closes_soon(reader: _Reader, wait: float) -> bool:
    reader.deadline = time.monotonic() + wait
    try:
        while reader._fill():
            pass
    except HttpError:
        return False
    return True


def validate(port: int, request: bytes, check: Callable[[bytes], str | None],
             pipeline: int = 1, expect_close: bool = False,
             timeout: float = 30.0, tls: ssl.SSLContext | None = None) -> str | None:
    """Send the scenario's request(s) and check every answer. Returns None
    when all is right, else the reason for FAIL.

    Keep-alive scenarios send a second request on the same connection (so a
    server that breaks keep-alive is caught); pipelined ones send all
    requests in one write and expect all answers, in order. With `tls` all
    of it goes over one TLS session (a failed handshake or certificate
    check is the reason)."""
    try:
        with _connect(port, timeout, tls) as sock:
            reader = _Reader(sock, time.monotonic() + timeout)
            rounds = 1 if expect_close else 2
            for round_no in range(rounds):
                sock.sendall(request * pipeline)
                for i in range(pipeline):
                    try:
                        resp = _read_response(reader)
                    except HttpError as exc:
                        where = f"response {i + 1} of {pipeline} pipelined" if pipeline > 1 \
                            else f"request {round_no + 1} on the connection"
                        return f"{where}: {exc}"
                    if resp.status != 200:
                        return f"status {resp.status}, expected 200"
                    problem = check(resp.body)
                    if problem:
                        return problem
                    if i < pipeline - 1 and "close" in resp.headers.get("connection", "").lower():
                        return (f"answers {i + 1} of {pipeline} pipelined requests, "
                                "then closes (Connection: close)")
                if expect_close:
                    if reader.buf or not _closes_soon(reader, 2.0):
                        return "connection not closed after a Connection: close request"
                    return None
                if reader.eof or "close" in resp.headers.get("connection", "").lower():
                    # The server closes keep-alive connections on purpose and
                    # says so (gunicorn sync): legitimate, nothing to reuse.
                    return None
    except OSError as exc:
        return f"connection failed: {exc}"
    except (HttpError, ValueError) as exc:  # e.g. a non-numeric Content-Length
        return f"malformed response: {exc}"
    return None


@dataclass
class TlsFacts:
    """What a TLS server negotiated with the validator's client."""

    version: str  # e.g. TLSv1.3
    cipher: str
    resumed: bool  # accepted the session of a previous connection
    close_notify: bool  # ended its connection with a close_notify alert


_CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def tls_facts(port: int, tls: ssl.SSLContext, timeout: float = 30.0) -> TlsFacts:
    """Two connections, one `Connection: close` GET on each, the second
    offering the first one's TLS session (as wrk does when it reconnects).
    The answers' bodies are not judged here (validate() does that); raises
    HttpError or OSError when a connection fails."""
    session: ssl.SSLSession | None = None
    facts: list[TlsFacts] = []
    for _ in range(2):
        sock = _connect(port, timeout, tls, session=session, suppress_ragged_eofs=False)
        assert isinstance(sock, ssl.SSLSocket)
        with sock:
            version, cipher = sock.version() or "?", (sock.cipher() or ("?",))[0]
            resumed = bool(sock.session_reused)
            sock.sendall(_CLOSE_REQUEST)
            reader = _Reader(sock, time.monotonic() + timeout)
            _read_response(reader)
            # Taken before the close: a TLS 1.3 ticket comes after the
            # handshake, so it has been read by now, and OpenSSL gives up
            # a session whose connection then ends without close_notify
            # (wrk closes first, after the answer, and keeps it).
            session = sock.session
            if reader.buf or not _closes_soon(reader, 2.0):
                raise HttpError("connection not closed after a Connection: close request")
            facts.append(TlsFacts(version, cipher, resumed, not reader.ragged))
    first, second = facts
    return TlsFacts(second.version, second.cipher, second.resumed,
                    first.close_notify and second.close_notify)


def timed_request(port: int, timeout: float = 5.0,
                  tls: ssl.SSLContext | None = None) -> float:
    """Seconds for one fresh connection + GET + full response (with `tls`,
    the connection's full TLS handshake included)."""
    start = time.perf_counter()
    with _connect(port, timeout, tls) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _read_response(_Reader(sock, time.monotonic() + timeout))
    return time.perf_counter() - start
