"""The WSGI apps every server runs, one callable per scenario.

This file is imported by each server under test, inside that server's own
virtualenv and interpreter (CPython 3.11 or PyPy 3.9), so it depends on the
standard library only; Flask is imported lazily, on first use of `flask_app`.
The orchestrator imports it too, to know the exact bodies to expect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO = b"Hello, World!"
# A generator body is split so that a server really has to emit several chunks.
CHUNKS = (b"Hello", b", ", b"World!")
BIG_SIZE = 1024 * 1024
POST_SIZE = 64 * 1024
FILE_SIZE = 10 * 1024 * 1024
FLASK_PAYLOAD = {"message": "Hello, World!"}
FILE_ENV = "BENCH_FILE"  # path of the file the `file` scenario serves
FILE_BLOCK = 64 * 1024


def pattern_bytes(size: int) -> bytes:
    """Deterministic, non-repeating-looking content, so a truncated or shifted
    body cannot pass validation by accident (all-zero bodies could)."""
    unit = bytes(range(256)) + b"fastwsgi-bench"
    return (unit * (size // len(unit) + 1))[:size]


# Built once at import: the `big` scenario measures sending 1 MiB, not building it.
BIG_BODY = pattern_bytes(BIG_SIZE)


def _text(start_response: StartResponse, body: bytes,
          content_type: str = "text/plain") -> list[bytes]:
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return _text(start_response, HELLO)


def chunked(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    # No Content-Length on purpose: an HTTP/1.1 server must frame this itself
    # (chunked transfer coding, or close-delimited).
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield from CHUNKS


def big(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return _text(start_response, BIG_BODY, "application/octet-stream")


class _FileBlocks:
    """Fallback for servers without wsgi.file_wrapper: plain block iteration
    with close(), so the file is closed by the server as PEP 3333 requires."""

    def __init__(self, fileobj: Any, block: int) -> None:
        self._f = fileobj
        self._block = block

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._f.read(self._block)
            if not data:
                return
            yield data

    def close(self) -> None:
        self._f.close()


def file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = os.environ[FILE_ENV]
    f = open(path, "rb")  # closed by the server via the iterable's close()
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    wrapper = environ.get("wsgi.file_wrapper")
    # Some servers advertise the key with a None value (socketify does).
    if wrapper:
        return wrapper(f, FILE_BLOCK)  # type: ignore[no-any-return]
    return _FileBlocks(f, FILE_BLOCK)


def post(environ: Environ, start_response: StartResponse) -> list[bytes]:
    # Read the whole body, in blocks as a real app would, and answer how much
    # arrived, so a server that drops or truncates the body fails validation.
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    total = 0
    while remaining > 0:
        data = stream.read(min(remaining, 16384))
        if not data:
            break
        total += len(data)
        remaining -= len(data)
    return _text(start_response, str(total).encode())


def sleep5ms(environ: Environ, start_response: StartResponse) -> list[bytes]:
    # A blocking app: shows how a server copes when the app, not HTTP, is slow.
    time.sleep(0.005)
    return _text(start_response, HELLO)


CPU_SECONDS = 0.001  # the `fairness` scenario's computing time per request


def cpu1ms(environ: Environ, start_response: StartResponse) -> list[bytes]:
    # An app that computes: pure Python holding the interpreter lock for
    # 1 ms of this thread's own CPU time (time.thread_time, so the time the
    # thread waits for the lock or a core does not count).
    deadline = time.thread_time() + CPU_SECONDS
    while time.thread_time() < deadline:
        pass
    return _text(start_response, HELLO)


_flask_wsgi: Any = None
_flask_sleepy: Any = None


def flask_sleep200(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    # The commonest WSGI app there is: a Flask view that waits 200 ms on
    # I/O (a database, another service) before it answers.
    global _flask_sleepy
    if _flask_sleepy is None:
        from flask import Flask

        app = Flask("bench-sleep")

        @app.route("/")
        def hello() -> Any:
            time.sleep(0.2)
            return HELLO, 200, {"Content-Type": "text/plain"}

        _flask_sleepy = app.wsgi_app
    return _flask_sleepy(environ, start_response)  # type: ignore[no-any-return]


def flask_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    global _flask_wsgi
    if _flask_wsgi is None:
        _flask_wsgi = _make_flask()
    return _flask_wsgi(environ, start_response)  # type: ignore[no-any-return]


def _make_flask() -> Any:
    from flask import Flask, jsonify

    app = Flask("bench")

    @app.route("/")
    def index() -> Any:
        return jsonify(FLASK_PAYLOAD)

    return app.wsgi_app

