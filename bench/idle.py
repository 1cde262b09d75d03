"""The idle scenario: memory per held keep-alive connection.

N connections each make one request and then stay open (as browsers and
proxies keep them). The server's RSS is read before and after, and one fresh
request is timed while they are all held: a server that scans every
connection per event shows it there.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
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


class _ClosesConnections(Exception):
    """The server answers with Connection: close, so nothing can be held."""


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
    # RST instead of FIN: no TIME_WAIT pile-up across servers.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def hold(port: int, count: int) -> tuple[list[socket.socket], str | None]:
    sel = selectors.DefaultSelector()
    held: list[socket.socket] = []
    bufs: dict[int, bytes] = {}
    started = 0
    error: str | None = None
    start = last_progress = time.monotonic()
    try:
        while len(held) < count:
            while started < count and len(bufs) < IN_FLIGHT:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                rc = sock.connect_ex((httpcheck.HOST, port))
                if rc not in (0, errno.EINPROGRESS):
                    sock.close()
                    error = f"connect failed: {os.strerror(rc)}"
                    break
                sel.register(sock, selectors.EVENT_WRITE)
                bufs[sock.fileno()] = b""
                started += 1
            if error or not bufs:
                break
            now = time.monotonic()
            if now - last_progress > STALL_SECONDS or now - start > TOTAL_SECONDS:
                error = f"stopped answering after {len(held)} connections"
                break
            for key, events in sel.select(timeout=0.5):
                sock = key.fileobj  # type: ignore[assignment]
                assert isinstance(sock, socket.socket)
                fd = sock.fileno()
                if events & selectors.EVENT_WRITE:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        error = f"connect failed: {os.strerror(err)}"
                        break
                    sock.send(REQUEST)  # tiny: fits any empty send buffer
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    error = f"connection {len(held) + 1}: {exc}"
                    break
                if not data:
                    error = f"server closed idle keep-alive connection {len(held) + 1}"
                    break
                bufs[fd] += data
                try:
                    done = _response_done(bufs[fd])
                except _ClosesConnections:
                    error = ("closes every connection after its response (Connection: close)"
                             if not held else
                             f"answers Connection: close once {len(held)} connections are held")
                    break
                if done is None:
                    error = f"bad response: {bufs[fd][:40]!r}"
                    break
                if done:
                    sel.unregister(sock)
                    del bufs[fd]
                    held.append(sock)
                    last_progress = time.monotonic()
            if error:
                break
    finally:
        for key in list(sel.get_map().values()):
            _abort(key.fileobj)  # type: ignore[arg-type]
        sel.close()
    return held, error


def measure(port: int, server_pid: int, count: int) -> IdleResult:
    # One request first, so that lazily initialised server state is not
    # counted as per-connection memory.
    try:
        httpcheck.timed_request(port)
    except (OSError, httpcheck.HttpError) as exc:
        return IdleResult(count, 0, 0, 0, None, f"first request failed: {exc}")
    time.sleep(0.2)
    before = procstat.rss_kib(server_pid)
    held, error = hold(port, count)
    try:
        time.sleep(0.5)  # let the server settle its per-connection allocations
        after = procstat.rss_kib(server_pid)
        fresh: list[float] = []
        if not error:
            for _ in range(FRESH_TRIES):
                try:
                    fresh.append(httpcheck.timed_request(port) * 1000)
                except (OSError, httpcheck.HttpError) as exc:
                    error = f"fresh request failed while {len(held)} held: {exc}"
                    break
    finally:
        for sock in held:
            _abort(sock)
    return IdleResult(count, len(held), before, after,
                      statistics.median(fresh) if fresh else None, error)
