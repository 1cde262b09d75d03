"""--proxy-protocol: the PROXY header (v1 and v2) a TCP load balancer sends
first names the client; a connection without a valid one is closed.
Parser-level cases through cffi, then real sockets."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
from conftest import ServerProcess
from fastwsgi._fastwsgi import ffi, lib

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


V2_TCP4 = v2(1, 0x11, bytes([203, 0, 113, 7, 10, 0, 0, 1]) + struct.pack(">HH", 56324, 443))
V2_TCP6 = v2(1, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::7") + bytes(16)
             + struct.pack(">HH", 4711, 80) + b"\x04\x00\x01z")  # and a TLV


def parse(data: bytes) -> tuple[int, int, str, str]:
    out = ffi.new("fw_proxy *")
    buf = ffi.new("char[]", data)
    r = lib.fw_parse_proxy(buf, len(data), out)
    return r, out.family, ffi.string(out.addr).decode(), ffi.string(out.port).decode()


@pytest.mark.parametrize("data, expected", [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n",
     (43, socket.AF_INET, "203.0.113.7", "56324")),
    (b"PROXY TCP6 2001:DB8::1 ::1 1 65535\r\nGET", (36, socket.AF_INET6, "2001:db8::1", "1")),
    (b"PROXY UNKNOWN\r\n", (15, 0, "", "")),
    (b"PROXY UNKNOWN 1.2.3.4 anything at all\r\n", (39, 0, "", "")),
    (V2_TCP4 + b"GET", (28, socket.AF_INET, "203.0.113.7", "56324")),
    (V2_TCP6, (len(V2_TCP6), socket.AF_INET6, "2001:db8::7", "4711")),
    (v2(0, 0x11, bytes(12)), (28, 0, "", "")),   # LOCAL: the balancer's own check
    (v2(1, 0x00, b""), (16, 0, "", "")),         # unspecified
    (b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n", (107, 0, "", "")),  # the longest line
])
def test_valid_headers(data, expected):
    assert parse(data) == expected
    n = expected[0]
    for cut in range(n):  # every prefix asks for more
        assert parse(data[:cut])[0] == 0, cut


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",                          # no header at all
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\n",  # LF without CR
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n",    # a field missing
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443 x\r\n",
    b"PROXY TCP4 203.0.113.7  10.0.0.1 56324 443\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443 \r\n",
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",      # family and address disagree
    b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 0443 443\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 -1 443\r\n",
    b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
    b"PROXY " + b"A" * 120,                         # no end within 107 bytes
    b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",          # 108 bytes: one too many
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\x00\n",
    SIG + bytes([0x31, 0x11, 0, 12]) + bytes(12),   # version 3
    SIG + bytes([0x22, 0x11, 0, 12]) + bytes(12),   # command 2
    v2(1, 0x11, bytes(8)),                          # too short for TCP4
    v2(1, 0x12, bytes(12)),                         # UDP
    v2(1, 0x31, bytes(216)),                        # unix sockets
    SIG + bytes([0x21, 0x11, 0x04, 0x01]),          # 1025 bytes announced
    b"\r\n\r\n\x00\r\nQUIX\n",
])
def test_invalid_headers(data):
    assert parse(data)[0] == -1


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("apps:peer_echo", "--proxy-protocol", "--forwarded-allow-ips", "")
    yield s
    s.stop()
    s.cleanup()


def exchange(s: ServerProcess, *pieces: bytes, pause: float = 0.0) -> bytes:
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        for piece in pieces:
            c.sendall(piece)
            if pause:
                time.sleep(pause)
        data = b""
        try:
            while chunk := c.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def environ_of(data: bytes) -> dict:
    assert data.startswith(b"HTTP/1.1 200 "), data
    return json.loads(data.partition(b"\r\n\r\n")[2])


REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("header, addr, port", [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n", "203.0.113.7", "56324"),
    (b"PROXY TCP6 2001:db8::1 ::1 4711 443\r\n", "2001:db8::1", "4711"),
    (V2_TCP4, "203.0.113.7", "56324"),
    (V2_TCP6, "2001:db8::7", "4711"),
])
def test_the_header_names_the_client(server, header, addr, port):
    env = environ_of(exchange(server, header + REQUEST))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (addr, port)


def test_a_header_that_names_nobody_keeps_the_peer(server):
    for header in (b"PROXY UNKNOWN\r\n", v2(0, 0x11, bytes(12))):
        env = environ_of(exchange(server, header + REQUEST))
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["fastwsgi.proxy_client"] == "unknown"


FORWARDED = (b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.66\r\n"
             b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")


def test_a_header_that_names_nobody_does_not_make_the_clients_forwarding_trusted(
        start_server):
    """The balancer (127.0.0.1, a trusted proxy by default) passes on a
    connection whose client it does not know: the forwarding fields in it
    are that client's own word, not the balancer's."""
    s = start_server("apps:peer_echo", "--proxy-protocol")
    for header in (b"PROXY UNKNOWN\r\n", v2(0, 0x11, bytes(12))):
        env = environ_of(exchange(s, header + FORWARDED))
        assert env["REMOTE_ADDR"] == "127.0.0.1", env
        assert env["wsgi.url_scheme"] == "http", env
    # A header that names a client that is itself a trusted proxy: its
    # fields count (the check works, and is on the named address).
    env = environ_of(exchange(s, b"PROXY TCP4 127.0.0.1 127.0.0.1 5 6\r\n" + FORWARDED))
    assert env["REMOTE_ADDR"] == "192.0.2.66" and env["wsgi.url_scheme"] == "https", env
    assert env["fastwsgi.proxy_client"] is None, env
    # ... and one that names an untrusted client: they do not.
    env = environ_of(exchange(s, b"PROXY TCP4 198.51.100.9 127.0.0.1 5 6\r\n" + FORWARDED))
    assert env["REMOTE_ADDR"] == "198.51.100.9" and env["wsgi.url_scheme"] == "http", env


@pytest.mark.parametrize("allow, allowed", [
    (None, True),                   # gunicorn's default: 127.0.0.1,::1
    ("10.0.0.0/8,::1", False),
    ("127.0.0.0/31", True),         # a prefix that ends inside a byte
    ("127.0.0.2/31", False),
    ("*", True),
    ("", False),
])
def test_only_allowed_peers_may_send_the_header(start_server, allow, allowed):
    args = ["--proxy-protocol"] + ([] if allow is None else ["--proxy-allow-ips", allow])
    s = start_server("apps:peer_echo", *args)
    data = exchange(s, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n" + REQUEST)
    if allowed:
        assert environ_of(data)["REMOTE_ADDR"] == "203.0.113.7"
    else:
        assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n"), data
        assert b"Connection: close\r\n" in data
        # ... and the server goes on serving (and refusing).
        assert exchange(s, b"PROXY UNKNOWN\r\n" + REQUEST).startswith(b"HTTP/1.1 403 ")


def test_header_in_pieces_and_requests_after_it(server):
    header = b"PROXY TCP4 198.51.100.2 10.0.0.1 1000 443\r\n"
    data = exchange(server, *[header[i:i + 5] for i in range(0, len(header), 5)],
                    b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n" + REQUEST, pause=0.01)
    # Two responses on one connection, both for the named client: the
    # header comes once, at the start.
    assert data.count(b"HTTP/1.1 200 ") == 2
    assert data.count(b'"REMOTE_ADDR": "198.51.100.2"') == 2


@pytest.mark.parametrize("first", [
    REQUEST,                                     # no header: not through the balancer
    b"PROXY TCP4 nonsense\r\n" + REQUEST,
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\n" + REQUEST,
])
def test_a_connection_without_a_valid_header_is_closed(server, first):
    assert exchange(server, first) == b""
    # ... and the server goes on serving.
    env = environ_of(exchange(server, b"PROXY UNKNOWN\r\n" + REQUEST))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_without_the_setting_a_proxy_line_is_a_bad_request(start_server):
    s = start_server("apps:peer_echo")
    data = exchange(s, b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n" + REQUEST)
    assert data.startswith(b"HTTP/1.1 400 ")
