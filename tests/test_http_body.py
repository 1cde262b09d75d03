"""Request bodies: Content-Length, chunked, spooling, size limits and
Expect: 100-continue."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from conftest import parse_responses, read_response, read_until_close

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"



def quiet_for(sock: socket.socket, wait: float) -> bytes:
    """What arrives within `wait` seconds (expected: nothing)."""
    sock.settimeout(wait)
    try:
        return sock.recv(65536)
    except socket.timeout:
        return b""


def recv_exactly(sock: socket.socket, n: int, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            break
        buf += data
    return buf


def chunk(data: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def post(path: str, body: bytes, chunked_size: int = 0, extra: bytes = b"") -> bytes:
    if chunked_size:
        return (b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"%s\r\n" % (path.encode(), extra) + chunk(body, chunked_size))
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), len(body), extra) + body)


# ---------------------------------------------------------------- Content-Length


def test_content_length_body(server):
    with server.connect() as s:
        s.sendall(post("/echo", b"hello world", extra=b"Content-Type: text/x\r\n"))
        status, _, body, _ = read_response(s)
    e = json.loads(body)
    assert status == 200
    assert e["body_len"] == 11
    assert e["body_head"] == "hello world"
    assert e["CONTENT_LENGTH"] == "11"
    assert e["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_LENGTH" not in e
    assert "HTTP_CONTENT_TYPE" not in e


def test_empty_content_length_body(server):
    with server.connect() as s:
        s.sendall(post("/echo", b""))
        status, _, body, _ = read_response(s)
    e = json.loads(body)
    assert (e["body_len"], e["CONTENT_LENGTH"]) == (0, "0")


def test_body_is_complete_before_the_app_is_called(server):
    body = pattern(5000)
    req = post("/body", body)
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req[:-1000])
        assert quiet_for(s, 0.3) == b""
        s.sendall(req[-1000:-1])
        assert quiet_for(s, 0.2) == b""
        s.sendall(req[-1:])
        status, headers, got, rest = read_response(s)
    assert status == 200
    assert got == body


def test_large_content_length_body_in_memory(server):
    body = pattern(700 * 1024)
    with server.connect() as s:
        s.sendall(post("/body", body))
        status, _, got, _ = read_response(s)
    assert status == 200
    assert got == body


def test_body_bytes_after_the_body_are_the_next_request(server):
    req = post("/body", b"GET /hello HTTP/1.1\r\n\r\n")
    req += b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    responses = parse_responses(out)
    assert closed
    assert [r[2] for r in responses] == [b"GET /hello HTTP/1.1\r\n\r\n",
                                         b"Hello, World!"]


# ---------------------------------------------------------------- chunked


def test_chunked_body(server):
    body = b"The quick brown fox jumps over the lazy dog"
    with server.connect() as s:
        s.sendall(post("/echo", body, chunked_size=7))
        status, _, got, _ = read_response(s)
    e = json.loads(got)
    assert status == 200
    assert e["body_len"] == len(body)
    assert e["body_head"] == body.decode()
    assert e["CONTENT_LENGTH"] == str(len(body))


def test_chunked_extensions_and_trailers_are_ignored(server):
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value;other\r\nhello\r\n"
           b"1 ; spaced=\"q s\"\r\n \r\n"
           b"5;x\r\nworld\r\n"
           b"0;final=yes\r\n"
           b"X-Trailer: trailing\r\nX-Second: 2\r\n\r\n")
    with server.connect() as s:
        s.sendall(req + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        out = b""
        deadline = time.monotonic() + 3
        while len(parse_responses(out)) < 2 and time.monotonic() < deadline:
            s.settimeout(3)
            out += s.recv(65536)
    responses = parse_responses(out)
    assert len(responses) == 2
    e = json.loads(responses[0][2])
    assert e["body_head"] == "hello world"
    assert e["body_len"] == 11
    assert e["CONTENT_LENGTH"] == "11"
    assert "HTTP_X_TRAILER" not in e
    assert "HTTP_X_SECOND" not in e
    assert responses[1][2] == b"Hello, World!"


def test_chunked_body_with_uppercase_hex_sizes(server):
    body = pattern(0x1AB)
    req = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"1AB\r\n" + body + b"\r\n0\r\n\r\n")
    with server.connect() as s:
        s.sendall(req)
        status, _, got, _ = read_response(s)
    assert got == body


def test_empty_chunked_body(server):
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\n")
    with server.connect() as s:
        s.sendall(req)
        status, _, got, _ = read_response(s)
    e = json.loads(got)
    assert (e["body_len"], e["CONTENT_LENGTH"]) == (0, "0")


def test_chunked_body_is_complete_before_the_app_is_called(server):
    body = pattern(3000)
    req = post("/body", body, chunked_size=500)
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # everything but the last-chunk's final CRLF
        s.sendall(req[:-2])
        assert quiet_for(s, 0.3) == b""
        s.sendall(req[-2:])
        status, _, got, _ = read_response(s)
    assert got == body


def test_many_small_chunks(server):
    body = pattern(20000)
    with server.connect() as s:
        s.sendall(post("/body", body, chunked_size=3))
        status, _, got, _ = read_response(s)
    assert got == body


# ---------------------------------------------------------------- spooling


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


def test_spooled_content_length_body(start_server, spool_dir):
    srv = start_server("apps:router", "--spool-threshold", "4096",
                       "--spool-dir", str(spool_dir))
    body = pattern(300 * 1024 + 7)
    with srv.connect() as s:
        s.sendall(post("/body", body))
        status, _, got, _ = read_response(s)
        assert status == 200
        assert got == body
        # below the threshold on the same connection
        s.sendall(post("/echo", b"small"))
        status, _, got, _ = read_response(s)
        assert json.loads(got)["body_len"] == 5
    assert os.listdir(spool_dir) == []


def open_files_in(srv, directory) -> list[str]:
    names = []
    fd_dir = f"/proc/{srv.proc.pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(str(directory)):
            names.append(target)
    return names


@pytest.mark.parametrize("chunked_size", [0, 8192])
def test_large_body_goes_to_a_file_while_it_arrives(start_server, spool_dir,
                                                    chunked_size):
    srv = start_server("apps:router", "--spool-threshold", "4096",
                       "--spool-dir", str(spool_dir))
    big = pattern(64 * 1024)
    small = pattern(2048)
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = post("/body", small, chunked_size)
        s.sendall(req[:-3])
        time.sleep(0.2)
        assert open_files_in(srv, spool_dir) == []
        s.sendall(req[-3:])
        assert read_response(s)[2] == small

        req = post("/body", big, chunked_size)
        s.sendall(req[:-3])
        time.sleep(0.2)
        assert len(open_files_in(srv, spool_dir)) == 1
        s.sendall(req[-3:])
        assert read_response(s)[2] == big
    time.sleep(0.1)
    assert open_files_in(srv, spool_dir) == []
    assert os.listdir(spool_dir) == []


def test_spooled_chunked_body(start_server, spool_dir):
    srv = start_server("apps:router", "--spool-threshold", "4096",
                       "--spool-dir", str(spool_dir))
    body = pattern(200 * 1024 + 3)
    with srv.connect() as s:
        s.sendall(post("/echo", body, chunked_size=10000))
        status, _, got, _ = read_response(s)
    e = json.loads(got)
    assert e["body_len"] == len(body)
    assert e["CONTENT_LENGTH"] == str(len(body))
    assert os.listdir(spool_dir) == []


def test_spooled_body_read_in_pieces(start_server, spool_dir):
    srv = start_server("apps:router", "--spool-threshold", "1024",
                       "--spool-dir", str(spool_dir))
    body = b"".join(b"line %d\n" % i for i in range(3000))
    with srv.connect() as s:
        s.sendall(post("/iter-input", body))
        status, _, got, _ = read_response(s)
    assert got == b"3000"


# ---------------------------------------------------------------- body limits


@pytest.fixture(scope="module")
def limited(request):
    from conftest import ServerProcess
    srv = ServerProcess("apps:router", "--max-body-size", "1000")
    yield srv
    alive = srv.alive()
    srv.stop()
    srv.cleanup()
    assert alive


def test_body_at_the_limit_is_accepted(limited):
    with limited.connect() as s:
        s.sendall(post("/body", pattern(1000)))
        status, _, got, _ = read_response(s)
    assert (status, got) == (200, pattern(1000))


def test_content_length_over_the_limit_gets_413_before_the_body(limited):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
    with limited.connect() as s:
        s.sendall(head)
        # no body byte was sent: the answer must not wait for it
        out, closed = read_until_close(s, timeout=2)
    assert out.startswith(b"HTTP/1.1 413 ")
    assert closed
    status, headers, _ = parse_responses(out)[0]
    assert headers["connection"].lower() == "close"


def test_huge_content_length_gets_413(limited):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999999999"
            b"\r\n\r\n")
    with limited.connect() as s:
        s.sendall(head)
        out, closed = read_until_close(s, timeout=2)
    assert out.startswith(b"HTTP/1.1 413 ")
    assert closed


def test_413_does_not_interpret_the_body(limited):
    body = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n" * 40
    req = post("/body", body) + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    with limited.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    assert closed
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [413]


def test_chunked_body_over_the_limit_gets_413(limited):
    req = post("/body", pattern(1001), chunked_size=100)
    with limited.connect() as s:
        s.sendall(req + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        out, closed = read_until_close(s)
    assert closed
    assert [r[0] for r in parse_responses(out)] == [413]


def test_chunked_body_over_the_limit_fails_without_the_rest(limited):
    # a single chunk announcing more than the limit: 413 as soon as the
    # data passes the limit, without waiting for the chunk to end
    req = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"100000\r\n" + b"z" * 2000)
    with limited.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    assert closed
    assert [r[0] for r in parse_responses(out)] == [413]


def test_chunked_body_at_the_limit_is_accepted(limited):
    with limited.connect() as s:
        s.sendall(post("/body", pattern(1000), chunked_size=128))
        status, _, got, _ = read_response(s)
    assert (status, got) == (200, pattern(1000))


# ---------------------------------------------------------------- Expect


def test_expect_100_continue_before_the_body(server):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with server.connect() as s:
        s.sendall(head)
        assert recv_exactly(s, len(CONTINUE)) == CONTINUE
        s.sendall(b"hello")
        status, _, got, rest = read_response(s)
        assert (status, got, rest) == (200, b"hello", b"")
        # the interim response is sent once per request
        s.sendall(head)
        assert recv_exactly(s, len(CONTINUE)) == CONTINUE
        assert quiet_for(s, 0.2) == b""
        s.sendall(b"again")
        status, _, got, rest = read_response(s)
        assert (status, got) == (200, b"again")


def test_expect_100_continue_with_chunked_body(server):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with server.connect() as s:
        s.sendall(head)
        assert recv_exactly(s, len(CONTINUE)) == CONTINUE
        s.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        status, _, got, _ = read_response(s)
    assert (status, got) == (200, b"hello")


def test_expect_100_continue_when_the_body_came_along(server):
    req = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
           b"Expect: 100-continue\r\nConnection: close\r\n\r\nhello")
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    assert closed
    if out.startswith(CONTINUE):
        out = out[len(CONTINUE):]
    assert CONTINUE not in out
    assert [(r[0], r[2]) for r in parse_responses(out)] == [(200, b"hello")]


def test_expect_100_continue_too_large_gets_413_instead(limited):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with limited.connect() as s:
        s.sendall(head)
        out, closed = read_until_close(s, timeout=2)
    assert b"100 Continue" not in out
    assert out.startswith(b"HTTP/1.1 413 ")
    assert closed


def test_other_expectation_gets_417(server):
    head = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 200-ok\r\n\r\n")
    with server.connect() as s:
        s.sendall(head)
        out, closed = read_until_close(s, timeout=2)
    assert out.startswith(b"HTTP/1.1 417 ")
    assert b"100 Continue" not in out
    assert closed


def test_expect_on_http10_is_ignored(server):
    head = (b"POST /body HTTP/1.0\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with server.connect() as s:
        s.sendall(head)
        assert quiet_for(s, 0.3) == b""
        s.sendall(b"hello")
        out, closed = read_until_close(s)
    assert closed
    assert b"100 Continue" not in out
    assert [(r[0], r[2]) for r in parse_responses(out)] == [(200, b"hello")]


def test_unknown_expectation_on_http10_is_ignored(server):
    req = (b"POST /body HTTP/1.0\r\nContent-Length: 5\r\n"
           b"Expect: 200-ok\r\n\r\nhello")
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    assert [(r[0], r[2]) for r in parse_responses(out)] == [(200, b"hello")]


# ---------------------------------------------------------------- unread bodies


@pytest.mark.parametrize("chunked_size", [0, 4])
def test_body_the_app_ignores_is_still_skipped(server, chunked_size):
    # /hello never reads wsgi.input; the body must not become a request
    smuggled = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    req = (b"POST /hello HTTP/1.1\r\nHost: t\r\n" +
           post("", smuggled, chunked_size).split(b"\r\n", 2)[2])
    req += b"GET /echo?next=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    responses = parse_responses(out)
    assert closed
    assert len(responses) == 2
    assert responses[0][2] == b"Hello, World!"
    assert json.loads(responses[1][2])["QUERY_STRING"] == "next=1"


def test_get_with_a_body(server):
    req = (b"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
           b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    responses = parse_responses(out)
    assert json.loads(responses[0][2])["body_head"] == "body"
    assert responses[1][2] == b"Hello, World!"


def test_http10_post_with_keep_alive(server):
    req = (b"POST /body HTTP/1.0\r\nConnection: keep-alive\r\n"
           b"Content-Length: 3\r\n\r\nabc")
    with server.connect() as s:
        s.sendall(req + req.replace(b"keep-alive", b"close"))
        out, closed = read_until_close(s)
    responses = parse_responses(out)
    assert closed
    assert [r[2] for r in responses] == [b"abc", b"abc"]


def test_expect_100_continue_without_a_body(server):
    req = (b"GET /hello HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
           b"Connection: close\r\n\r\n")
    with server.connect() as s:
        s.sendall(req)
        out, closed = read_until_close(s)
    if out.startswith(CONTINUE):
        out = out[len(CONTINUE):]
    assert [r[2] for r in parse_responses(out)] == [b"Hello, World!"]
