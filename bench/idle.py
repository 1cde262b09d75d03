"""The idle scenarios: memory per held keep-alive connection.

N connections each make one request and then stay open (as browsers and
proxies keep them). The server's RSS is read before and after, and one fresh
request is timed while they are all held: a server that scans every
connection per event shows it there.

With a client TLS context (tls-idle) every connection is a TLS session: a
full handshake (no session is offered for resumption), the request and its
answer over it, then held idle like the plain ones. The handshakes are
driven without blocking, as the plain connects are: at most IN_FLIGHT
connections are between connect and answer at any time.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import statistics
import struct
import time
from dataclasses import dataclass

from bench import httpcheck, procstat

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
IN_FLIGHT = 200  # below every server's listen backlog, so no SYN is dropped
STALL_SECONDS = 5.0  # no connection completed for this long: server gave up
TOTAL_SECONDS = 180.0
FRESH_TRIES = 5

# Where a connection in flight is.
_CONNECTING = 0  # TCP connect under way (waiting for writability)
_HANDSHAKE = 1  # TLS handshake under way (waiting for what OpenSSL asked for)
_ANSWER = 2  # request sent, response being read


class _ClosesConnections(Exception):
    """The server answers with Connection: close, so nothing can be held."""


class _Failed(Exception):
    """A connection went wrong; the message says how."""


@dataclass
class IdleResult:
    requested: int
    held: int
    rss_before_kib: int
    rss_after_kib: int
    fresh_ms: float | None
    error: str | None

    @property
    def kib_per_conn(self) -> float | None:
        if self.held <= 0:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.held


@dataclass
class _Conn:
    sock: socket.socket  # an ssl.SSLSocket over TLS
    state: int = _CONNECTING
    buf: bytes = b""


def _response_done(buf: bytes) -> bool | None:
    """True when buf holds a full response, None if it is not a 200."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = buf[:head_end].lower()
    if not head.startswith(b"http/1.1 200") and not head.startswith(b"http/1.0 200"):
        return None
    if b"\r\nconnection: close" in head:
        raise _ClosesConnections
    for line in head.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            return len(buf) - head_end - 4 >= int(line.split(b":")[1])
    return b"\r\n0\r\n\r\n" in buf[head_end:]  # chunked end


def _abort(sock: socket.socket) -> None:
    # RST instead of FIN (and no close_notify over TLS): no TIME_WAIT
    # pile-up across servers.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _open(port: int, tls: ssl.SSLContext | None) -> socket.socket:
    """A non-blocking socket with its connect started (wrapped for TLS
    first: the handshake is driven by hand once the connect completes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=httpcheck.HOST,
                                   do_handshake_on_connect=False)
        rc = sock.connect_ex((httpcheck.HOST, port))
    except BaseException:
        sock.close()
        raise
    if rc not in (0, errno.EINPROGRESS):
        sock.close()
        raise _Failed(f"connect failed: {os.strerror(rc)}")
    return sock


def _handshake(sock: socket.socket) -> int | None:
    """One step of the client's TLS handshake: None once it is done, else
    the selector event that OpenSSL waits for."""
    assert isinstance(sock, ssl.SSLSocket)
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return selectors.EVENT_READ
    except ssl.SSLWantWriteError:
        return selectors.EVENT_WRITE
    return None


def _receive(sock: socket.socket) -> bytes | None:
    """What the socket has (b"" at the end); None over TLS when no
    application data came yet (a session ticket, part of a record)."""
    if not isinstance(sock, ssl.SSLSocket):
        return sock.recv(65536)
    try:
        data = sock.recv(65536)
        while data and sock.pending():
            data += sock.recv(65536)
    except ssl.SSLWantReadError:
        return None
    return data


def _step(sel: selectors.BaseSelector, conn: _Conn, count_held: int) -> bool:
    """Moves one connection on after a readiness event; True once its
    response is complete. Raises _Failed (or _ClosesConnections)."""
    sock = conn.sock
    where = f"connection {count_held + 1}"
    if conn.state == _CONNECTING:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _Failed(f"connect failed: {os.strerror(err)}")
        conn.state = _HANDSHAKE if isinstance(sock, ssl.SSLSocket) else _ANSWER
        if conn.state == _ANSWER:
            try:
                sock.send(REQUEST)  # tiny: fits any empty send buffer
            except OSError as exc:
                raise _Failed(f"{where}: {exc}") from None
            sel.modify(sock, selectors.EVENT_READ, conn)
            return False
    if conn.state == _HANDSHAKE:
        try:
            wait = _handshake(sock)
        except ssl.SSLError as exc:
            raise _Failed(f"{where}: TLS handshake failed: {exc}") from None
        except OSError as exc:
            raise _Failed(f"{where}: during the TLS handshake: {exc}") from None
        if wait is None:
            conn.state = _ANSWER
            try:
                # The handshake's last flight is out, so the send buffer is
                # empty and one small record fits.
                sock.send(REQUEST)
            except OSError as exc:
                raise _Failed(f"{where}: request after the TLS handshake: {exc}") from None
            wait = selectors.EVENT_READ
        sel.modify(sock, wait, conn)
        return False
    try:
        data = _receive(sock)
    except OSError as exc:
        raise _Failed(f"{where}: {exc}") from None
    if data is None:
        return False
    if not data:
        raise _Failed(f"server closed idle keep-alive {where}")
    conn.buf += data
    done = _response_done(conn.buf)
    if done is None:
        raise _Failed(f"bad response: {conn.buf[:40]!r}")
    return done


def hold(port: int, count: int,
         tls: ssl.SSLContext | None = None) -> tuple[list[socket.socket], str | None]:
    """Opens `count` connections (TLS sessions with `tls`), one request
    answered on each, and returns them held open; with the reason, if it
    stopped short."""
    sel = selectors.DefaultSelector()
    held: list[socket.socket] = []
    in_flight = 0
    started = 0
    error: str | None = None
    start = last_progress = time.monotonic()
    try:
        while len(held) < count:
            while started < count and in_flight < IN_FLIGHT:
                try:
                    sock = _open(port, tls)
                except _Failed as exc:
                    error = str(exc)
                    break
                sel.register(sock, selectors.EVENT_WRITE, _Conn(sock))
                in_flight += 1
                started += 1
            if error or not in_flight:
                break
            now = time.monotonic()
            if now - last_progress > STALL_SECONDS or now - start > TOTAL_SECONDS:
                error = f"stopped answering after {len(held)} connections"
                break
            for key, _events in sel.select(timeout=0.5):
                conn: _Conn = key.data
                try:
                    done = _step(sel, conn, len(held))
                except _ClosesConnections:
                    error = ("closes every connection after its response (Connection: close)"
                             if not held else
                             f"answers Connection: close once {len(held)} connections are held")
                    break
                except _Failed as exc:
                    error = str(exc)
                    break
                if done:
                    sel.unregister(conn.sock)
                    in_flight -= 1
                    held.append(conn.sock)
                    last_progress = time.monotonic()
            if error:
                break
    finally:
        for key in list(sel.get_map().values()):
            _abort(key.fileobj)  # type: ignore[arg-type]
        sel.close()
    return held, error


def measure(port: int, server_pid: int, count: int,
            tls: ssl.SSLContext | None = None) -> IdleResult:
    """The idle figures for a server on `port` (over TLS with `tls`, the
    client context that trusts its certificate)."""
    # One request first, so that lazily initialised server state (over TLS:
    # the first handshake's) is not counted as per-connection memory.
    try:
        httpcheck.timed_request(port, tls=tls)
    except (OSError, httpcheck.HttpError) as exc:
        return IdleResult(count, 0, 0, 0, None, f"first request failed: {exc}")
    time.sleep(0.2)
    before = procstat.rss_kib(server_pid)
    held, error = hold(port, count, tls)
    try:
        time.sleep(0.5)  # let the server settle its per-connection allocations
        after = procstat.rss_kib(server_pid)
        fresh: list[float] = []
        if not error:
            for _ in range(FRESH_TRIES):
                try:
                    fresh.append(httpcheck.timed_request(port, tls=tls) * 1000)
                except (OSError, httpcheck.HttpError) as exc:
                    error = f"fresh request failed while {len(held)} held: {exc}"
                    break
    finally:
        for sock in held:
            _abort(sock)
    return IdleResult(count, len(held), before, after,
                      statistics.median(fresh) if fresh else None, error)
