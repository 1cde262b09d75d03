"""An application wrapped in wsgiref.validate.validator, one route per way of
producing a response.  The validator asserts on every contract violation,
by the app or by the server, and warns about questionable ones."""

from __future__ import annotations

import json
import os
import sys
from wsgiref.validate import validator

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = [("Content-Type", "text/plain")]


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/list":
        start_response("200 OK", TEXT)
        return [b"one,", b"two,", b"three"]
    if path == "/single":
        start_response("200 OK", TEXT + [("Content-Length", "6")])
        return [b"single"]
    if path == "/gen":
        def gen():
            yield b"gen"
            yield b""
            yield b"erated"
        start_response("200 OK", TEXT)
        return gen()
    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written,")
        write(b"more,")
        return [b"returned"]
    if path == "/file":
        f = open(os.path.join(HERE, "apps.py"), "rb")
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/post":
        inp = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        first = inp.readline()
        second = inp.readline(4)
        rest = inp.read(length)
        after = inp.read(10)
        lines = [first, second, rest, after]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([x.decode("latin-1") for x in lines]).encode()]
    if path == "/lines":
        inp = environ["wsgi.input"]
        start_response("200 OK", TEXT)
        return [b"|".join(inp.readlines())]
    if path == "/exc":
        start_response("200 OK", TEXT + [("X-Before", "yes")])
        try:
            raise ValueError("handled by the app")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"error page"]
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    if path == "/errors":
        environ["wsgi.errors"].write("validated app says hi\n")
        environ["wsgi.errors"].writelines(["two ", "lines\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", TEXT)
        return [b"ok"]
    start_response("404 Not Found", TEXT)
    return [b"not found"]


app = validator(inner)
