"""Requests that arrive together are answered together.

Requests without a body are gathered while the server handles one round of
socket events, and the app is called for them in one go.  These tests send
on many connections before reading any answer, so that many requests land
in the same round (more than one batch holds, too), and check that every
connection gets the answer to its own request, in order, with its own
environ.
"""

from __future__ import annotations

import json
import socket

from conftest import read_response

CONNS = 300  # more than one batch holds: the rest are answered one by one


def _open(server, n: int) -> list[socket.socket]:
    return [server.connect(10.0) for _ in range(n)]


def _request(i: int, rnd: int) -> bytes:
    method = ("GET", "HEAD", "DELETE")[i % 3] if i % 7 else "GET"
    version = "HTTP/1.0" if i % 5 == 0 else "HTTP/1.1"
    extra = ""
    if i % 4 == 0:
        extra += f"X-Twice: a{i}\r\nX-Twice: b{i}\r\n"   # repeated name
    if version == "HTTP/1.0":
        extra += "Connection: keep-alive\r\n"
    query = f"?id={i}&round={rnd}" if i % 2 else ""
    return (f"{method} /echo{query} {version}\r\nHost: t{i}\r\nX-Id: {i}\r\n"
            f"{extra}\r\n").encode()


def test_each_connection_gets_its_own_answer(server):
    socks = _open(server, CONNS)
    try:
        for rnd in range(3):
            for i, s in enumerate(socks):
                s.sendall(_request(i, rnd))
            for i, s in enumerate(socks):
                head = _request(i, rnd).startswith(b"HEAD")
                status, headers, body, rest = read_response(s, 10.0, head=head)
                assert status == 200, (i, rnd)
                assert rest == b""
                if head:
                    assert body == b""
                    continue
                env = json.loads(body)
                assert env["HTTP_X_ID"] == str(i)
                assert env["HTTP_HOST"] == f"t{i}"
                assert env["REQUEST_METHOD"] == _request(i, rnd).split(b" ")[0].decode()
                assert env["SERVER_PROTOCOL"] == ("HTTP/1.0" if i % 5 == 0 else "HTTP/1.1")
                assert env["QUERY_STRING"] == (f"id={i}&round={rnd}" if i % 2 else "")
                assert env["PATH_INFO"] == "/echo"
                if i % 4 == 0:
                    assert env["HTTP_X_TWICE"] == f"a{i}, b{i}"
                else:
                    assert "HTTP_X_TWICE" not in env
    finally:
        for s in socks:
            s.close()


def test_a_failing_request_does_not_disturb_its_batch(server):
    socks = _open(server, 60)
    try:
        for _ in range(2):
            for i, s in enumerate(socks):
                path = "/raise-before" if i % 3 == 0 else f"/echo?n={i}"
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            for i, s in enumerate(socks):
                status, headers, body, _ = read_response(s, 10.0)
                if i % 3 == 0:
                    assert status == 500
                else:
                    assert status == 200
                    assert json.loads(body)["QUERY_STRING"] == f"n={i}"
            # A 500 from an app error closes its connection: reopen those.
            socks = [server.connect(10.0) if i % 3 == 0 else s
                     for i, s in enumerate(socks)]
    finally:
        for s in socks:
            s.close()
