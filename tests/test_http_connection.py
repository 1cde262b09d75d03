"""Connection management: persistence, Connection: close, pipelining and
requests that arrive in pieces."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

import pytest
from conftest import TEST_TLS, parse_responses, read_response

HELLO = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"


def read_until_close(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes.  Returns the bytes and
    whether the close was seen before the timeout."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
    return b"".join(chunks), False


def exchange_until_close(server, data: bytes, timeout: float = 3.0):
    with server.connect() as s:
        s.sendall(data)
        out, closed = read_until_close(s, timeout)
    return parse_responses(out), out, closed


def assert_open(sock: socket.socket, wait: float = 0.2) -> None:
    """Nothing arrives and the connection is not closed for a while."""
    sock.settimeout(wait)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return
    raise AssertionError(f"expected an open, quiet connection, got {data!r}")


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def echo(body: bytes) -> dict:
    return json.loads(body)


# ---------------------------------------------------------------- persistence


def test_http11_is_persistent_by_default(server):
    with server.connect() as s:
        for _ in range(5):
            s.sendall(HELLO)
            status, headers, body, rest = read_response(s)
            assert status == 200
            assert body == b"Hello, World!"
            assert rest == b""
            assert "close" not in headers.get("connection", "").lower()
        assert_open(s)


def test_http10_closes_by_default(server):
    req = b"GET /hello HTTP/1.0\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + req)
    assert closed
    assert out.startswith(b"HTTP/1.1 200 ")
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert body == b"Hello, World!"
    assert headers.get("connection", "").lower() != "keep-alive"


def test_http10_keep_alive_is_honoured(server):
    req = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with server.connect() as s:
        for _ in range(3):
            s.sendall(req)
            status, headers, body, rest = read_response(s)
            assert status == 200
            assert body == b"Hello, World!"
            assert headers["connection"].lower() == "keep-alive"
        assert_open(s)
        s.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
        status, headers, body, rest = read_response(s)
        assert body == b"Hello, World!"
        out, closed = read_until_close(s)
        assert (out, closed) == (b"", True)


def test_http10_keep_alive_token_is_case_insensitive(server):
    req = b"GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    last = b"GET /hello HTTP/1.0\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + last)
    assert closed
    assert len(responses) == 2
    assert responses[0][1]["connection"].lower() == "keep-alive"
    assert responses[1][1]["connection"].lower() == "close"
    assert all(r[2] == b"Hello, World!" for r in responses)


def test_client_connection_close(server):
    req = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + HELLO)
    assert closed
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert status == 200
    assert body == b"Hello, World!"
    assert headers["connection"].lower() == "close"


def test_client_connection_close_among_other_tokens(server):
    req = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: TE, Close\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + HELLO)
    assert closed
    assert len(responses) == 1
    assert responses[0][1]["connection"].lower() == "close"


def test_client_connection_close_after_keepalive_requests(server):
    close = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, out, closed = exchange_until_close(
        server, HELLO + HELLO + close + HELLO)
    assert closed
    assert [r[0] for r in responses] == [200, 200, 200]
    assert "connection" not in responses[0][1]
    assert responses[2][1]["connection"].lower() == "close"


def test_app_connection_close(server):
    req = b"GET /conn-close HTTP/1.1\r\nHost: t\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + HELLO)
    assert closed
    assert len(responses) == 1
    status, headers, body = responses[0]
    assert status == 200
    assert body == b"closing"
    assert headers["connection"].lower() == "close"
    assert out.lower().count(b"\r\nconnection:") == 1


def test_app_connection_close_on_http10_keepalive(server):
    req = b"GET /conn-close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    responses, out, closed = exchange_until_close(server, req + req)
    assert closed
    assert len(responses) == 1
    assert responses[0][1]["connection"].lower() == "close"


# ---------------------------------------------------------------- pipelining


def test_many_pipelined_requests_in_one_packet(server):
    n = 40
    reqs = b"".join(b"GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i
                    for i in range(n - 1))
    reqs += b"GET /echo?i=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % (
        n - 1)
    responses, out, closed = exchange_until_close(server, reqs)
    assert closed
    assert len(responses) == n
    assert [echo(b)["QUERY_STRING"] for _, _, b in responses] == [
        f"i={i}" for i in range(n)]


def test_pipelined_requests_on_an_open_connection(server):
    with nodelay(server.connect()) as s:
        s.sendall(HELLO * 16)
        rest = b""
        got = 0
        buf = b""
        deadline = time.monotonic() + 5
        while got < 16 and time.monotonic() < deadline:
            buf += s.recv(65536)
            got = len(parse_responses(buf))
        responses = parse_responses(buf)
        assert len(responses) == 16
        assert all(r[2] == b"Hello, World!" for r in responses)
        # and the connection still serves more
        s.sendall(HELLO)
        status, _, body, rest = read_response(s)
        assert body == b"Hello, World!"


def test_mixed_pipelined_get_post_with_bodies(server):
    chunked = b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\nT: 1\r\n\r\n"
    reqs = [
        b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked,
        b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz",
        b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"PUT /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
        b"Connection: close\r\n\r\nlast",
    ]
    with server.connect() as s:
        s.sendall(b"".join(reqs))
        out, closed = read_until_close(s)
    assert closed
    # the HEAD response has a Content-Length but no body: split by hand
    results = []
    rest = out
    for i in range(len(reqs)):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, (i, out)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if i == 3:
            body = b""
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, rest = rest[:n], rest[n:]
        else:
            assert headers.get("transfer-encoding") == "chunked"
            body = b""
            while True:
                size, _, rest = rest.partition(b"\r\n")
                size = int(size, 16)
                body, rest = body + rest[:size], rest[size + 2:]
                if size == 0:
                    break
        results.append((int(lines[0].split()[1]), headers, body))
    assert rest == b""
    assert [r[0] for r in results] == [200] * len(reqs)
    assert echo(results[0][2])["QUERY_STRING"] == "n=1"
    assert results[1][2] == b"hello world"
    assert results[2][2] == b"abcdefg"
    assert results[3][1]["content-length"] == "13"
    e = echo(results[4][2])
    assert (e["REQUEST_METHOD"], e["body_len"], e["body_head"]) == ("POST", 3, "xyz")
    assert results[5][2] == b"Hello, World!"
    assert results[6][2] == b""
    assert results[7][2] == b"last"


def test_pipelined_stream_responses_stay_in_order(server):
    reqs = b"".join(b"GET /stream?n=%d&size=3 HTTP/1.1\r\nHost: t\r\n\r\n" % n
                    for n in range(1, 6))
    reqs += b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, out, closed = exchange_until_close(server, reqs)
    assert closed
    assert len(responses) == 6
    for n, (status, _, body) in enumerate(responses[:5], start=1):
        assert status == 200
        assert body == b"".join(str(i).encode() * 3 for i in range(n))
    assert responses[5][2] == b"Hello, World!"


# ---------------------------------------------------------------- fragments


def send_in_pieces(sock: socket.socket, data: bytes, sizes, pause: float) -> None:
    i = 0
    for size in sizes:
        if i >= len(data):
            break
        sock.sendall(data[i:i + size])
        i += size
        if pause:
            time.sleep(pause)
    if i < len(data):
        sock.sendall(data[i:])


def test_request_in_one_byte_fragments(server):
    req = (b"GET /echo?frag=1 HTTP/1.1\r\nHost: t\r\nX-Frag: a b c\r\n"
           b"Accept: */*\r\n\r\n")
    with nodelay(server.connect()) as s:
        send_in_pieces(s, req, [1] * len(req), 0.002)
        status, headers, body, rest = read_response(s)
    e = echo(body)
    assert status == 200
    assert e["QUERY_STRING"] == "frag=1"
    assert e["HTTP_X_FRAG"] == "a b c"
    assert e["HTTP_ACCEPT"] == "*/*"


def test_post_in_one_byte_fragments(server):
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
           b"0123456789")
    with nodelay(server.connect()) as s:
        send_in_pieces(s, req, [1] * len(req), 0.002)
        status, headers, body, rest = read_response(s)
    e = echo(body)
    assert (e["body_len"], e["body_head"], e["CONTENT_LENGTH"]) == (
        10, "0123456789", "10")


def test_chunked_post_in_one_byte_fragments(server):
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
    with nodelay(server.connect()) as s:
        send_in_pieces(s, req, [1] * len(req), 0.002)
        status, headers, body, rest = read_response(s)
    e = echo(body)
    assert (e["body_len"], e["body_head"], e["CONTENT_LENGTH"]) == (
        5, "abcde", "5")


def test_fragment_boundary_inside_the_head_terminator(server):
    with nodelay(server.connect()) as s:
        for cut in (len(HELLO) - 1, len(HELLO) - 2, len(HELLO) - 3):
            s.sendall(HELLO[:cut])
            time.sleep(0.05)
            s.sendall(HELLO[cut:])
            status, _, body, rest = read_response(s)
            assert (status, body, rest) == (200, b"Hello, World!", b"")


def test_pipelined_requests_in_random_fragments(server):
    rnd = random.Random(1234)
    reqs = []
    for i in range(20):
        if i % 3 == 0:
            body = b"b" * i
            reqs.append(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                        b"\r\n\r\n%s" % (len(body), body))
        elif i % 3 == 1:
            reqs.append(b"POST /body HTTP/1.1\r\nHost: t\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                        b"%x\r\n%s\r\n0\r\n\r\n" % (i, b"c" * i))
        else:
            reqs.append(b"GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
    reqs.append(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b"".join(reqs)
    sizes = [rnd.randint(1, 40) for _ in range(len(data))]
    with nodelay(server.connect()) as s:
        send_in_pieces(s, data, sizes, 0.001)
        out, closed = read_until_close(s)
    assert closed
    responses = parse_responses(out)
    assert len(responses) == 21
    for i, (status, _, body) in enumerate(responses[:20]):
        assert status == 200
        if i % 3 == 0:
            assert body == b"b" * i
        elif i % 3 == 1:
            assert body == b"c" * i
        else:
            assert echo(body)["QUERY_STRING"] == f"i={i}"
    assert responses[20][2] == b"Hello, World!"


def send_while_reading(server, data: bytes, timeout: float = 10.0):
    """Send a long pipeline from a thread while reading the answers, so
    that neither side waits on full socket buffers."""
    with server.connect() as s:
        sender = threading.Thread(target=s.sendall, args=(data,), daemon=True)
        sender.start()
        out, closed = read_until_close(s, timeout)
        sender.join(timeout)
    return parse_responses(out), closed


def test_pipeline_larger_than_any_read_buffer(server):
    n = 3000
    reqs = b"".join(b"GET /echo?i=%d HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n"
                    % (i, b"p" * (i % 50)) for i in range(n))
    reqs += b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert len(reqs) > 3 * 65536
    responses, closed = send_while_reading(server, reqs)
    assert closed
    assert len(responses) == n + 1
    assert [echo(b)["QUERY_STRING"] for _, _, b in responses[:n]] == [
        f"i={i}" for i in range(n)]


def test_large_head_in_pieces(server):
    fields = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 900) for i in range(60))
    req = b"GET /echo HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n"
    assert 50000 < len(req) < 65536
    with nodelay(server.connect()) as s:
        send_in_pieces(s, req, [997] * len(req), 0.001)
        status, _, body, _ = read_response(s)
        e = echo(body)
        assert status == 200
        assert all(e[f"HTTP_X_BIG_{i}"] == "v" * 900 for i in range(60))
        # and once more on the same connection, in one piece
        s.sendall(req)
        status, _, body, _ = read_response(s)
        assert echo(body)["HTTP_X_BIG_59"] == "v" * 900


def test_pipelined_bodies_across_read_boundaries(server):
    sizes = [70000, 1, 65536, 0, 130000, 5]
    reqs = b"".join(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                    % n + bytes([65 + i]) * n for i, n in enumerate(sizes))
    reqs += b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, closed = send_while_reading(server, reqs)
    assert closed
    assert [len(r[2]) for r in responses] == sizes + [13]
    for i, (_, _, body) in enumerate(responses[:-1]):
        assert body == bytes([65 + i]) * sizes[i]


def test_long_method_same_whole_and_in_pieces(server):
    req = b"M" * 80 + b" /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    whole, _, _ = exchange_until_close(server, req)
    with nodelay(server.connect()) as s:
        try:
            send_in_pieces(s, req, [8] * len(req), 0.005)
        except OSError:
            pass
        out, closed = read_until_close(s)
    pieces = parse_responses(out)
    assert [r[0] for r in pieces] == [r[0] for r in whole]


def test_empty_lines_before_a_request_are_ignored(server):
    # clients may send a stray CRLF after a body (RFC 9112, section 2.2)
    req = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok\r\n"
           b"\r\nGET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    responses, out, closed = exchange_until_close(server, req)
    assert [r[2] for r in responses] == [b"ok", b"Hello, World!"]
    assert closed


@pytest.mark.skipif(TEST_TLS, reason="Python's ssl drops the session at shutdown(SHUT_WR): "
                    "its client cannot half-close over TLS")
def test_requests_answered_after_the_client_half_closes(server):
    with server.connect() as s:
        s.sendall(HELLO * 5)
        s.shutdown(socket.SHUT_WR)
        out, closed = read_until_close(s)
    assert [r[2] for r in parse_responses(out)] == [b"Hello, World!"] * 5
    assert closed


@pytest.mark.skipif(TEST_TLS, reason="Python's ssl drops the session at shutdown(SHUT_WR): "
                    "its client cannot half-close over TLS")
def test_body_answered_after_the_client_half_closes(server):
    with server.connect() as s:
        s.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                  b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        out, closed = read_until_close(s)
    assert [r[2] for r in parse_responses(out)] == [b"abc"]
    assert closed


@pytest.mark.skipif(TEST_TLS, reason="Python's ssl drops the session at shutdown(SHUT_WR): "
                    "its client cannot half-close over TLS")
def test_partial_request_then_half_close(server):
    with server.connect() as s:
        s.sendall(HELLO + b"GET /hello HTTP/1.1\r\nHo")
        s.shutdown(socket.SHUT_WR)
        out, closed = read_until_close(s)
    responses = parse_responses(out)
    assert responses[0][2] == b"Hello, World!"
    assert [r[0] for r in responses[1:]] in ([], [400])
    assert closed
