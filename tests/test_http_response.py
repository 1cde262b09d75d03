"""Responses on the wire: status line, headers, body framing by
Content-Length, chunked or close, HEAD and bodiless statuses."""

from __future__ import annotations

import re
import time

import pytest
from conftest import ServerProcess, exchange, parse_responses, read_response, read_until_close

IMF_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
    r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")
HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"




def split_head(out: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, header list in order (names lower-cased), rest."""
    head, sep, rest = out.partition(b"\r\n\r\n")
    assert sep, out
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip(), line
        fields.append((name.lower(), value.strip()))
    return lines[0], fields, rest


def values(fields, name: str) -> list[str]:
    return [v for n, v in fields if n == name]


def dechunk(data: bytes) -> tuple[bytes, bytes]:
    """Decode a chunked body strictly.  Returns (body, what follows)."""
    body = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, "no CRLF after a chunk size"
        assert re.fullmatch(rb"[0-9a-fA-F]+", size_line), size_line
        size = int(size_line, 16)
        if size == 0:
            assert data[:2] == b"\r\n", data[:10]
            return body, data[2:]
        assert data[size:size + 2] == b"\r\n"
        body += data[:size]
        data = data[size + 2:]


# ---------------------------------------------------------------- the head


def test_status_line_and_headers(server):
    out, closed = exchange(server, CLOSE)
    status, fields, body = split_head(out)
    assert status == "HTTP/1.1 200 OK"
    assert values(fields, "content-type") == ["text/plain"]
    assert values(fields, "content-length") == ["13"]
    assert body == b"Hello, World!"


def test_date_and_server_added(server):
    out, _ = exchange(server, CLOSE)
    _, fields, _ = split_head(out)
    dates = values(fields, "date")
    assert len(dates) == 1
    assert IMF_DATE.match(dates[0]), dates[0]
    sent = time.mktime(time.strptime(dates[0], "%a, %d %b %Y %H:%M:%S GMT"))
    now = time.mktime(time.gmtime())
    assert abs(sent - now) < 5
    assert values(fields, "server") == ["fastwsgi"]


def test_server_header_setting(start_server):
    srv = start_server("apps:router", "--server-header", "edge/1")
    out, _ = exchange(srv, CLOSE)
    _, fields, _ = split_head(out)
    assert values(fields, "server") == ["edge/1"]


def test_app_date_and_server_are_kept(server):
    out, _ = exchange(server, b"GET /own-date HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\n\r\n")
    _, fields, body = split_head(out)
    assert values(fields, "date") == ["Mon, 01 Jan 2001 00:00:00 GMT"]
    assert values(fields, "server") == ["custom"]
    assert body == b"d"


def test_app_headers_kept_in_order_and_repeated(server):
    out, _ = exchange(server, b"GET /headers HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\n\r\n")
    status, fields, body = split_head(out)
    names = [n for n, _ in fields]
    assert names.index("x-one") < names.index("x-two") < names.index("set-cookie")
    assert values(fields, "x-one") == ["1"]
    assert values(fields, "x-two") == ["two"]
    assert values(fields, "set-cookie") == ["a=1", "b=2"]
    assert body == b"h"


@pytest.mark.parametrize("code,reason", [("201", "Whatever"), ("404", "Whatever"),
                                         ("503", "Whatever")])
def test_app_status_passed_through(server, code, reason):
    out, _ = exchange(server, b"GET /status?code=%s HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\n\r\n" % code.encode())
    status, fields, body = split_head(out)
    assert status == f"HTTP/1.1 {code} {reason}"
    assert body == b"body-for-" + code.encode()


def test_app_hop_by_hop_headers_do_not_break_framing(server):
    out, closed = exchange(server, b"GET /hop HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    te = values(fields, "transfer-encoding")
    cl = values(fields, "content-length")
    assert not (te and cl)
    assert len(te) <= 1 and len(cl) <= 1
    assert values(fields, "keep-alive") == []
    if te:
        assert te == ["chunked"]
        body, rest = dechunk(rest)
    else:
        body, rest = rest[:int(cl[0])], rest[int(cl[0]):]
    assert body == b"hop"
    assert parse_responses(rest)[0][2] == b"Hello, World!"


# ---------------------------------------------------------------- lengths


def test_app_content_length_kept_for_a_streamed_body(server):
    out, _ = exchange(server, b"GET /stream-cl HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    assert values(fields, "content-length") == ["10"]
    assert values(fields, "transfer-encoding") == []
    assert rest[:10] == b"0123456789"
    assert parse_responses(rest[10:])[0][2] == b"Hello, World!"


def test_body_short_of_its_content_length_closes(server):
    out, closed = exchange(server, b"GET /short-cl HTTP/1.1\r\nHost: t\r\n\r\n"
                                    + HELLO)
    assert closed
    status, fields, rest = split_head(out)
    assert status.startswith("HTTP/1.1 200")
    assert values(fields, "content-length") == ["100"]
    # what the app gave, then the close; the next request is not answered
    assert rest == b"only this"


def test_body_longer_than_its_content_length_closes(server):
    out, closed = exchange(server, b"GET /long-cl HTTP/1.1\r\nHost: t\r\n\r\n"
                                    + HELLO)
    assert closed
    status, fields, rest = split_head(out)
    assert values(fields, "content-length") == ["4"]
    assert rest == b"0123"


def test_chunked_on_http11_for_unknown_length(server):
    out, closed = exchange(server, b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: t"
                                    b"\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    assert values(fields, "transfer-encoding") == ["chunked"]
    assert values(fields, "content-length") == []
    body, rest = dechunk(rest)
    assert body == b"000111222333"
    # the connection carried on to the next request
    assert parse_responses(rest)[0][2] == b"Hello, World!"
    assert closed


def test_generator_with_empty_pieces_is_chunked_correctly(server):
    out, _ = exchange(server, b"GET /generator HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    assert values(fields, "transfer-encoding") == ["chunked"]
    body, rest = dechunk(rest)
    assert body == b"gen-erated"
    assert parse_responses(rest)[0][2] == b"Hello, World!"


def test_write_callable_is_chunked(server):
    out, _ = exchange(server, b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    body, rest = dechunk(rest)
    assert body == b"written-then-returned"


def test_big_streamed_body_chunked(server):
    out, _ = exchange(server, b"GET /stream?n=20&size=100000 HTTP/1.1\r\n"
                              b"Host: t\r\n\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    body, rest = dechunk(rest)
    assert body == b"".join(str(i % 10).encode() * 100000 for i in range(20))


@pytest.mark.parametrize("path,expected", [
    (b"/stream?n=3&size=2", b"001122"),
    (b"/generator", b"gen-erated"),
])
def test_close_delimited_on_http10(server, path, expected):
    out, closed = exchange(server, b"GET %s HTTP/1.0\r\n\r\n" % path)
    assert closed
    status, fields, rest = split_head(out)
    assert values(fields, "transfer-encoding") == []
    assert values(fields, "content-length") == []
    assert values(fields, "connection") == ["close"]
    assert rest == expected


def test_close_delimited_on_http10_even_with_keep_alive(server):
    req = b"GET /stream?n=2&size=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    out, closed = exchange(server, req + req)
    assert closed
    status, fields, rest = split_head(out)
    assert values(fields, "transfer-encoding") == []
    assert values(fields, "connection") == ["close"]
    assert rest == b"0011"


def test_known_length_on_http10(server):
    out, closed = exchange(server, b"GET /hello HTTP/1.0\r\n\r\n")
    status, fields, rest = split_head(out)
    assert values(fields, "content-length") == ["13"]
    assert rest == b"Hello, World!"


# ---------------------------------------------------------------- HEAD


def test_head_has_headers_and_no_body(server):
    with server.connect() as s:
        s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + HELLO)
        buf = b""
        deadline = time.monotonic() + 3
        while buf.count(b"Hello, World!") < 1 and time.monotonic() < deadline:
            s.settimeout(3)
            buf += s.recv(65536)
    status, fields, rest = split_head(buf)
    assert status == "HTTP/1.1 200 OK"
    assert values(fields, "content-length") == ["13"]
    # the next bytes are the next response, not a body
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert parse_responses(rest)[0][2] == b"Hello, World!"


@pytest.mark.parametrize("path", [b"/stream", b"/generator", b"/big?size=300000",
                                  b"/stream-cl"])
def test_head_of_streamed_and_big_bodies(server, path):
    out, closed = exchange(server, b"HEAD %s HTTP/1.1\r\nHost: t\r\n\r\n" % path
                           + CLOSE)
    status, fields, rest = split_head(out)
    assert status.startswith("HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
    assert parse_responses(rest)[0][2] == b"Hello, World!"
    assert closed


def test_head_of_an_endless_stream():
    """A HEAD needs no body: an endless iterable must neither keep the
    response from being sent nor hold up the server."""
    srv = ServerProcess("apps:router")
    try:
        with srv.connect() as s:
            s.sendall(b"HEAD /forever HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE)
            out, closed = read_until_close(s, timeout=1.5)
        with srv.connect() as other:
            other.sendall(CLOSE)
            other_out, _ = read_until_close(other, timeout=1.5)
    finally:
        srv.kill()
        srv.cleanup()
    assert out.startswith(b"HTTP/1.1 200 "), out[:40]
    status, fields, rest = split_head(out)
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
    assert parse_responses(rest)[0][2] == b"Hello, World!"
    assert other_out.startswith(b"HTTP/1.1 200 "), other_out[:40]


def test_head_on_http10_keep_alive(server):
    req = b"HEAD /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    out, closed = exchange(server, req + b"GET /hello HTTP/1.0\r\n\r\n")
    status, fields, rest = split_head(out)
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
    assert parse_responses(rest)[0][2] == b"Hello, World!"


# ---------------------------------------------------------------- 204 / 304


@pytest.mark.parametrize("code", [b"204", b"304"])
def test_bodiless_statuses(server, code):
    out, closed = exchange(server, b"GET /status?code=%s HTTP/1.1\r\nHost: t\r\n"
                                    b"\r\n" % code + CLOSE)
    status, fields, rest = split_head(out)
    assert status.startswith("HTTP/1.1 " + code.decode())
    assert values(fields, "transfer-encoding") == []
    if code == b"204":
        assert values(fields, "content-length") == []
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
    assert parse_responses(rest)[0][2] == b"Hello, World!"
    assert closed


@pytest.mark.parametrize("code", [b"204", b"304"])
def test_bodiless_statuses_on_http10(server, code):
    out, closed = exchange(server, b"GET /status?code=%s HTTP/1.0\r\n\r\n" % code)
    status, fields, rest = split_head(out)
    assert rest == b""
    assert closed


def test_empty_generator_204(server):
    out, closed = exchange(server, b"GET /empty-generator HTTP/1.1\r\nHost: t\r\n"
                                    b"\r\n" + CLOSE)
    status, fields, rest = split_head(out)
    assert status.startswith("HTTP/1.1 204")
    assert values(fields, "transfer-encoding") == []
    assert values(fields, "content-length") == []
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]


def test_keepalive_response_has_no_connection_close(server):
    with server.connect() as s:
        s.sendall(HELLO)
        status, headers, body, rest = read_response(s)
        assert "connection" not in headers
        s.sendall(HELLO)
        assert read_response(s)[2] == b"Hello, World!"


def test_a_block_is_sent_before_the_next_is_asked_for(server):
    # PEP 3333: the server must not hold a block back while the app
    # produces the next one (here: a generator that sleeps between blocks).
    with server.connect() as s:
        s.sendall(b"GET /slow-stream?s=1.5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        start = time.monotonic()
        seen = b""
        while b"first;" not in seen:
            data = s.recv(65536)
            assert data, "closed before the first block"
            seen += data
        assert time.monotonic() - start < 1.0, "the first block waited for the second"
        while True:
            data = s.recv(65536)
            if not data:
                break
            seen += data
    body = seen.partition(b"\r\n\r\n")[2]
    assert b"first;" in body and b"second" in body and body.endswith(b"0\r\n\r\n")
