"""The PEP 3333 contract: environ, start_response, write, the response
iterable and wsgi.file_wrapper.

C hands over a request as one NUL-separated block of environ keys and
values; this module turns it into the environ, calls the app, and hands
the response back to C in as few calls as it can (one for the common
``[bytes]`` body).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator
from io import BytesIO
from types import TracebackType
from typing import Any, BinaryIO, Callable, Optional

from ._fastwsgi import ffi, lib
from .logs import logger

ExcInfo = tuple[type, BaseException, Optional[TracebackType]]
Headers = list[tuple[str, str]]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]

FW_IN_DUPS = lib.FW_IN_DUPS
_unpack = ffi.unpack
_simple = lib.fw_response_simple
_write = lib.fw_response_write


class FileWrapper:
    """``wsgi.file_wrapper``: a real file is sent with sendfile; any other
    file-like object is read in blocks."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration


def parse_environ(template: Environ, block: bytes, flags: int) -> Environ:
    """The environ for one request: the listener's constant keys plus the
    request's own, decoded as latin-1 ("bytes as str", PEP 3333)."""
    environ = template.copy()
    parts = block.decode("latin-1").split("\0")
    if flags & FW_IN_DUPS:
        _merge_repeated(environ, parts)
    else:
        pairs = iter(parts)
        environ.update(zip(pairs, pairs))
    return environ


def _merge_repeated(environ: Environ, parts: list[str]) -> None:
    """Repeated header fields are joined with ", " (RFC 9110 5.3)."""
    seen: set[str] = set()
    for i in range(0, len(parts) - 1, 2):
        key, value = parts[i], parts[i + 1]
        if key in seen:
            environ[key] = environ[key] + ", " + value
        else:
            seen.add(key)
            environ[key] = value


def make_input(body: Any, body_len: int, body_fd: int) -> BinaryIO:
    """``wsgi.input``: the whole body is already here, so reads never block
    and end exactly at the end of the body."""
    if body_fd >= 0:
        return open(body_fd, "rb")  # noqa: SIM115 - closed by Exchange.finish
    if body_len:
        return BytesIO(_unpack(body, body_len))
    return BytesIO()


class ResponseError(Exception):
    """The app broke the WSGI contract in a way that ends its response."""


class Exchange:
    """One request's response: start_response, write and the iterable.

    It lives past the app call only while a streamed body is pending; then
    the server keeps it by connection id until C asks for more output.
    """

    __slots__ = ("cid", "status", "headers", "head_sent", "result", "it",
                 "input", "conn", "length", "done", "streams", "file")

    def __init__(self, cid: int, conn: Any, stream: BinaryIO,
                 streams: dict[int, Exchange]) -> None:
        self.cid = cid
        self.conn = conn
        self.input = stream
        self.streams = streams
        self.status: str | None = None
        self.headers: Headers = []
        self.head_sent = False
        self.result: Any = None
        self.it: Iterator[bytes] | None = None
        self.length = -1
        self.done = False
        self.file: Any = None

    # -- the app's side --

    def start_response(self, status: str, headers: Headers,
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise ResponseError(
                "start_response() called a second time without exc_info"
            )
        if type(status) is not str:
            raise ResponseError(f"status must be str, not {type(status).__name__}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable: it returns once the data is queued
        and the connection's output is below its high-water mark."""
        conn = self.conn
        if conn is None or self.done:
            raise ResponseError("write() called after the response ended")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not self.head_sent:
            rc = self._start(conn, -1, data)
        else:
            rc = _write(conn, data, len(data))
        if rc == 0:
            rc = lib.fw_conn_drain(conn)
        if rc < 0:
            raise OSError("the client closed the connection")

    # -- handing over to C --

    def head(self) -> bytes:
        """Status and headers as the block C checks:
        "status\\nname\\0value\\nname\\0value"."""
        status = self.status
        if status is None:
            raise ResponseError("the app returned without calling start_response()")
        headers = self.headers
        if headers:
            status = status + "\n" + "\n".join(map("\0".join, headers))
        return status.encode("latin-1")

    def _start(self, conn: Any, length: int, data: bytes) -> int:
        head = self.head()
        rc: int = lib.fw_response_start(conn, head, len(head), len(self.headers),
                                        length, data, len(data))
        if rc == -2:
            raise ResponseError(f"invalid status or headers: {self.status!r}")
        self.head_sent = True
        return rc

    def respond(self, conn: Any, result: Any) -> None:
        """Send the app's response; called right after the app returns."""
        self.result = result
        try:
            if (type(result) is list and len(result) == 1
                    and type(result[0]) is bytes and not self.head_sent):
                body = result[0]
                head = self.head()
                if _simple(conn, head, len(head), len(self.headers), body,
                           len(body)) == -2:
                    raise ResponseError(f"invalid status or headers: {self.status!r}")
                self.head_sent = True
                self.finish()
                return
            if type(result) in (list, tuple):
                self.length = sum(map(len, result))
            elif type(result) is FileWrapper and self._sendfile(conn, result):
                return
            self.it = iter(result)
        except BaseException:  # noqa: B036 - an app's SystemExit must not end the server
            self.fail(conn, "error in the WSGI app's response")
            return
        self.pump(conn)

    def _sendfile(self, conn: Any, wrapper: FileWrapper) -> bool:
        """Send a real file with sendfile.  False: iterate it instead."""
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
            offset = filelike.tell() if hasattr(filelike, "tell") else 0
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        count = max(st.st_size - offset, 0)
        rc = self._start(conn, count, b"")
        if rc >= 0:
            rc = lib.fw_response_sendfile(conn, fd, offset, count)
        if rc == 0:
            self.file = filelike
            self.streams[self.cid] = self
            return True
        if rc < 0:
            self.finish()
            return True
        lib.fw_response_end(conn)
        self.finish()
        return True

    def pump(self, conn: Any) -> None:
        """Pull the iterable while C's output buffer has room."""
        self.conn = conn
        try:
            if self.file is not None:
                # sendfile finished: C called back because output drained
                lib.fw_response_end(conn)
                self.finish()
                return
            it = self.it
            assert it is not None
            for chunk in it:
                if type(chunk) is not bytes:
                    raise ResponseError(
                        f"the app's iterable yielded {type(chunk).__name__}, not bytes"
                    )
                if not chunk:
                    continue
                if self.head_sent:
                    rc = _write(conn, chunk, len(chunk))
                else:
                    rc = self._start(conn, self.length, chunk)
                if rc == 1:
                    continue
                if rc == 0:
                    self.streams[self.cid] = self
                    return
                if rc < 0:
                    self.finish()
                    return
                break  # 2: no more body is wanted (HEAD, length used up)
            if not self.head_sent:
                self._start(conn, 0 if self.length < 0 else self.length, b"")
            lib.fw_response_end(conn)
            self.finish()
        except BaseException:  # noqa: B036 - an app's SystemExit must not end the server
            self.fail(conn, "error in the WSGI app's response")
        finally:
            self.conn = None

    def fail(self, conn: Any, what: str) -> None:
        """The app failed: a 500 if nothing was sent yet, else close."""
        logger.error("%s", what, exc_info=sys.exc_info())
        if self.head_sent:
            lib.fw_response_abort(conn)
        else:
            lib.fw_response_error(conn, 500)
            self.head_sent = True
        self.finish()

    def finish(self) -> None:
        """Release everything exactly once: the iterable's close(), the
        spooled input file, the stream registration."""
        if self.done:
            return
        self.done = True
        self.streams.pop(self.cid, None)
        result, self.result, self.it = self.result, None, None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("error in the response iterable's close()")
        stream = self.input
        if type(stream) is not BytesIO:
            try:
                stream.close()
            except OSError:
                pass
