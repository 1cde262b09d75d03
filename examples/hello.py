"""The smallest WSGI app: serve it with `fastwsgi examples.hello:app`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable


def app(environ: dict[str, object],
        start_response: Callable[..., object]) -> Iterable[bytes]:
    body = b"Hello, World!\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
