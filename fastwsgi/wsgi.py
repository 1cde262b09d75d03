"""The PEP 3333 contract: environ, start_response, write, the response
iterable and wsgi.file_wrapper.

C hands over a request as one NUL-separated block of environ keys and
values; this module turns it into the environ, calls the app, and hands
the response back to C in as few calls as it can (one for the common
``[bytes]`` body).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from io import BytesIO
from types import TracebackType
from typing import Any, Callable, Optional

from ._fastwsgi import ffi, lib
from .logs import logger
from .proxies import Proxies

ExcInfo = tuple[type, BaseException, Optional[TracebackType]]
Headers = list[tuple[str, str]]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]

FW_IN_DUPS = lib.FW_IN_DUPS
FW_IN_FRESH = lib.FW_IN_FRESH
FW_IN_BODY = lib.FW_IN_BODY
FW_IN_GONE = lib.FW_IN_GONE
FW_IN_EXTRA = FW_IN_FRESH | FW_IN_BODY
FW_IN_RARE = FW_IN_EXTRA | FW_IN_DUPS
FW_SHAPE_ONCE = lib.FW_SHAPE_ONCE
_unpack = ffi.unpack
_simple = lib.fw_response_simple
_write = lib.fw_response_write

# Environ keys worth sharing with the app's own string literals (the same
# object makes a lookup an identity check).  Only these are interned:
# client-chosen header names are not, since interned strings may never be
# freed (CPython 3.12 makes them immortal).
_KNOWN_KEYS: dict[str, str] = {
    key: key for key in (
        "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
        "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "CONTENT_TYPE",
        "CONTENT_LENGTH", "HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT",
        "HTTP_ACCEPT_ENCODING", "HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION",
        "HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_REFERER", "HTTP_ORIGIN",
        "HTTP_CACHE_CONTROL", "HTTP_PRAGMA", "HTTP_IF_NONE_MATCH",
        "HTTP_IF_MODIFIED_SINCE", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST", "HTTP_X_REAL_IP", "HTTP_X_REQUEST_ID",
        "HTTP_UPGRADE_INSECURE_REQUESTS", "HTTP_SEC_FETCH_MODE", "HTTP_DNT",
        "HTTP_EXPECT", "HTTP_TRANSFER_ENCODING", "GET", "POST", "HEAD", "",
        "HTTP/1.1", "HTTP/1.0",
    )
}


class FileWrapper:
    """``wsgi.file_wrapper``: a real file is sent by C (--sendfile says how);
    any other file-like object is read in blocks."""

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


def _merge_repeated(environ: Environ, keys: tuple[str, ...], values: list[str]) -> None:
    """Repeated header fields are joined with ", " (RFC 9110 5.3)."""
    seen: set[str] = set()
    for key, value in zip(keys, values):
        if key in seen:
            environ[key] = environ[key] + ", " + value
        else:
            seen.add(key)
            environ[key] = value


class EmptyInput:
    """``wsgi.input`` of a request without a body.  It has no state, so one
    instance serves every such request (most of them: GET, HEAD)."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


EMPTY_INPUT: Any = EmptyInput()


def make_input(body: Any, body_len: int, body_fd: int) -> Any:
    """``wsgi.input``: the whole body is already here, so reads never block
    and end exactly at the end of the body."""
    if body_fd >= 0:
        return open(body_fd, "rb")  # noqa: SIM115 - closed by Exchange.finish
    if body_len:
        return BytesIO(_unpack(body, body_len))
    return EMPTY_INPUT


class Dispatch:
    """What the request callback needs: the app, one environ template per
    listener, the exchanges waiting for their connection to drain, and the
    environ shapes.

    A shape is a sequence of environ keys that C has numbered.  For each
    (listener, shape), a skeleton environ holds the template's keys and the
    shape's keys (with placeholder values) in a table already of the right
    size, and a builder made for that shape copies it and stores the values
    under interned, pre-hashed keys: one dict copy and one subscript store
    per value, with no per-request iterator or tuple."""

    def __init__(self, app: WSGIApp, templates: list[Environ],
                 threaded: bool = False, proxies: Proxies | None = None) -> None:
        self.proxies = proxies
        self.app = app
        self.templates = templates
        # On an app thread (one Dispatch per thread): output that does not
        # fit is waited for on the spot instead of resumed by a callback.
        self.threaded = threaded
        # The call that sends a whole [bytes] response; an app thread's
        # also ends the request and takes the next (see pool.py).
        self.simple: Callable[..., int] = _simple
        self.streams: dict[int, Exchange] = {}
        # Per shape: the keys that take a value from the request, and the
        # values C sent as part of the shape ("KEY=VALUE" keys).
        # One more than C numbers: FW_SHAPE_ONCE holds keys good for one
        # request.
        nshapes = lib.FW_SHAPES + 1
        self.keys: list[tuple[str, ...]] = [()] * nshapes
        self.consts: list[dict[str, str]] = [{} for _ in range(nshapes)]
        # Builders by listener | shape << 8, i.e. by flags >> 8.
        self.shapes: list[Callable[[list[str]], Environ] | None] = [None] * (nshapes << 8)
        # Threaded mode: the keys' generation each number was learnt with.
        self.gens: list[int] = [-1] * nshapes
        # The request being handled.  One app call runs at a time, so the
        # common path keeps its state here instead of in a new object per
        # request; anything beyond one [bytes] body moves to an Exchange
        # (`current`), which then receives the app's calls.
        self.conn: Any = None
        self.input: Any = EMPTY_INPUT
        self.status: str | None = None
        self.headers: Headers = []
        self.current: Exchange | None = None
        self.start = self.start_response
        # Numbers the requests: a write() callable knows its request's.
        self.serial = 0
        self.writer = Writer(self, 0)
        # The last response head, by value: an app mostly sends the same
        # status and headers again, and comparing two short lists of tuples
        # costs far less than hashing them as a dict key would.
        self.last_status = ""
        self.last_headers: list[tuple[str, str]] = []
        self.last_head = b""

    def learn(self, shape: int, block: bytes) -> None:
        """C numbered a new key sequence (or gave a number new keys)."""
        keys: list[str] = []
        consts: dict[str, str] = {}
        known = _KNOWN_KEYS.get
        for key in block.decode("latin-1").split("\0"):
            name, eq, value = key.partition("=")
            if eq:
                consts[known(name, name)] = known(value, value)
            else:
                keys.append(known(key, key))
        self.keys[shape] = tuple(keys)
        self.consts[shape] = consts
        for listener in range(len(self.templates)):
            self.shapes[listener | shape << 8] = None

    def environ(self, conn: Any, env: Any, env_len: int, flags: int) -> Environ:
        """The environ when the request is not of the commonest kind: its
        shape is new, it has a body, or it repeats a header."""
        shape = flags >> 16
        listener = (flags >> 8) & 255
        stream = EMPTY_INPUT
        if flags & FW_IN_EXTRA:
            extra = lib.fw_request_extra(conn)
            if flags & FW_IN_FRESH:
                self.learn(shape, _unpack(extra.keys, extra.keys_len))
            if flags & FW_IN_BODY:
                stream = make_input(extra.body, extra.body_len, extra.body_fd)
        self.input = stream
        values = _unpack(env, env_len).decode("latin-1").split("\0")
        if flags & (FW_IN_DUPS | FW_IN_FRESH):
            # A shape seen for the first time gets no builder yet: compiling
            # one pays off only when the shape comes again (the next request
            # of it finds its number known), so a client sending ever new
            # header names costs no compile() per request.
            environ = self.merged(listener, shape, values)
        else:
            build = self.shapes[flags >> 8] or self.builder(listener, shape)
            environ = build(values)
        environ["wsgi.input"] = stream
        return environ

    def job_environ(self, job: Any) -> Environ:
        """The environ of a request handed to this app thread.  C always
        sends the keys; they are learnt again whenever the number's keys
        changed since this thread last saw it (generation 0: keys for this
        request only)."""
        flags = job.flags
        shape = flags >> 16
        listener = (flags >> 8) & 255
        gen = job.keys_gen
        values = _unpack(job.env, job.env_len).decode("latin-1").split("\0")
        if gen == 0 or self.gens[shape] != gen:
            self.learn(shape, _unpack(job.keys, job.keys_len))
            self.gens[shape] = gen
            environ = self.merged(listener, shape, values)
        elif flags & FW_IN_DUPS:
            environ = self.merged(listener, shape, values)
        else:
            build = self.shapes[flags >> 8] or self.builder(listener, shape)
            environ = build(values)
        if flags & FW_IN_BODY:
            environ["wsgi.input"] = self.input = make_input(
                job.body, job.body_len, job.body_fd)
        return environ

    def merged(self, listener: int, shape: int, values: list[str]) -> Environ:
        """The environ of a request that repeats a header name."""
        environ = self.templates[listener].copy()
        environ.update(self.consts[shape])
        _merge_repeated(environ, self.keys[shape], values)
        environ["wsgi.input"] = EMPTY_INPUT
        if self.proxies is not None and self.proxies.keys.intersection(environ):
            self.proxies.apply(environ)
        return environ

    def builder(self, listener: int, shape: int) -> Callable[[list[str]], Environ]:
        """Make the function that builds an environ of this shape.

        Its source names only positional parameters, never a key, so no
        request data ever reaches compile(); the keys arrive as default
        values, which makes each store a local load and a dict store."""
        environ = self.templates[listener].copy()
        environ.update(self.consts[shape])
        keys = self.keys[shape]
        for key in keys:
            environ[key] = None
        environ["wsgi.input"] = EMPTY_INPUT
        names = [f"k{i}" for i in range(len(keys))]
        targets = "".join(f"e[{name}], " for name in names)
        source = (f"def build(v, copy, {''.join(n + ', ' for n in names)}):\n"
                  f"    e = copy()\n"
                  + (f"    {targets}= v\n" if names else "")
                  + "    return e\n")
        scope: dict[str, Any] = {}
        exec(compile(source, f"<environ shape {shape}>", "exec"), scope)  # noqa: S102
        build = scope["build"]
        build.__defaults__ = (environ.copy, *keys)
        built: Callable[[list[str]], Environ] = build
        if self.proxies is not None:
            built = self.proxies.wrap(keys, built)
        self.shapes[listener | shape << 8] = built
        return built

    def start_response(self, status: str, headers: Headers,
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        current = self.current
        if current is not None:
            return current.start_response(status, headers, exc_info)
        if exc_info is not None:
            exc_info = None  # nothing is sent before an Exchange takes over
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise ResponseError(f"status must be str, not {type(status).__name__}")
        self.status = status
        self.headers = headers
        writer = self.writer
        if _refcount(writer) > 3:
            # An earlier request's app kept it (or refcounts cannot tell):
            # that one stays bound to its own request, this one gets anew.
            writer = self.writer = Writer(self, self.serial)
        else:
            writer.serial = self.serial  # nobody else holds it
        return writer

    def write(self, data: bytes) -> None:
        current = self.current
        if current is None:
            if self.conn is None:
                raise ResponseError("write() called after the response ended")
            current = self.exchange()
        current.write(data)

    def head(self, status: str, headers: Headers) -> bytes:
        """The block C checks, "status\\nname\\0value\\n...", remembered
        as the last head when the headers are tuples (immutable, so the copy
        kept for the next comparison cannot change under it)."""
        text = status
        if headers:
            text = status + "\n" + "\n".join(map("\0".join, headers))
            # One NUL per header, the one the join put between name and
            # value, and every header a pair: a NUL of the app's own (a
            # one-item tuple holding "name\0value") would pose as that
            # separator.
            if text.count("\0") != len(headers) or any(len(h) != 2 for h in headers):
                raise ResponseError("a header is not a (name, value) pair of str "
                                    "without NUL characters")
        head = text.encode("latin-1")
        if type(status) is str and all(type(h) is tuple for h in headers):
            self.last_status = status
            self.last_headers = list(headers)
            self.last_head = head
        return head

    def exchange(self) -> Exchange:
        """Move the request to an Exchange, which can stream."""
        if self.conn is None:
            raise ResponseError("no request is being handled")
        ex = Exchange(self.conn, self.input, self)
        ex.status = self.status
        ex.headers = self.headers
        self.current = ex
        return ex


_active: list[Dispatch] = []


def activate(dispatch: Dispatch | None) -> None:
    """Route requests to `dispatch` (one serving loop per process)."""
    _active[:] = [dispatch] if dispatch else []


@ffi.def_extern()
def fw_py_request(ud: Any, conn: Any, env: Any, env_len: int, flags: int) -> int:
    """One request, from C: one with a body, of a new shape, or pipelined
    behind another."""
    d = _active[0]
    if flags & FW_IN_RARE:
        environ = d.environ(conn, env, env_len, flags)
    else:
        build = d.shapes[flags >> 8] or d.builder((flags >> 8) & 255, flags >> 16)
        environ = build(_unpack(env, env_len).decode("latin-1").split("\0"))
    serve_request(d, conn, environ, flags)
    return 0


@ffi.def_extern()
def fw_py_batch(ud: Any, conns: Any, flags: Any, counts: Any, env: Any,
                env_len: int, n: int) -> None:
    """The requests without a body that one epoll batch gathered: their
    values come as one block, split once."""
    d = _active[0]
    values = _unpack(env, env_len).decode("latin-1").split("\0")
    shapes = d.shapes
    start = 0
    for conn, f, count in zip(_unpack(conns, n), _unpack(flags, n), _unpack(counts, n)):
        end = start + count
        if f & FW_IN_GONE:
            start = end     # its client left: no app call
            continue
        if f & FW_IN_DUPS:
            environ = d.merged((f >> 8) & 255, f >> 16, values[start:end])
        else:
            build = shapes[f >> 8] or d.builder((f >> 8) & 255, f >> 16)
            environ = build(values[start:end])
        start = end
        serve_request(d, conn, environ, f)


def serve_request(d: Dispatch, conn: Any, environ: Environ, flags: int) -> int:
    """Call the app and answer.  The common case, a ``[bytes]`` body, is
    handled here with one call into C (whose result is returned: on an app
    thread it may say the next request is taken already); everything else
    goes to an Exchange, and 0 is returned."""
    d.conn = conn
    d.serial += 1
    d.status = None
    result = None
    try:
        result = d.app(environ, d.start)
        if type(result) is list and len(result) == 1 and d.current is None:
            data = result[0]
            status = d.status
            if type(data) is bytes and status is not None:
                headers = d.headers
                if status == d.last_status and headers == d.last_headers:
                    head = d.last_head
                else:
                    head = d.head(status, headers)
                if flags & FW_IN_BODY:
                    # The app is done with its input (and an app thread
                    # may wait for its next request inside the next call).
                    d.input.close()
                    d.input = EMPTY_INPUT
                rc = d.simple(conn, head, len(head), len(headers), data, len(data))
                if rc == 0:
                    # C sends the rest from `data` in place: it must live
                    # until the connection drains, then the response ends.
                    d.exchange().hold(conn, result, data, d.streams)
                    d.current = None
                elif rc == -2:
                    raise ResponseError(f"invalid status or headers: {d.status!r}")
                # The request's state ends with it: a write() kept by the
                # app and called later must find no connection.
                d.conn = None
                return rc
        ex = d.current or d.exchange()
        ex.environ = environ
    except BaseException:  # noqa: B036 - an app's SystemExit must not end the server
        ex = d.current or d.exchange()
        ex.environ = environ
        ex.cid = 0
        ex.streams = d.streams
        ex.result = result
        ex.fail(conn, "error in the WSGI app")
    else:
        ex.respond(conn, result, d.streams)
    # As above: nothing of this request is reachable from the next.
    ex.conn = None
    d.current = None
    d.conn = None
    d.input = EMPTY_INPUT
    return 0


@ffi.def_extern()
def fw_py_writable(ud: Any, conn: Any, cid: int) -> None:
    """A streamed response's connection drained: produce more."""
    exchange = _active[0].streams.get(cid) if _active else None
    if exchange is None:
        lib.fw_response_abort(conn)
    else:
        exchange.pump(conn)


@ffi.def_extern()
def fw_py_closed(ud: Any, cid: int) -> None:
    """The connection of a streamed response closed before it ended."""
    exchange = _active[0].streams.pop(cid, None) if _active else None
    if exchange is not None:
        logger.debug("client went away before the response was complete")
        exchange.finish()


class ResponseError(Exception):
    """The app broke the WSGI contract in a way that ends its response."""


def _kept(obj: Any) -> int:
    """Where references are not counted (PyPy), every object counts as
    kept: start_response then makes a new Writer each time."""
    return 4


# How many references an object has: one held only by the dispatcher, the
# caller's local and the call itself has 3, so more means someone kept it.
_refcount: Callable[[Any], int] = getattr(sys, "getrefcount", _kept)


class Writer:
    """The write() callable start_response returns, bound to its request:
    kept by the app and called once that request is over (during another
    one, or from another thread), it raises instead of writing into
    whatever request the server is handling then.  One that nobody kept
    is used again for the next request (see Dispatch.start_response)."""

    __slots__ = ("dispatch", "serial")

    def __init__(self, dispatch: Dispatch, serial: int) -> None:
        self.dispatch = dispatch
        self.serial = serial

    def __call__(self, data: bytes) -> None:
        d = self.dispatch
        current = d.current
        mine = (current.serial if current is not None
                else d.serial if d.conn is not None else -1)
        if mine != self.serial:
            raise ResponseError("write() called after its response ended")
        d.write(data)


def describe(environ: Environ | None) -> str:
    """The request an environ is of, for the log: method, target, peer."""
    if not environ:
        return "a request"
    query = environ.get("QUERY_STRING")
    peer = environ.get("REMOTE_ADDR") or "a unix socket peer"
    port = environ.get("REMOTE_PORT")
    text = (f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')}"
            f"{'?' + query if query else ''} from {peer}{':' + port if port else ''}")
    return text.translate(_LOG_SAFE)


# PATH_INFO is percent-decoded: a client's %0d%0a must not write a line of
# its own into the error log.  Control characters (C0, DEL, C1) and the
# backslash are written \xNN, as in the C side's request names.
_LOG_SAFE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x5C, *range(0x7F, 0xA0))}


class Exchange:
    """One request's response: start_response, write and the iterable.

    It lives past the app call only while a streamed body is pending; then
    the server keeps it by connection id until C asks for more output.
    """

    __slots__ = ("cid", "status", "headers", "head_sent", "result", "it",
                 "input", "conn", "length", "done", "streams", "file", "dispatch",
                 "ended", "held", "serial", "environ")

    def __init__(self, conn: Any, stream: Any, dispatch: Dispatch) -> None:
        # What respond() needs is set there.
        self.conn = conn
        self.input = stream
        self.dispatch = dispatch
        self.serial = dispatch.serial  # the request it answers
        self.environ: Environ | None = None  # to name it in the log
        self.ended = 0  # 2 or 3 once C ended the response (see fw.h)
        self.status: str | None = None
        self.headers: Headers = []
        self.head_sent = False
        self.done = False
        # Bytes C is still sending from in place (a 0 from C): kept alive
        # until C asks for more or the connection closes.
        self.held: bytes | None = None

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
        if self.ended:
            if data and self.ended == 2:
                self._excess(conn)
            return
        if not self.head_sent:
            rc = self._start(conn, -1, data)
        else:
            rc = _write(conn, data, len(data))
        if rc >= 2:
            self.ended = rc
            return
        if rc == 0:
            rc = lib.fw_conn_drain(conn)
        if rc < 0:
            if ffi.errno == errno.EPERM:
                raise ResponseError(
                    "write() called from a thread other than the one running the "
                    "request's app call (start_response's write() belongs to that call)")
            raise OSError("the client closed the connection")

    # -- handing over to C --

    def _start(self, conn: Any, length: int, data: bytes) -> int:
        status = self.status
        if status is None:
            raise ResponseError("the app returned without calling start_response()")
        headers = self.headers
        d = self.dispatch
        if status == d.last_status and headers == d.last_headers:
            head = d.last_head
        else:
            head = d.head(status, headers)
        rc: int = lib.fw_response_start(conn, head, len(head), len(headers),
                                        length, data, len(data))
        if rc == -2:
            raise ResponseError(f"invalid status or headers: {self.status!r}")
        if rc == -1 and ffi.errno == errno.EPERM:
            return rc           # refused before anything was sent: another thread
        self.head_sent = True
        return rc

    def _excess(self, conn: Any) -> None:
        """Body beyond the app's Content-Length: dropped, connection closed."""
        if self.ended == 2:
            logger.error("the app sent more than its Content-Length; "
                         "the rest is dropped and the connection closed")
            lib.fw_response_abort(conn)
            self.ended = 4

    def hold(self, conn: Any, result: Any, data: bytes,
             streams: dict[int, Exchange]) -> None:
        """The whole response is queued, but C sends part of it from
        `data` in place: keep it until C asks for more, then end."""
        self.cid = lib.fw_conn_id(conn)
        self.streams = streams
        self.result = result
        self.it: Iterator[bytes] | None = iter(())
        self.length = -1
        self.file = None
        self.head_sent = True
        self.held = data
        if self.dispatch.threaded:
            # An app thread waits for the loop to send it, then ends.
            if lib.fw_conn_drain(conn) < 0:
                self.finish()
            else:
                self.pump(conn)
            return
        streams[self.cid] = self

    def respond(self, conn: Any, result: Any, streams: dict[int, Exchange]) -> None:
        """Send any response the common path in fw_py_request did not."""
        self.cid = lib.fw_conn_id(conn)
        self.streams = streams
        self.result = result
        self.it = None
        self.length = -1
        self.file = None
        try:
            if type(result) in (list, tuple) and not self.head_sent:
                self.length = sum(map(len, result))
            elif (type(result) is FileWrapper and not self.head_sent
                    and self._sendfile(conn, result)):
                # (After write() the head is out without a length: the
                # file is then read and sent like any iterable.)
                return
            self.it = iter(result)
        except BaseException:  # noqa: B036 - an app's SystemExit must not end the server
            self.fail(conn, "error in the WSGI app's response")
            return
        self.pump(conn)

    def _sendfile(self, conn: Any, wrapper: FileWrapper) -> bool:
        """Send a real file from C (sendfile or copy).  False: iterate it instead."""
        filelike = wrapper.filelike
        # Only a plain binary file gives by read() exactly the bytes of its
        # descriptor: a gzip or text wrapper also has a fileno(), and a
        # /proc file reports a size of 0 but has content.
        if type(filelike) not in (io.BufferedReader, io.FileIO):
            return False
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
            offset = filelike.tell()
        except (OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return False
        count = max(st.st_size - offset, 0)
        rc = self._start(conn, count, b"")
        if rc == 1:
            rc = lib.fw_response_sendfile(conn, fd, offset, count)
            if rc == 0:
                self.file = filelike
                if self.dispatch.threaded:
                    if lib.fw_conn_drain(conn) >= 0:
                        lib.fw_response_end(conn)
                    self.finish()
                    return True
                self.streams[self.cid] = self
                return True
            if rc == 1:
                lib.fw_response_end(conn)
        self.finish()
        return True

    def pump(self, conn: Any) -> None:
        """Pull the iterable while C's output buffer has room."""
        self.conn = conn
        self.held = None  # C asks for more only once it sent them
        # A generator may call start_response while it is iterated.
        self.dispatch.current = self
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
                if self.ended:
                    # After write() used up the Content-Length.
                    self._excess(conn)
                    break
                if self.head_sent:
                    rc = _write(conn, chunk, len(chunk))
                else:
                    rc = self._start(conn, self.length, chunk)
                if rc == 1:
                    continue
                if rc == 0:
                    self.held = chunk
                    if self.dispatch.threaded:
                        # The loop sends it; this thread waits for room.
                        if lib.fw_conn_drain(conn) < 0:
                            self.finish()
                            return
                        self.held = None
                        continue
                    self.streams[self.cid] = self
                    return
                if rc == 2:
                    # The Content-Length is used up: more would be an error.
                    self.ended = 2
                    for extra in it:
                        if extra:
                            self._excess(conn)
                            break
                # -1: the client is gone; 3: no body goes with this response.
                self.finish()
                return
            if not self.head_sent:
                rc = self._start(conn, 0 if self.length < 0 else self.length, b"")
            else:
                rc = 1
            if rc == 1 and not self.ended:
                lib.fw_response_end(conn)
            self.finish()
        except BaseException:  # noqa: B036 - an app's SystemExit must not end the server
            self.fail(conn, "error in the WSGI app's response")
        finally:
            self.conn = None
            self.dispatch.current = None

    def fail(self, conn: Any, what: str) -> None:
        """The app failed: a 500 if nothing was sent yet, else close."""
        logger.error("%s, answering %s", what, describe(self.environ),
                     exc_info=sys.exc_info())
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
            except BaseException:  # noqa: B036 - CancelledError, GreenletExit: the thread goes on
                logger.exception("error in the response iterable's close()")
        stream = self.input
        if stream is not EMPTY_INPUT and type(stream) is not BytesIO:
            try:
                stream.close()
            except OSError:
                pass
