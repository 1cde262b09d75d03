"""An endless response whose close() says when it is called (on stderr, which
is the server's log)."""

from __future__ import annotations

import sys


class Endless:
    def __init__(self):
        self.closes = 0

    def __iter__(self):
        while True:
            yield b"y" * 65536

    def close(self):
        self.closes += 1
        print(f"close() called ({self.closes})", file=sys.stderr, flush=True)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless()
