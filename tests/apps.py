"""WSGI apps the tests serve.  `router` picks a behaviour by path so that one
server process covers most tests; the others are for tests that need their
own process (timeouts, shutdown, frameworks)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

# What happened to response iterables, for tests to read back (/stats).
STATS = {"closed": 0, "created": 0, "close_errors": 0}
# Apps may run on several threads (--threads): counting takes a lock.
_STATS_LOCK = threading.Lock()


def _count(key: str) -> None:
    with _STATS_LOCK:
        STATS[key] = STATS.get(key, 0) + 1


class Tracked:
    """An iterable whose close() is counted."""

    def __init__(self, chunks, fail_at=None, fail_in_close=False, forever=False):
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.fail_in_close = fail_in_close
        self.forever = forever
        _count("created")

    def __iter__(self):
        i = 0
        while True:
            if self.forever:
                yield b"x" * 65536
                continue
            if i == self.fail_at:
                raise RuntimeError("failing inside iteration")
            if i >= len(self.chunks):
                return
            yield self.chunks[i]
            i += 1

    def close(self):
        _count("closed")
        if self.fail_in_close:
            _count("close_errors")
            raise RuntimeError("failing inside close()")


class _Closing:
    """Wraps an iterator and counts its close() (a generator's own close
    would not be counted)."""

    def __init__(self, it):
        self.it = it
        _count("created")

    def __iter__(self):
        return self.it

    def close(self):
        _count("closed")
        self.it.close()


def _qs(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


_COUNTED = [0]  # app calls to /counted


def router(environ, start_response):
    path = environ["PATH_INFO"]
    q = _qs(environ)
    if path == "/switch-interval":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(sys.getswitchinterval()).encode()]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, World!"]
    if path == "/counted":
        _COUNTED[0] += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"counted"]
    if path == "/count":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(_COUNTED[0]).encode()]
    if path == "/write-from-a-thread":
        # write() handed to a thread of the app's own: what it raises there.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        said: list[str] = []

        def other() -> None:
            try:
                write(b"from the other thread\n")
                said.append("no error")
            except Exception as exc:
                said.append(f"{type(exc).__name__}: {exc}")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        return [said[0].encode()]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        env["wsgi.input_terminated"] = environ.get("wsgi.input_terminated")
        env["wsgi.version"] = list(environ["wsgi.version"])
        env["body_len"] = len(body)
        env["body_head"] = body[:64].decode("latin-1")
        data = json.dumps(env).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(data)))])
        return [data]
    if path == "/body":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/input-methods":
        inp = environ["wsgi.input"]
        first = inp.readline()
        limited = inp.readline(3)
        chunk = inp.read(4)
        rest_lines = inp.readlines()
        after = inp.read()
        after_n = inp.read(10)
        out = json.dumps({
            "first": first.decode("latin-1"),
            "limited": limited.decode("latin-1"),
            "chunk": chunk.decode("latin-1"),
            "rest": [x.decode("latin-1") for x in rest_lines],
            "after": after.decode("latin-1"),
            "after_n": after_n.decode("latin-1"),
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path == "/iter-input":
        lines = [line for line in environ["wsgi.input"]]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(lines)).encode()]
    if path == "/stream":
        n = int(q.get("n", "3"))
        size = int(q.get("size", "5"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([str(i % 10).encode() * size for i in range(n)])
    if path == "/blocks":
        # Many small blocks yielded as fast as the generator runs, each
        # naming its client and place; every 50th is large enough to be
        # sent from the app's own bytes.
        ident, n = q.get("id", "0"), int(q.get("n", "100"))

        def blocks():
            for k in range(n):
                piece = f"{ident}:{k};".encode()
                yield piece * 8000 if k % 50 == 49 else piece
        start_response("200 OK", [("Content-Type", "text/plain")])
        return blocks()
    if path == "/generator":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"gen-"
            yield b""
            yield b"erated"
        return gen()
    if path == "/empty-generator":
        def gen2():
            start_response("204 No Content", [])
            return
            yield b""  # pragma: no cover
        return gen2()
    if path == "/slow-stream":
        def slow():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first;"
            time.sleep(float(q.get("s", "1")))
            yield b"second"
        return slow()
    if path == "/stream-cl":
        start_response("200 OK", [("Content-Length", "10")])
        return Tracked([b"01234", b"56789"])
    if path == "/short-cl":
        start_response("200 OK", [("Content-Length", "100")])
        return Tracked([b"only this"])
    if path == "/long-cl":
        start_response("200 OK", [("Content-Length", "4")])
        return Tracked([b"0123", b"456789"])
    if path == "/big":
        size = int(q.get("size", str(1 << 20)))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [bytes(range(256)) * (size // 256) + b"x" * (size % 256)]
    if path == "/raise-before":
        raise RuntimeError("failing before start_response")
    if path == "/raise-after-start":
        start_response("200 OK", [])
        raise RuntimeError("failing after start_response")
    if path == "/raise-in-iter":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"first", b"second", b"third"], fail_at=int(q.get("at", "1")))
    if path == "/raise-in-close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"fine"], fail_in_close=True)
    if path == "/forever":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked([], forever=True)
    if path == "/return-str":
        start_response("200 OK", [])
        return ["not bytes"]
    if path == "/return-none":
        start_response("200 OK", [])
        return None
    if path == "/return-int":
        start_response("200 OK", [])
        return 42
    if path == "/twice":
        start_response("200 OK", [])
        start_response("500 Oops", [])
        return [b"no"]
    if path == "/no-start":
        return [b"never started"]
    if path == "/exc-info":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")],
                           sys.exc_info())
        return [b"replaced"]
    if path == "/exc-info-late":
        write = start_response("200 OK", [])
        write(b"sent already")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"unreachable"]
    if path == "/bad-header":
        kind = q.get("kind", "crlf")
        value = {"crlf": "a\r\nInjected: yes", "lf": "a\nInjected: yes",
                 "nonlatin": "\u20ac", "nul": "a\x00b"}[kind]
        start_response("200 OK", [("X-Bad", value)])
        return [b"bad"]
    if path == "/bad-header-name":
        start_response("200 OK", [("Bad Name", "v")])
        return [b"bad"]
    if path == "/bad-status":
        start_response(q.get("s", "abc").replace("+", " "), [])
        return [b"bad"]
    if path == "/header-tuple3":
        start_response("200 OK", [("A", "b", "c")])
        return [b"bad"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-")
        write(b"then-")
        return [b"returned"]
    if path == "/write-big":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(int(q.get("n", "64"))):
            write(b"w" * 65536)
        return []
    if path == "/status":
        code = q.get("code", "200")
        start_response(f"{code} Whatever", [("X-Code", code)])
        return [b"body-for-" + code.encode()]
    if path == "/headers":
        start_response("200 OK", [("X-One", "1"), ("X-Two", "two"),
                                  ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"h"]
    if path == "/own-date":
        start_response("200 OK", [("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
                                  ("Server", "custom")])
        return [b"d"]
    if path == "/conn-close":
        start_response("200 OK", [("Connection", "close")])
        return [b"closing"]
    if path == "/hop":
        start_response("200 OK", [("Transfer-Encoding", "chunked"),
                                  ("Keep-Alive", "timeout=5")])
        return [b"hop"]
    if path == "/file":
        name = os.environ.get("FASTWSGI_TEST_FILE", "")
        f = open(name, "rb")
        f.seek(int(q.get("offset", "0")))
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/filelike":
        import io
        data = io.BytesIO(b"from a file-like object" * 1000)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](data, 4096)
    if path == "/errors":
        environ["wsgi.errors"].write("message to wsgi.errors\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b"logged"]
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.5")))
        start_response("200 OK", [])
        return [b"slept"]
    if path == "/sse":
        # An endless event stream: one event every `every` seconds.
        every = float(q.get("every", "0.05"))

        def events():
            i = 0
            while True:
                yield f"data: {i}\n\n".encode()
                i += 1
                time.sleep(every)
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return _Closing(events())
    if path == "/burst-then-pause":
        # More than socket buffers hold, then a long pause, then the end.
        def burst():
            yield b"b" * (16 << 20)
            time.sleep(float(q.get("s", "2")))
            yield b"end"
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return burst()
    if path == "/write-flood":
        # write() far more than any socket buffer holds.
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = b"w" * 65536
        for _ in range(int(q.get("blocks", "800"))):
            write(block)
        return []
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/spin":
        # Computes (holding the interpreter lock) for `ms` of this
        # thread's CPU time, then says which process answered.
        end = time.thread_time() + float(q.get("ms", "1")) / 1000
        while time.thread_time() < end:
            pass
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/thread":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]
    if path == "/exit":
        raise SystemExit(3)
    if path == "/stats":
        data = json.dumps({k: v for k, v in STATS.items() if k != "kept_write"}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/environ" or path.startswith("/environ/"):
        # every key with its type name, and the value when it is plain data
        out = {}
        for key, value in environ.items():
            if isinstance(value, tuple):
                value = list(value)
            elif not isinstance(value, (str, bool, int)):
                value = None
            out[key] = [type(environ[key]).__name__, value]
        inp, err = environ["wsgi.input"], environ["wsgi.errors"]
        wanted = ("read", "readline", "readlines", "__iter__")
        out["input methods"] = [m for m in wanted if callable(getattr(inp, m, None))]
        wanted = ("write", "writelines", "flush")
        out["errors methods"] = [m for m in wanted if callable(getattr(err, m, None))]
        data = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/header-tuples":
        # a 3-tuple followed by a 1-tuple: together they hold an even count
        start_response("200 OK", [("X-A", "1", "X-Injected"), ("yes",)])
        return [b"bad"]
    if path == "/str-late":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"bytes first", "then str"])
    if path == "/smuggled":
        # the hidden request of tests/test_hostile.py: it must never get here
        STATS["smuggled"] = STATS.get("smuggled", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"smuggled request executed"]
    if path == "/trim":
        # give freed heap memory back to the system, so that RSS shows what
        # is in use (scripts/soak compares it before and after a long run)
        import ctypes
        import gc
        gc.collect()
        try:
            trimmed = ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            trimmed = -1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(trimmed).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found: " + path.encode("latin-1")]


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


application = hello


def factory():
    return hello


not_callable = 42


# ---------------------------------------------------------------- apps for
# test_security.py, test_reliability.py and test_environ_oracle.py


def environ_echo(environ, start_response):
    """Every upper-case str key of the environ as JSON, whatever the path,
    and the length of the body under the lower-case key "body_len"."""
    body = environ["wsgi.input"].read()
    out = {k: v for k, v in environ.items() if k.isupper() and type(v) is str}
    out["body_len"] = len(body)
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def peer_echo(environ, start_response):
    """What the server made of the peer and the forwarding fields, as JSON."""
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR",
            "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
            "fastwsgi.proxy_client")
    data = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


class LateWriter:
    """A response iterable whose close() calls the write() callable that
    start_response returned, after the response has ended."""

    def __init__(self, write, chunks, size):
        self.write = write
        self.chunks = chunks
        self.size = size

    def __iter__(self):
        for i in range(self.chunks):
            yield str(i % 10).encode() * self.size

    def close(self):
        STATS["late_writes"] = STATS.get("late_writes", 0) + 1
        self.write(b"LATE-WRITE-FROM-CLOSE")


def hazards(environ, start_response):
    """Apps that do what the WSGI contract forbids or barely allows."""
    path = environ["PATH_INFO"]
    q = _qs(environ)
    if path == "/late-write":
        # start_response in the app call itself: write() is the one handed
        # out before any response object existed
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        return LateWriter(write, int(q.get("n", "2")), int(q.get("size", "5")))
    if path == "/write-then-more":
        n = int(q.get("n", "10"))
        write = start_response("200 OK", [("Content-Length", str(n))])
        write(b"x" * n)
        return [b"and-more-than-the-content-length"]
    if path == "/nul-header":
        name = {"cookie": "Set-Cookie\0evil=1", "plain": "X-A\0b"}[q.get("kind", "cookie")]
        start_response("200 OK", [(name,)])
        return [b"nul"]
    if path == "/drip":
        # many small blocks, each after a short wait: a long stream the
        # server gets control back from between blocks
        def drip():
            for _ in range(int(q.get("n", "40"))):
                time.sleep(float(q.get("s", "0.1")))
                yield b"drop;"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return drip()
    if path == "/head-empty":
        # as Flask answers HEAD: the headers of GET, an empty body
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else b"the GET body"]
    if path == "/keep-write":
        # the write() of this request, kept for a later one to misuse
        STATS["kept_write"] = start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"kept"]
    if path == "/use-kept":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            STATS.pop("kept_write")(b"SECRET-FROM-ANOTHER-REQUEST")
        except Exception as e:
            return [f"refused: {type(e).__name__}".encode()]
        return [b"accepted"]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, World!"]
    if path == "/stats":
        data = json.dumps({k: v for k, v in STATS.items() if k != "kept_write"}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    return router(environ, start_response)


BLOB: dict = {}


def _blob() -> bytes:
    """50 MiB made once per process and kept: the server must send it
    without copying what the client has not taken yet."""
    if "data" not in BLOB:
        size = int(os.environ.get("FASTWSGI_TEST_BLOB", str(50 << 20)))
        BLOB["data"] = (bytes(range(256)) * (size // 256 + 1))[:size]
    return BLOB["data"]


def sturdy(environ, start_response):
    """Large bodies, files, odd statuses: the output side."""
    path = environ["PATH_INFO"]
    q = _qs(environ)
    if path == "/blob":
        data = _blob()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    if path == "/blob-gen":
        data = _blob()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def gen():
            yield data
        return gen()
    if path == "/write-then-file":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        write(b"written-first;")
        f = open(os.environ["FASTWSGI_TEST_FILE"], "rb")
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/gzip-file":
        import gzip
        f = gzip.open(os.environ["FASTWSGI_TEST_GZIP"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/proc-status":
        f = open("/proc/self/status", "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/no-content":
        headers = [("X-Kind", "no-content")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response(q.get("status", "204") + " Whatever", headers)
        if q.get("body") == "gen":
            def empty():
                yield b""
            return empty()
        return [b""]
    return router(environ, start_response)


def nofile_limited():
    """A factory ('apps:nofile_limited()'): lowers this process's soft
    descriptor limit to $FASTWSGI_TEST_NOFILE before the server starts."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (int(os.environ["FASTWSGI_TEST_NOFILE"]), hard))
    return router


def sleepy_download(environ, start_response):
    """/sleepy-download?s=S&size=N: sleeps S seconds, then answers N bytes
    (bytes(range(256)) repeated); everything else as apps.router."""
    if environ["PATH_INFO"] != "/sleepy-download":
        return router(environ, start_response)
    q = _qs(environ)
    time.sleep(float(q.get("s", "1")))
    size = int(q.get("size", str(16 << 20)))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [bytes(range(256)) * (size // 256)]
